// `moeserve serve`'s gRPC API (proto/moeserve/v1/generation.proto) driven by @grpc/grpc-js:
// unary and streaming generation from text, token ids and chat; cancel and deadline abort the
// request and free its KV cache; the standard health service; API-key authentication.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import {
  MAX_MODEL_LEN,
  MODEL_ID,
  SOURCE_DIR,
  VOCAB_SIZE,
  metricValue,
  metrics,
  request,
  startDaemon,
  waitIdle,
} from "./harness.mjs";

const LOAD_OPTIONS = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };
const generationPkg = grpc.loadPackageDefinition(
  protoLoader.loadSync(join(SOURCE_DIR, "proto/moeserve/v1/generation.proto"), LOAD_OPTIONS),
);
const healthPkg = grpc.loadPackageDefinition(
  protoLoader.loadSync(join(SOURCE_DIR, "tests/e2e/health.proto"), LOAD_OPTIONS),
);
const { Generation } = generationPkg.moeserve.v1;
const { Health } = healthPkg.grpc.health.v1;

// Bans special and marker tokens so greedy output is plain text (see openai_sdk.test.mjs).
const PLAIN_TEXT = { 0: -100, 1: -100, 507: -100, 508: -100, 509: -100, 510: -100, 511: -100 };

const deadlineIn = (ms) => new Date(Date.now() + ms);

function unary(client, method, req, { metadata = new grpc.Metadata(), timeoutMs = 30000 } = {}) {
  return new Promise((resolve, reject) => {
    client[method](req, metadata, { deadline: deadlineIn(timeoutMs) }, (err, res) =>
      err ? reject(err) : resolve(res),
    );
  });
}

// Runs a server stream to its end; resolves {messages, status} or rejects with the error.
function streamAll(client, req, { metadata = new grpc.Metadata(), timeoutMs = 30000 } = {}) {
  return new Promise((resolve, reject) => {
    const messages = [];
    const call = client.GenerateStream(req, metadata, { deadline: deadlineIn(timeoutMs) });
    call.on("data", (m) => messages.push(m));
    call.on("error", reject);
    call.on("end", () => resolve(messages));
  });
}

function grpcCode(name) {
  return (e) => {
    assert.equal(e.code, grpc.status[name], `expected ${name}, got ${e.code} ${e.details}`);
    return true;
  };
}

let daemon;
let client;
let health;

before(async () => {
  daemon = await startDaemon();
  client = new Generation(daemon.grpcAddress, grpc.credentials.createInsecure());
  health = new Health(daemon.grpcAddress, grpc.credentials.createInsecure());
});

after(async () => {
  client?.close();
  health?.close();
  if (daemon) await daemon.stopAndCheck();
});

describe("Generate (unary)", () => {
  it("from text: length finish, token ids, usage; same greedy text as the REST API", async () => {
    const r = await unary(client, "Generate", {
      model: "",
      text: "Hello gRPC",
      sampling: { max_tokens: 6, ignore_eos: true, temperature: 0 },
    });
    assert.ok(r.id.length > 0);
    assert.equal(r.model, MODEL_ID);
    assert.equal(r.completions.length, 1);
    const c = r.completions[0];
    assert.equal(c.index, 0);
    assert.equal(c.finish_reason, "FINISH_REASON_LENGTH");
    assert.equal(c.token_ids.length, 6);
    for (const id of c.token_ids) assert.ok(id >= 0 && id < VOCAB_SIZE);
    assert.equal(r.usage.completion_tokens, 6);
    assert.ok(r.usage.prompt_tokens > 0);
    assert.ok(r.usage.cached_tokens >= 0 && r.usage.cached_tokens <= r.usage.prompt_tokens);

    const rest = await request(daemon, "/v1/completions", {
      body: { model: MODEL_ID, prompt: "Hello gRPC", max_tokens: 6, ignore_eos: true, temperature: 0 },
    });
    assert.equal(rest.status, 200, rest.text);
    assert.equal(c.text, rest.json.choices[0].text, "gRPC and REST agree on greedy output");
    assert.equal(r.usage.prompt_tokens, rest.json.usage.prompt_tokens);
  });

  it("from token ids", async () => {
    const r = await unary(client, "Generate", {
      model: MODEL_ID,
      token_ids: { ids: [0, 40, 41, 42, 43] },
      sampling: { max_tokens: 3, ignore_eos: true },
    });
    assert.equal(r.usage.prompt_tokens, 5);
    assert.equal(r.completions[0].token_ids.length, 3);
  });

  it("from chat: reasoning text (the R1 template opens <think>)", async () => {
    const r = await unary(client, "Generate", {
      chat: { messages: [{ role: "user", content: "Hi" }] },
      sampling: { max_tokens: 5, ignore_eos: true, logit_bias: PLAIN_TEXT },
    });
    const c = r.completions[0];
    assert.ok(c.reasoning_text.length > 0, JSON.stringify(c));
    assert.equal(c.text, "");
    const tok = await unary(client, "Tokenize", { chat: { messages: [{ role: "user", content: "Hi" }] } });
    assert.equal(r.usage.prompt_tokens, tok.count);
  });

  it("n, seed and logprobs", async () => {
    const req = {
      text: "Sample",
      sampling: { max_tokens: 4, ignore_eos: true, temperature: 1, seed: 11, n: 3, logprobs: true, top_logprobs: 2 },
    };
    const a = await unary(client, "Generate", req);
    const b = await unary(client, "Generate", req);
    assert.deepEqual(a.completions.map((c) => c.index), [0, 1, 2]);
    assert.deepEqual(
      a.completions.map((c) => c.token_ids),
      b.completions.map((c) => c.token_ids),
      "same seed, same tokens",
    );
    for (const c of a.completions) {
      assert.equal(c.logprobs.length, 4);
      c.logprobs.forEach((lp, i) => {
        assert.equal(lp.token_id, c.token_ids[i]);
        assert.ok(lp.logprob <= 0);
        assert.equal(lp.top_logprobs.length, 2);
      });
    }
  });

  it("stop string: finish STOP with the string reported", async () => {
    const base = { text: "Stop test", sampling: { max_tokens: 20, ignore_eos: true, logit_bias: PLAIN_TEXT } };
    const full = (await unary(client, "Generate", base)).completions[0].text;
    const chars = Array.from(full);
    let stop = null;
    for (let i = Math.floor(chars.length / 2); i < chars.length - 1 && !stop; ++i) {
      const s = chars.slice(i, i + 2).join("");
      if (!s.includes("\uFFFD") && full.indexOf(s) > 0) stop = s;
    }
    assert.ok(stop, `no stop string in ${JSON.stringify(full)}`);
    const r = await unary(client, "Generate", { ...base, sampling: { ...base.sampling, stop: [stop] } });
    const c = r.completions[0];
    assert.equal(c.finish_reason, "FINISH_REASON_STOP");
    assert.equal(c.stop_string, stop);
    assert.equal(c.text, full.slice(0, full.indexOf(stop)));
  });

  it("errors: bad argument, unknown model, token id out of the vocabulary", async () => {
    await assert.rejects(
      unary(client, "Generate", { text: "x", sampling: { top_p: 0 } }),
      grpcCode("INVALID_ARGUMENT"),
    );
    await assert.rejects(unary(client, "Generate", { model: "other", text: "x" }), grpcCode("NOT_FOUND"));
    await assert.rejects(
      unary(client, "Generate", { token_ids: { ids: [1, VOCAB_SIZE] } }),
      grpcCode("INVALID_ARGUMENT"),
    );
    await assert.rejects(unary(client, "Generate", { model: MODEL_ID }), grpcCode("INVALID_ARGUMENT"));
    await assert.rejects(unary(client, "Generate", { token_ids: { ids: [] } }), grpcCode("INVALID_ARGUMENT"));
    await assert.rejects(
      unary(client, "Generate", { chat: { messages: [] } }),
      grpcCode("INVALID_ARGUMENT"),
    );
  });

  it("Tokenize and GetModelInfo", async () => {
    const info = await unary(client, "GetModelInfo", {});
    assert.equal(info.id, MODEL_ID);
    assert.equal(info.vocab_size, VOCAB_SIZE);
    assert.equal(info.max_model_len, MAX_MODEL_LEN);
    assert.ok(info.eos_token_ids.includes(1), JSON.stringify(info));
    assert.ok(info.kv_cache_blocks > 0 && info.block_size > 0);
    assert.ok(info.architecture.length > 0);
    const t = await unary(client, "Tokenize", { text: "Hello", add_special_tokens: true });
    assert.equal(t.token_ids[0], 0, "BOS");
    assert.equal(t.count, t.token_ids.length);
    assert.equal(t.max_model_len, MAX_MODEL_LEN);
    const plain = await unary(client, "Tokenize", { text: "Hello", add_special_tokens: false });
    assert.deepEqual(plain.token_ids, t.token_ids.slice(1));
  });
});

describe("GenerateStream", () => {
  it("ordered deltas per sequence, one finish each, final usage; same as unary", async () => {
    const req = { text: "Streaming", sampling: { max_tokens: 8, ignore_eos: true, n: 2, temperature: 1, seed: 5 } };
    const unaryResult = await unary(client, "Generate", req);
    const messages = await streamAll(client, req);
    assert.ok(messages.length >= 3);
    const last = messages.at(-1);
    assert.equal(last.delta, null, "the final message carries no delta");
    assert.equal(last.usage.completion_tokens, 16);
    assert.equal(last.usage.prompt_tokens, unaryResult.usage.prompt_tokens);
    const id = messages[0].id;
    for (const m of messages.slice(0, -1)) {
      assert.equal(m.id, id);
      assert.ok(m.delta, "non-final messages carry a delta");
      assert.equal(m.usage, null);
    }
    for (const index of [0, 1]) {
      const deltas = messages.slice(0, -1).map((m) => m.delta).filter((d) => d.index === index);
      const finishes = deltas.filter((d) => d.finish_reason !== "FINISH_REASON_UNSPECIFIED");
      assert.equal(finishes.length, 1, `one finish for sequence ${index}`);
      assert.equal(deltas.at(-1).finish_reason, "FINISH_REASON_LENGTH");
      const expected = unaryResult.completions[index];
      assert.deepEqual(deltas.flatMap((d) => d.token_ids), expected.token_ids);
      assert.equal(deltas.map((d) => d.text).join(""), expected.text);
    }
  });

  it("client cancel mid-stream aborts the request and frees its KV cache", async () => {
    const before = await metrics(daemon);
    await new Promise((resolve, reject) => {
      const call = client.GenerateStream(
        { text: "Cancel me", sampling: { max_tokens: 200, ignore_eos: true } },
        new grpc.Metadata(),
        { deadline: deadlineIn(30000) },
      );
      let received = 0;
      call.on("data", () => {
        if (++received === 2) call.cancel();
      });
      call.on("error", (e) => (e.code === grpc.status.CANCELLED ? resolve() : reject(e)));
      call.on("end", () => reject(new Error(`stream ended after ${received} messages without cancel`)));
    });
    await waitIdle(daemon);
    const afterCancel = await metrics(daemon);
    const aborted = (m) => metricValue(m, "vllm:request_success_total", { finished_reason: "abort" }) ?? 0;
    assert.ok(aborted(afterCancel) > aborted(before), "the engine counted an aborted request");
  });

  it("deadline: DEADLINE_EXCEEDED and the request is aborted", async () => {
    // 8 x 240 tokens: about a second of work, far past the 150 ms deadline.
    const slow = { text: "Slow", sampling: { max_tokens: 240, ignore_eos: true, n: 8 } };
    await assert.rejects(streamAll(client, slow, { timeoutMs: 150 }), grpcCode("DEADLINE_EXCEEDED"));
    await assert.rejects(unary(client, "Generate", slow, { timeoutMs: 150 }), grpcCode("DEADLINE_EXCEEDED"));
    await waitIdle(daemon);
  });
});

describe("grpc.health.v1", () => {
  it("reports SERVING for the server and the Generation service", async () => {
    assert.equal((await unary(health, "Check", { service: "" })).status, "SERVING");
    assert.equal((await unary(health, "Check", { service: "moeserve.v1.Generation" })).status, "SERVING");
    await assert.rejects(unary(health, "Check", { service: "no.such.Service" }), grpcCode("NOT_FOUND"));
  });
});

describe("authentication", () => {
  const KEY = "grpc-e2e-secret";
  let authed;
  let authClient;
  let authHealth;

  before(async () => {
    authed = await startDaemon({ apiKey: KEY });
    authClient = new Generation(authed.grpcAddress, grpc.credentials.createInsecure());
    authHealth = new Health(authed.grpcAddress, grpc.credentials.createInsecure());
  });

  after(async () => {
    authClient?.close();
    authHealth?.close();
    if (authed) await authed.stopAndCheck();
  });

  const withAuth = (value) => {
    const m = new grpc.Metadata();
    if (value !== null) m.set("authorization", value);
    return m;
  };
  const req = { text: "auth", sampling: { max_tokens: 2 } };

  it("refuses a missing, wrong or malformed key with UNAUTHENTICATED", async () => {
    for (const value of [null, "Bearer wrong", `bearer ${KEY}`, KEY, `Bearer ${KEY}x`, "Bearer "]) {
      const options = { metadata: withAuth(value) };
      await assert.rejects(unary(authClient, "Generate", req, options), grpcCode("UNAUTHENTICATED"));
      await assert.rejects(streamAll(authClient, req, options), grpcCode("UNAUTHENTICATED"));
      await assert.rejects(unary(authClient, "GetModelInfo", {}, options), grpcCode("UNAUTHENTICATED"));
      await assert.rejects(unary(authClient, "Tokenize", { text: "x" }, options), grpcCode("UNAUTHENTICATED"));
    }
  });

  it("accepts the right key", async () => {
    const r = await unary(authClient, "Generate", req, { metadata: withAuth(`Bearer ${KEY}`) });
    assert.equal(r.completions.length, 1);
    const messages = await streamAll(authClient, req, { metadata: withAuth(`Bearer ${KEY}`) });
    assert.ok(messages.at(-1).usage);
  });

  it("leaves the health service public", async () => {
    assert.equal((await unary(authHealth, "Check", { service: "" })).status, "SERVING");
  });
});

describe("after the suite", () => {
  it("leaves no request running and no KV block in use", async () => {
    await waitIdle(daemon);
  });
});
