// Hostile and broken input against a real `moeserve serve`, with plain fetch and raw sockets:
// each bad request gets its HTTP status and an OpenAI error body; the API key cannot be
// bypassed; the queue cap refuses with 429/503 + Retry-After; clients that disconnect or read
// slowly cost nothing once gone; SIGTERM drains in-flight streams and exits 0. After all of it
// the daemon still answers correctly with no KV cache in use.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import {
  MAX_MODEL_LEN,
  MODEL_ID,
  VOCAB_SIZE,
  assertErrorBody,
  chatBody,
  completionBody,
  fetchWithTimeout,
  metricValue,
  metrics,
  parseSse,
  request,
  sleep,
  startDaemon,
  waitFor,
  waitIdle,
  withTimeout,
} from "./harness.mjs";

const API_KEY = "e2e-bad-input-key";

// Sends raw bytes on a new connection and reads the response until the server closes it or
// `timeoutMs` passes. Returns {status, head, body} (status 0: no status line).
function rawRequest(port, bytes, { timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const chunks = [];
    const timer = setTimeout(() => {
      socket.destroy();
      finish();
    }, timeoutMs);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString("latin1");
      const m = text.match(/^HTTP\/1\.[01] (\d{3})/);
      const split = text.indexOf("\r\n\r\n");
      resolve({
        status: m ? Number(m[1]) : 0,
        head: split >= 0 ? text.slice(0, split) : text,
        body: split >= 0 ? Buffer.from(text.slice(split + 4), "latin1").toString("utf8") : "",
      });
    };
    socket.on("data", (d) => chunks.push(d));
    socket.on("end", finish);
    socket.on("close", finish);
    socket.on("error", (e) => (chunks.length > 0 ? finish() : e.code === "ECONNRESET" ? finish() : reject(e)));
    socket.write(bytes);
  });
}

function rawGet(port, target, headers = "") {
  return rawRequest(port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${headers}\r\n`);
}

function rawPost(port, target, body, headers = "") {
  const payload = Buffer.isBuffer(body) ? body : Buffer.from(body, "utf8");
  const head =
    `POST ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${payload.length}\r\n${headers}\r\n`;
  return rawRequest(port, Buffer.concat([Buffer.from(head, "latin1"), payload]));
}

// The JSON of a raw response body that is an error (chunked bodies: the first JSON object).
function errorJson(res) {
  const start = res.body.indexOf("{");
  const end = res.body.lastIndexOf("}");
  return JSON.parse(res.body.slice(start, end + 1));
}

let daemon;

before(async () => {
  daemon = await startDaemon({ apiKey: API_KEY });
});

after(async () => {
  if (daemon) await daemon.stopAndCheck();
});

// One bad request: its status and its OpenAI error body.
async function expectError(path, body, status, expected = {}, { rawBody } = {}) {
  const r = await request(daemon, path, rawBody !== undefined ? { rawBody } : { body });
  const sent = rawBody !== undefined ? "(raw)" : JSON.stringify(body).slice(0, 200);
  assert.equal(r.status, status, `${path} ${sent} → ${r.status} ${r.text.slice(0, 500)}`);
  assertErrorBody(r.json, { type: status === 400 ? "invalid_request_error" : undefined, ...expected });
  return r.json.error;
}

const completion = (extra) => completionBody("Hello", { max_tokens: 2, ...extra });
const chat = (extra) => chatBody("Hello", { max_tokens: 2, ...extra });

describe("malformed bodies", () => {
  it("empty prompt", () => expectError("/v1/completions", completionBody(""), 400, { param: "prompt" }));
  it("empty prompt list", () => expectError("/v1/completions", completionBody([]), 400, { param: "prompt" }));
  it("empty token-id prompt inside a list", () =>
    expectError("/v1/completions", completionBody([[]]), 400));
  it("empty messages", () =>
    expectError("/v1/chat/completions", { model: MODEL_ID, messages: [] }, 400, { param: "messages" }));
  it("missing messages", () => expectError("/v1/chat/completions", { model: MODEL_ID }, 400, { param: "messages" }));
  it("prompt: {}", () => expectError("/v1/completions", completionBody({}), 400, { param: "prompt" }));
  it('n: "2"', () => expectError("/v1/completions", completion({ n: "2" }), 400, { param: "n", message: /integer/ }));
  it("stop: 5", () => expectError("/v1/completions", completion({ stop: 5 }), 400, { param: "stop" }));
  it("a body that is not an object", () => expectError("/v1/completions", [1, 2], 400));
  it("truncated JSON", () =>
    expectError("/v1/completions", null, 400, { param: null }, { rawBody: `{"model": "${MODEL_ID}", "prompt": "x"` }));
  it("invalid JSON", () =>
    expectError("/v1/completions", null, 400, {}, { rawBody: `{model: ${MODEL_ID}, prompt: 'x'}` }));
  it("trailing garbage after the JSON", () =>
    expectError("/v1/completions", null, 400, {}, { rawBody: JSON.stringify(completion()) + "}" }));
  it("empty body", () => expectError("/v1/completions", null, 400, {}, { rawBody: "" }));
  it("invalid UTF-8 inside a string", async () => {
    const body = Buffer.concat([
      Buffer.from(`{"model": "${MODEL_ID}", "max_tokens": 2, "prompt": "ab`),
      Buffer.from([0xff, 0xfe, 0xc3]),
      Buffer.from(`cd"}`),
    ]);
    const res = await rawPost(daemon.port, "/v1/completions", body, `Authorization: Bearer ${API_KEY}\r\n`);
    assert.equal(res.status, 400, res.head + res.body);
    assertErrorBody(errorJson(res), { type: "invalid_request_error" });
  });
  it("NaN literal (not JSON)", () =>
    expectError("/v1/completions", null, 400, {}, {
      rawBody: `{"model": "${MODEL_ID}", "prompt": "x", "temperature": NaN}`,
    }));
  it("unknown fields are ignored", async () => {
    const r = await request(daemon, "/v1/completions", {
      body: completion({ frobnicate: true, nested: { a: [1, 2] }, logit_bias: null }),
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.object, "text_completion");
  });
});

describe("sampling ranges", () => {
  const cases = [
    ["n", 0],
    ["n", 1e9],
    ["max_tokens", 0],
    ["max_tokens", -1],
    ["temperature", -1],
    ["temperature", 1e308],
    ["top_p", 0],
    ["top_p", 1.5],
    ["top_k", -5],
    ["presence_penalty", 3],
    ["presence_penalty", -3],
    ["frequency_penalty", 3],
    ["frequency_penalty", -3],
    ["min_p", 1.5],
    ["repetition_penalty", 0],
    ["logprobs", 21],
    ["logprobs", -1],
  ];
  for (const [field, value] of cases) {
    it(`${field}: ${value}`, () =>
      expectError("/v1/completions", completion({ [field]: value }), 400, { param: field }));
  }
  it("max_tokens: 2^63 (beyond int64)", () =>
    expectError("/v1/completions", null, 400, { param: "max_tokens" }, {
      rawBody: `{"model": "${MODEL_ID}", "prompt": "x", "max_tokens": 9223372036854775808}`,
    }));
  it("seed: 2^64 (beyond uint64)", () =>
    expectError("/v1/completions", null, 400, { param: "seed" }, {
      rawBody: `{"model": "${MODEL_ID}", "prompt": "x", "max_tokens": 2, "seed": 18446744073709551616}`,
    }));
  it("seed: 2^64 - 1 and -2^63 are accepted", async () => {
    for (const seed of ["18446744073709551615", "-9223372036854775808"]) {
      const r = await request(daemon, "/v1/completions", {
        rawBody: `{"model": "${MODEL_ID}", "prompt": "x", "max_tokens": 2, "seed": ${seed}}`,
      });
      assert.equal(r.status, 200, `seed ${seed}: ${r.text}`);
    }
  });
  it("logit_bias with an out-of-vocabulary id", () =>
    expectError("/v1/completions", completion({ logit_bias: { [VOCAB_SIZE]: 5 } }), 400, { message: /512/ }));
  it("logit_bias out of [-100, 100]", () =>
    expectError("/v1/completions", completion({ logit_bias: { 5: 101 } }), 400));
  it("chat top_logprobs: 21", () =>
    expectError("/v1/chat/completions", chat({ logprobs: true, top_logprobs: 21 }), 400, { param: "top_logprobs" }));
  it("chat top_logprobs without logprobs", () =>
    expectError("/v1/chat/completions", chat({ top_logprobs: 2 }), 400, { param: "top_logprobs" }));
  it("5 stop strings", () =>
    expectError("/v1/completions", completion({ stop: ["a", "b", "c", "d", "e"] }), 400, { param: "stop" }));
  it("a 1 MB stop string", async () => {
    const error = await expectError("/v1/completions", completion({ stop: ["x".repeat(1 << 20)] }), 400);
    assert.ok(error.message.length < 4096, "the message does not echo the megabyte");
  });
  it("an empty stop string", () => expectError("/v1/completions", completion({ stop: [""] }), 400));
  it("stream_options without stream", () =>
    expectError("/v1/completions", completion({ stream_options: { include_usage: true } }), 400, {
      param: "stream_options",
    }));
  it("stop_token_ids outside the vocabulary", () =>
    expectError("/v1/completions", completion({ stop_token_ids: [VOCAB_SIZE] }), 400));
  it("min_tokens above max_tokens", () =>
    expectError("/v1/completions", completion({ min_tokens: 5, max_tokens: 2 }), 400));
});

describe("prompts", () => {
  it("token-id prompt with -1", () =>
    expectError("/v1/completions", completionBody([5, -1, 6], { max_tokens: 2 }), 400, { message: /-1/ }));
  it("token-id prompt with an id = vocab size", () =>
    expectError("/v1/completions", completionBody([5, VOCAB_SIZE], { max_tokens: 2 }), 400, { message: /512/ }));
  it("token-id prompt with a huge id", () =>
    expectError("/v1/completions", completionBody([5, 2 ** 40], { max_tokens: 2 }), 400));
  it("prompt + max_tokens over the context: 400 naming the token counts", async () => {
    const prompt = "tokens ".repeat(60);
    const t = await request(daemon, "/tokenize", { body: { model: MODEL_ID, prompt } });
    assert.equal(t.status, 200, t.text);
    const n = t.json.count;
    assert.ok(n < MAX_MODEL_LEN && n + 200 > MAX_MODEL_LEN, `prompt has ${n} tokens`);
    const error = await expectError("/v1/completions", completionBody(prompt, { max_tokens: 200 }), 400);
    for (const number of [n, 200, MAX_MODEL_LEN]) {
      assert.match(error.message, new RegExp(`\\b${number}\\b`), `message names ${number}: ${error.message}`);
    }
  });
  it("a prompt longer than the context", async () => {
    const error = await expectError("/v1/completions", completionBody("word ".repeat(400), { max_tokens: 1 }), 400);
    assert.match(error.message, /\d+/);
  });
  it("an unknown role", () =>
    expectError("/v1/chat/completions", { model: MODEL_ID, messages: [{ role: "wizard", content: "x" }] }, 400, {
      param: "messages[0].role",
    }));
  it("an image content part", () =>
    expectError(
      "/v1/chat/completions",
      { model: MODEL_ID, messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] },
      400,
      { param: "messages[0].content[0].type" },
    ));
  it("unknown model: 404 naming model", () =>
    expectError("/v1/completions", { ...completion(), model: "gpt-4" }, 404, {
      param: "model",
      code: "model_not_found",
      type: "invalid_request_error",
    }));
  it("unknown path: 404; wrong method: 405 with Allow", async () => {
    const r = await request(daemon, "/v1/nothing", { method: "GET" });
    assert.equal(r.status, 404);
    assertErrorBody(r.json);
    const m = await request(daemon, "/v1/completions", { method: "GET" });
    assert.equal(m.status, 405);
    assert.ok(m.headers.get("allow")?.includes("POST"));
    assertErrorBody(m.json);
  });
});

describe("HTTP limits", () => {
  it("a header over the limit: 431", async () => {
    const big = "a".repeat(64 << 10); // the default limit is 16 KiB
    const res = await rawGet(daemon.port, "/v1/models", `Authorization: Bearer ${API_KEY}\r\nX-Big: ${big}\r\n`);
    assert.equal(res.status, 431, res.head);
  });

  it("a body over --max-body-bytes: 413", async () => {
    const small = await startDaemon({ args: ["--max-body-bytes", "1024", "--grpc-port", "-1"] });
    try {
      const r = await request(small, "/v1/completions", { body: completionBody("y".repeat(4096), { max_tokens: 1 }) });
      assert.equal(r.status, 413, r.text);
      assertErrorBody(r.json);
      // Announced by Content-Length or not (chunked): both refused.
      const chunked = await fetchWithTimeout(small.url("/v1/completions"), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: new ReadableStream({
          start(controller) {
            controller.enqueue(new TextEncoder().encode(JSON.stringify(completionBody("z".repeat(8192)))));
            controller.close();
          },
        }),
        duplex: "half",
      }).catch((e) => e);
      if (!(chunked instanceof Error)) {
        assert.equal(chunked.status, 413);
        await chunked.arrayBuffer();
      }
      // A body under the limit still works.
      const ok = await request(small, "/v1/completions", { body: completionBody("fine", { max_tokens: 1 }) });
      assert.equal(ok.status, 200, ok.text);
    } finally {
      await small.stopAndCheck();
    }
  });
});

describe("API key", () => {
  const models = (headers) => request(daemon, "/v1/models", { method: "GET", headers });

  it("missing, wrong, or lower-case bearer: 401", async () => {
    const wrong = [
      undefined,
      "Bearer wrong",
      `bearer ${API_KEY}`,
      API_KEY,
      `Bearer  ${API_KEY}`,
      `Bearer ${API_KEY}x`,
      `Basic ${API_KEY}`,
    ];
    for (const authorization of wrong) {
      const headers = authorization === undefined ? {} : { authorization };
      const r = await fetchWithTimeout(daemon.url("/v1/models"), { headers });
      const body = await r.json();
      assert.equal(r.status, 401, `authorization ${JSON.stringify(authorization)}`);
      assertErrorBody(body, { code: "invalid_api_key" });
      assert.equal(r.headers.get("www-authenticate"), "Bearer");
    }
    const right = await models({ authorization: `Bearer ${API_KEY}` });
    assert.equal(right.status, 200);
  });

  it("generation endpoints need the key too", async () => {
    for (const path of ["/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"]) {
      const r = await fetchWithTimeout(daemon.url(path), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(completion()),
      });
      assert.equal(r.status, 401, path);
      await r.arrayBuffer();
    }
  });

  it("path tricks do not bypass it", async () => {
    for (const target of [
      "//v1/models",
      "/v1/../v1/models",
      "/%761/models",
      "/health/../v1/models",
      "/health/%2e%2e/v1/models",
      "/./v1/models",
      "/v1/models?x=/health",
      "/HEALTH",
      "/metrics/../v1/models",
    ]) {
      const res = await rawGet(daemon.port, target);
      assert.notEqual(res.status, 200, `${target} answered 200 without a key`);
      assert.ok([401, 404, 400].includes(res.status), `${target} → ${res.status}`);
    }
    const post = await rawPost(daemon.port, "/health/../v1/completions", JSON.stringify(completion()));
    assert.notEqual(post.status, 200);
  });

  it("while the model loads, /health answers 503 with an OpenAI error body", async (t) => {
    // HTTP starts before the engine; the harness kept /health's answers while it waited.
    if (daemon.startupResponses.length === 0) {
      t.skip("the model loaded before the first /health poll");
      return;
    }
    for (const r of daemon.startupResponses) {
      assert.equal(r.status, 503);
      // docs/api.md: 503 is type server_error, code service_unavailable (as draining's 503).
      assertErrorBody(JSON.parse(r.body), { type: "server_error", code: "service_unavailable" });
      assert.ok(Number(r.retryAfter) >= 1, `Retry-After: ${r.retryAfter}`);
    }
  });

  it("/health and /metrics are public", async () => {
    const h = await fetchWithTimeout(daemon.url("/health"));
    assert.equal(h.status, 200);
    await h.arrayBuffer();
    const m = await fetchWithTimeout(daemon.url("/metrics"));
    assert.equal(m.status, 200);
    assert.match(await m.text(), /vllm:num_requests_running/);
  });
});

describe("clients that leave", () => {
  const disconnects = async () => metricValue(await metrics(daemon), "moeserve:client_disconnects_total") ?? 0;

  it("disconnect right after sending a long prompt", async () => {
    // A prompt of about 100 tokens and 16 sequences filling the rest of the context: seconds
    // of work on one CPU core, so the client surely leaves before the answer.
    const prompt = "a long prompt ".repeat(12);
    const t = await request(daemon, "/tokenize", { body: { model: MODEL_ID, prompt } });
    assert.equal(t.status, 200, t.text);
    const maxTokens = MAX_MODEL_LEN - t.json.count;
    assert.ok(maxTokens >= 100, `prompt of ${t.json.count} tokens`);
    const before = await disconnects();
    const controller = new AbortController();
    const pending = fetch(daemon.url("/v1/completions"), {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify(completionBody(prompt, { max_tokens: maxTokens, n: 16, ignore_eos: true })),
      signal: controller.signal,
    });
    await sleep(30);
    controller.abort();
    await assert.rejects(pending, { name: "AbortError" });
    await waitIdle(daemon);
    await waitFor("client_disconnects_total to increase", async () => (await disconnects()) > before);
  });

  it("disconnect mid-stream", async () => {
    const before = await disconnects();
    const controller = new AbortController();
    const r = await fetch(daemon.url("/v1/chat/completions"), {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify(chatBody("stream then leave", { max_tokens: 200, ignore_eos: true, stream: true })),
      signal: controller.signal,
    });
    assert.equal(r.status, 200);
    const reader = r.body.getReader();
    let text = "";
    while ((text.match(/data: /g) ?? []).length < 3) {
      const { value, done } = await reader.read();
      assert.ok(!done, "stream ended early");
      text += Buffer.from(value).toString("utf8");
    }
    controller.abort();
    await reader.cancel().catch(() => {});
    await waitIdle(daemon);
    await waitFor("client_disconnects_total to increase", async () => (await disconnects()) > before);
    const m = await metrics(daemon);
    assert.ok((metricValue(m, "moeserve:http_requests_total", { status: "499" }) ?? 0) >= 1, "counted as 499");
  });

  it("a slow reader does not block other clients", async () => {
    const body = JSON.stringify(completionBody("slow reader", { max_tokens: 150, ignore_eos: true, stream: true }));
    const socket = connect(daemon.port, "127.0.0.1");
    await new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    socket.pause(); // read nothing for now
    socket.write(
      `POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer ${API_KEY}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    try {
      // Others are served meanwhile, and promptly.
      for (let i = 0; i < 3; ++i) {
        const start = Date.now();
        const body = completionBody(`other ${i}`, { max_tokens: 4, ignore_eos: true });
        const r = await request(daemon, "/v1/completions", { body });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.usage.completion_tokens, 4);
        assert.ok(Date.now() - start < 20000, "served promptly");
      }
      // Now read it slowly: small reads with pauses; it still ends with [DONE].
      const chunks = [];
      const ended = new Promise((resolve) => socket.on("end", resolve));
      socket.on("data", (d) => {
        chunks.push(d);
        socket.pause();
        setTimeout(() => socket.resume(), 5);
      });
      socket.resume();
      await withTimeout(ended, 60000, "the slow stream did not end");
      const text = Buffer.concat(chunks).toString("utf8");
      assert.match(text, /^HTTP\/1\.1 200/);
      assert.match(text, /data: \[DONE\]/);
    } finally {
      socket.destroy();
    }
    await waitIdle(daemon);
  });
});

describe("queue cap under a flood", () => {
  it("refuses past --max-waiting-requests with 429/503 + Retry-After; the rest complete", async () => {
    const capped = await startDaemon({
      args: ["--max-waiting-requests", "2", "--max-num-seqs", "2", "--grpc-port", "-1"],
    });
    try {
      const N = 50;
      const results = await Promise.all(
        Array.from({ length: N }, (_, i) =>
          fetchWithTimeout(
            capped.url("/v1/completions"),
            {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify(completionBody(`flood ${i}`, { max_tokens: 48, ignore_eos: true })),
            },
            180000,
          ).then(async (r) => ({ status: r.status, retryAfter: r.headers.get("retry-after"), json: await r.json() })),
        ),
      );
      const ok = results.filter((r) => r.status === 200);
      const refused = results.filter((r) => r.status === 429 || r.status === 503);
      assert.equal(ok.length + refused.length, N, `statuses: ${results.map((r) => r.status).join(",")}`);
      assert.ok(refused.length > 0, "some requests were refused");
      assert.ok(ok.length >= 2, "the ones admitted completed");
      for (const r of refused) {
        assert.ok(r.retryAfter !== null && Number(r.retryAfter) >= 1, `Retry-After: ${r.retryAfter}`);
        assertErrorBody(r.json, r.status === 429 ? { type: "rate_limit_error", code: "rate_limit_exceeded" } : {});
      }
      for (const r of ok) assert.equal(r.json.usage.completion_tokens, 48);
      // Alive and idle afterwards.
      const h = await fetchWithTimeout(capped.url("/health"));
      assert.equal(h.status, 200);
      await waitIdle(capped);
    } finally {
      await capped.stopAndCheck();
    }
  });
});

describe("SIGTERM under load", () => {
  it("finishes in-flight streams, refuses new requests, exits 0", async (t) => {
    const d = await startDaemon({ args: ["--grpc-port", "-1"] });
    let exited = false;
    try {
      // Four streams of n = 4 long sequences, each past its first chunk before the signal.
      const N_STREAMS = 4;
      const N_CHOICES = 4;
      const streams = [];
      const firstChunk = [];
      for (let i = 0; i < N_STREAMS; ++i) {
        let markFirst;
        firstChunk.push(new Promise((resolve) => (markFirst = resolve)));
        streams.push(
          (async () => {
            const r = await fetchWithTimeout(
              d.url("/v1/completions"),
              {
                method: "POST",
                headers: { "content-type": "application/json" },
                body: JSON.stringify(
                  completionBody(`drain ${i}`, { max_tokens: 200, n: N_CHOICES, ignore_eos: true, stream: true }),
                ),
              },
              120000,
            );
            assert.equal(r.status, 200);
            let text = "";
            for await (const chunk of r.body) {
              text += Buffer.from(chunk).toString("utf8");
              if (text.includes("data: ")) markFirst();
            }
            markFirst();
            return parseSse(text);
          })(),
        );
      }
      await withTimeout(Promise.all(firstChunk), 60000, "no first chunks");
      d.proc.kill("SIGTERM");
      // New requests are refused while the streams drain (or the port is closed once it exited).
      await sleep(100);
      const refused = await fetchWithTimeout(d.url("/v1/completions"), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(completionBody("too late", { max_tokens: 2 })),
      }).then(
        async (r) => ({
          status: r.status,
          retryAfter: r.headers.get("retry-after"),
          json: await r.json().catch(() => null),
        }),
        (e) => ({ error: e }),
      );
      if (refused.error) {
        t.diagnostic(`new request after SIGTERM: ${refused.error.cause?.code ?? refused.error}`);
        assert.match(String(refused.error.cause?.code ?? refused.error), /ECONNREFUSED|ECONNRESET|UND_ERR_SOCKET/);
      } else {
        t.diagnostic(`new request after SIGTERM: ${refused.status}`);
        assert.equal(refused.status, 503, JSON.stringify(refused.json));
        assertErrorBody(refused.json);
        assert.equal(refused.retryAfter, "1");
        const health = await fetchWithTimeout(d.url("/health")).then(
          (r) => r.status,
          () => "closed",
        );
        assert.ok(health === 503 || health === "closed", `health while draining: ${health}`);
      }
      const events = await Promise.all(streams);
      for (const ev of events) {
        assert.equal(ev.at(-1), "[DONE]");
        const finishes = ev.flatMap((e) => (e === "[DONE]" ? [] : e.choices)).filter((c) => c.finish_reason);
        assert.deepEqual(finishes.map((c) => c.index).sort(), [0, 1, 2, 3]);
        for (const c of finishes) assert.equal(c.finish_reason, "length", "ran to completion during the drain");
      }
      const exit = await withTimeout(d.exited, 40000, "no exit after SIGTERM");
      exited = true;
      assert.deepEqual(exit, { code: 0, signal: null }, d.tail());
    } finally {
      if (!exited) await d.stop().catch(() => {});
    }
  });
});

describe("after the suite", () => {
  it("still answers correctly, with no KV cache in use", async () => {
    await waitIdle(daemon);
    const body = completionBody("still alive", { max_tokens: 5, ignore_eos: true });
    const r = await request(daemon, "/v1/completions", { body });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].finish_reason, "length");
    assert.equal(r.json.usage.completion_tokens, 5);
    await waitIdle(daemon);
  });
});
