// `moeserve serve` driven by the official OpenAI Node.js SDK: chat and completions, streaming
// and not, usage, n, logprobs, stop strings, seeds, max_tokens, models. Responses are checked
// field by field against OpenAI's schema. The tiny model has random weights: its text is
// gibberish, so tests compare outputs with each other, never with fixed text.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { MAX_MODEL_LEN, MODEL_ID, VOCAB_SIZE, startDaemon, waitIdle } from "./harness.mjs";

const API_KEY = "sk-e2e-openai-sdk";
// Bans the special and marker tokens (BOS, EOS, <｜User｜>, <｜Assistant｜>, <think>, </think>,
// pad) so greedy output is plain text: exact text checks need no special cases.
const PLAIN_TEXT = { 0: -100, 1: -100, 507: -100, 508: -100, 509: -100, 510: -100, 511: -100 };

let daemon;
let client;

before(async () => {
  daemon = await startDaemon({ apiKey: API_KEY });
  client = new OpenAI({ baseURL: daemon.url("/v1"), apiKey: API_KEY, maxRetries: 0, timeout: 60000 });
});

after(async () => {
  if (daemon) await daemon.stopAndCheck();
});

const nowSeconds = () => Math.floor(Date.now() / 1000);

function assertUsage(usage, { completionTokens } = {}) {
  assert.ok(usage, "usage missing");
  assert.ok(Number.isInteger(usage.prompt_tokens) && usage.prompt_tokens > 0, JSON.stringify(usage));
  assert.ok(Number.isInteger(usage.completion_tokens) && usage.completion_tokens >= 0);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
  assert.ok(usage.prompt_tokens_details, "usage.prompt_tokens_details missing");
  const cached = usage.prompt_tokens_details.cached_tokens;
  assert.ok(Number.isInteger(cached) && cached >= 0 && cached <= usage.prompt_tokens, JSON.stringify(usage));
  if (completionTokens !== undefined) assert.equal(usage.completion_tokens, completionTokens);
}

function assertEnvelope(response, { object, idPrefix }) {
  assert.equal(response.object, object);
  assert.equal(typeof response.id, "string");
  assert.ok(response.id.startsWith(idPrefix), `id ${response.id} should start with ${idPrefix}`);
  assert.ok(response.id.length > idPrefix.length);
  assert.ok(Number.isInteger(response.created), `created ${response.created}`);
  assert.ok(Math.abs(response.created - nowSeconds()) < 600, `created ${response.created} is not now`);
  assert.equal(response.model, MODEL_ID);
  assert.ok(Array.isArray(response.choices));
}

// Collects an SDK stream: all chunks, and per choice index its text, reasoning and finish.
async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

describe("models", () => {
  it("lists the served model", async () => {
    const page = await client.models.list();
    assert.equal(page.data.length, 1);
    const model = page.data[0];
    assert.equal(model.id, MODEL_ID);
    assert.equal(model.object, "model");
    assert.ok(Number.isInteger(model.created));
    assert.equal(model.owned_by, "moeserve");
    assert.equal(model.max_model_len, MAX_MODEL_LEN);
    const one = await client.models.retrieve(MODEL_ID);
    assert.equal(one.id, MODEL_ID);
    await assert.rejects(client.models.retrieve("no-such-model"), (e) => e.status === 404);
  });
});

describe("chat.completions", () => {
  it("answers non-streaming with reasoning (the R1 template opens <think>)", async () => {
    const r = await client.chat.completions.create({
      model: MODEL_ID,
      messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hello there" }],
      max_tokens: 12,
      temperature: 0,
      ignore_eos: true,
      logit_bias: PLAIN_TEXT,
    });
    assertEnvelope(r, { object: "chat.completion", idPrefix: "chatcmpl-" });
    assert.equal(r.choices.length, 1);
    const c = r.choices[0];
    assert.equal(c.index, 0);
    assert.equal(c.finish_reason, "length");
    assert.equal(c.logprobs, null);
    assert.equal(c.message.role, "assistant");
    assert.equal(typeof c.message.content, "string");
    // With </think> banned, everything the model writes is reasoning.
    assert.equal(typeof c.message.reasoning_content, "string");
    assert.ok(c.message.reasoning_content.length > 0, JSON.stringify(c.message));
    assert.equal(c.message.content, "");
    assertUsage(r.usage, { completionTokens: 12 });
  });

  it("streams: role first, deltas, finish, same text as non-streaming", async () => {
    const body = {
      model: MODEL_ID,
      messages: [{ role: "user", content: "Tell me a story" }],
      max_tokens: 10,
      temperature: 0,
      ignore_eos: true,
      logit_bias: PLAIN_TEXT,
    };
    const whole = await client.chat.completions.create(body);
    const chunks = await collect(await client.chat.completions.create({ ...body, stream: true }));
    assert.ok(chunks.length >= 3, `only ${chunks.length} chunks`);
    const id = chunks[0].id;
    assert.ok(id.startsWith("chatcmpl-"));
    for (const chunk of chunks) {
      assert.equal(chunk.object, "chat.completion.chunk");
      assert.equal(chunk.id, id, "all chunks share the id");
      assert.equal(chunk.model, MODEL_ID);
      assert.ok(Number.isInteger(chunk.created));
      assert.equal(chunk.choices.length, 1);
      assert.equal(chunk.choices[0].index, 0);
    }
    assert.equal(chunks[0].choices[0].delta.role, "assistant");
    for (const chunk of chunks.slice(1)) assert.equal(chunk.choices[0].delta.role, undefined);
    const last = chunks.at(-1).choices[0];
    assert.equal(last.finish_reason, "length");
    for (const chunk of chunks.slice(0, -1)) assert.equal(chunk.choices[0].finish_reason, null);
    const reasoning = chunks.map((c) => c.choices[0].delta.reasoning_content ?? "").join("");
    const content = chunks.map((c) => c.choices[0].delta.content ?? "").join("");
    assert.ok(
      chunks.some((c) => (c.choices[0].delta.reasoning_content ?? "").length > 0),
      "some chunk carries reasoning_content",
    );
    assert.equal(reasoning, whole.choices[0].message.reasoning_content);
    assert.equal(content, whole.choices[0].message.content);
  });

  it("stream_options.include_usage adds one usage chunk with no choices at the end", async () => {
    const chunks = await collect(
      await client.chat.completions.create({
        model: MODEL_ID,
        messages: [{ role: "user", content: "Count" }],
        max_tokens: 6,
        temperature: 0,
        ignore_eos: true,
        stream: true,
        stream_options: { include_usage: true },
      }),
    );
    const withUsage = chunks.filter((c) => c.usage);
    assert.equal(withUsage.length, 1, "exactly one chunk with usage");
    const usageChunk = chunks.at(-1);
    assert.equal(withUsage[0], usageChunk, "the usage chunk is the last");
    assert.deepEqual(usageChunk.choices, []);
    assertUsage(usageChunk.usage, { completionTokens: 6 });
    for (const chunk of chunks.slice(0, -1)) {
      assert.equal(chunk.usage, null, "other chunks have usage: null");
      assert.equal(chunk.choices.length, 1);
    }
  });

  it("n = 3: all indexes, interleaved when streamed", async () => {
    const body = {
      model: MODEL_ID,
      messages: [{ role: "user", content: "Pick a color" }],
      max_tokens: 8,
      temperature: 1,
      seed: 7,
      n: 3,
      ignore_eos: true,
    };
    const r = await client.chat.completions.create(body);
    assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
    for (const c of r.choices) assert.equal(c.finish_reason, "length");
    assertUsage(r.usage, { completionTokens: 24 });

    const chunks = await collect(await client.chat.completions.create({ ...body, stream: true }));
    const order = chunks.flatMap((c) => c.choices.map((ch) => ch.index));
    assert.deepEqual([...new Set(order)].sort(), [0, 1, 2]);
    for (const i of [0, 1, 2]) {
      const mine = chunks.flatMap((c) => c.choices).filter((ch) => ch.index === i);
      assert.equal(mine[0].delta.role, "assistant");
      assert.equal(mine.at(-1).finish_reason, "length");
      assert.equal(mine.filter((ch) => ch.finish_reason !== null).length, 1);
    }
    // Interleaved: some chunk of a later index comes before the last chunk of index 0.
    const lastOf0 = order.lastIndexOf(0);
    assert.ok(order.slice(0, lastOf0).some((i) => i !== 0), `not interleaved: ${order.join(",")}`);
    // Same seed, streamed or not: the same three texts.
    for (const i of [0, 1, 2]) {
      const text = chunks
        .flatMap((c) => c.choices)
        .filter((ch) => ch.index === i)
        .map((ch) => (ch.delta.reasoning_content ?? "") + (ch.delta.content ?? ""))
        .join("");
      const m = r.choices[i].message;
      assert.equal(text, (m.reasoning_content ?? "") + m.content, `choice ${i}`);
    }
  });

  it("logprobs with top_logprobs 3", async () => {
    const r = await client.chat.completions.create({
      model: MODEL_ID,
      messages: [{ role: "user", content: "Say something" }],
      max_tokens: 8,
      temperature: 0,
      ignore_eos: true,
      logit_bias: PLAIN_TEXT,
      logprobs: true,
      top_logprobs: 3,
    });
    const c = r.choices[0];
    assert.ok(c.logprobs && Array.isArray(c.logprobs.content), JSON.stringify(c.logprobs));
    assert.equal(c.logprobs.content.length, r.usage.completion_tokens);
    const bytes = [];
    for (const t of c.logprobs.content) {
      assert.equal(typeof t.token, "string");
      assert.ok(typeof t.logprob === "number" && t.logprob <= 0, JSON.stringify(t));
      assert.ok(Array.isArray(t.bytes));
      bytes.push(...t.bytes);
      assert.equal(t.top_logprobs.length, 3);
      for (let k = 0; k < 3; ++k) {
        const alt = t.top_logprobs[k];
        assert.equal(typeof alt.token, "string");
        assert.ok(alt.logprob <= 0);
        assert.ok(Array.isArray(alt.bytes));
        if (k > 0) assert.ok(alt.logprob <= t.top_logprobs[k - 1].logprob, "sorted by logprob");
      }
      // Greedy: the chosen token is the most likely one.
      assert.equal(t.token, t.top_logprobs[0].token);
      assert.ok(Math.abs(t.logprob - t.top_logprobs[0].logprob) < 1e-4);
    }
    // The tokens' bytes make up the output (all reasoning here: </think> is banned).
    assert.equal(Buffer.from(bytes).toString("utf8"), c.message.reasoning_content + c.message.content);
  });

  it("stops at a stop string taken from a greedy output", async () => {
    const body = {
      model: MODEL_ID,
      messages: [{ role: "user", content: "Write a line" }],
      max_tokens: 24,
      temperature: 0,
      ignore_eos: true,
      logit_bias: PLAIN_TEXT,
    };
    const full = (await client.chat.completions.create(body)).choices[0].message.reasoning_content;
    const stop = pickStopString(full);
    const r = await client.chat.completions.create({ ...body, stop: [stop] });
    const c = r.choices[0];
    assert.equal(c.finish_reason, "stop");
    assert.equal(c.stop_reason, stop);
    assert.equal(c.message.reasoning_content ?? "", full.slice(0, full.indexOf(stop)));
    assert.ok(r.usage.completion_tokens < 24);
  });

  it("is reproducible with a seed at temperature 1", async () => {
    const run = async (seed) =>
      (
        await client.chat.completions.create({
          model: MODEL_ID,
          messages: [{ role: "user", content: "Random words please" }],
          max_tokens: 16,
          temperature: 1,
          ignore_eos: true,
          logit_bias: PLAIN_TEXT,
          seed,
        })
      ).choices[0].message;
    const a = await run(1234);
    const b = await run(1234);
    const other = await run(98765);
    assert.equal(a.reasoning_content, b.reasoning_content);
    assert.equal(a.content, b.content);
    assert.notEqual(other.reasoning_content + other.content, a.reasoning_content + a.content);
  });

  it("max_tokens with ignore_eos ends with length and that many tokens", async () => {
    for (const maxTokens of [1, 5, 20]) {
      const r = await client.chat.completions.create({
        model: MODEL_ID,
        messages: [{ role: "user", content: "Go" }],
        max_tokens: maxTokens,
        temperature: 1,
        seed: maxTokens,
        ignore_eos: true,
      });
      assert.equal(r.choices[0].finish_reason, "length");
      assertUsage(r.usage, { completionTokens: maxTokens });
    }
    // max_completion_tokens (the newer name) wins over max_tokens.
    const r = await client.chat.completions.create({
      model: MODEL_ID,
      messages: [{ role: "user", content: "Go" }],
      max_tokens: 9,
      max_completion_tokens: 3,
      ignore_eos: true,
    });
    assertUsage(r.usage, { completionTokens: 3 });
  });
});

// A stop string surely in `text`: 2-3 characters from its middle, no U+FFFD, not at the start.
function pickStopString(text) {
  const chars = Array.from(text);
  assert.ok(chars.length >= 8, `greedy output too short: ${JSON.stringify(text)}`);
  for (let start = Math.floor(chars.length / 2); start < chars.length - 2; ++start) {
    const s = chars.slice(start, start + 3).join("");
    if (!s.includes("\uFFFD") && text.indexOf(s) > 0) return s;
  }
  for (let start = 1; start < chars.length - 2; ++start) {
    const s = chars.slice(start, start + 3).join("");
    if (!s.includes("\uFFFD") && text.indexOf(s) > 0) return s;
  }
  assert.fail(`no usable stop string in ${JSON.stringify(text)}`);
}

describe("completions", () => {
  it("answers non-streaming", async () => {
    const r = await client.completions.create({
      model: MODEL_ID,
      prompt: "The quick brown fox",
      max_tokens: 7,
      temperature: 0,
      ignore_eos: true,
    });
    assertEnvelope(r, { object: "text_completion", idPrefix: "cmpl-" });
    assert.equal(r.choices.length, 1);
    const c = r.choices[0];
    assert.equal(c.index, 0);
    assert.equal(typeof c.text, "string");
    assert.equal(c.finish_reason, "length");
    assert.equal(c.logprobs, null);
    assertUsage(r.usage, { completionTokens: 7 });
  });

  it("token-id prompts and several prompts", async () => {
    const r = await client.completions.create({
      model: MODEL_ID,
      prompt: [[0, 100, 200, 300], [0, 5, 6]],
      max_tokens: 3,
      n: 2,
      temperature: 1,
      seed: 3,
      ignore_eos: true,
    });
    // Choice i * n + j is prompt i's sequence j.
    assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2, 3]);
    assert.equal(r.usage.prompt_tokens, 7);
    assert.equal(r.usage.completion_tokens, 12);
  });

  it("streams the same text as non-streaming", async () => {
    const body = { model: MODEL_ID, prompt: "Once upon a time", max_tokens: 10, temperature: 0, ignore_eos: true };
    const whole = await client.completions.create(body);
    const chunks = await collect(await client.completions.create({ ...body, stream: true }));
    assert.ok(chunks.length >= 2);
    for (const chunk of chunks) {
      assert.equal(chunk.object, "text_completion");
      assert.equal(chunk.id, chunks[0].id);
      assert.ok(chunk.id.startsWith("cmpl-"));
      assert.equal(chunk.model, MODEL_ID);
      assert.equal(chunk.choices.length, 1);
    }
    assert.equal(chunks.map((c) => c.choices[0].text).join(""), whole.choices[0].text);
    assert.equal(chunks.at(-1).choices[0].finish_reason, "length");
    for (const chunk of chunks.slice(0, -1)) assert.equal(chunk.choices[0].finish_reason, null);
  });

  it("stream_options.include_usage", async () => {
    const chunks = await collect(
      await client.completions.create({
        model: MODEL_ID,
        prompt: "abc",
        max_tokens: 4,
        ignore_eos: true,
        stream: true,
        stream_options: { include_usage: true },
      }),
    );
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    assertUsage(last.usage, { completionTokens: 4 });
    assert.equal(chunks.filter((c) => c.usage).length, 1);
  });

  it("logprobs 2: legacy format with the sampled token among the alternatives", async () => {
    const r = await client.completions.create({
      model: MODEL_ID,
      prompt: "Numbers: 1 2 3",
      max_tokens: 6,
      temperature: 0,
      ignore_eos: true,
      logprobs: 2,
    });
    const lp = r.choices[0].logprobs;
    const n = r.usage.completion_tokens;
    assert.equal(n, 6);
    assert.equal(lp.tokens.length, n);
    assert.equal(lp.token_logprobs.length, n);
    assert.equal(lp.top_logprobs.length, n);
    assert.equal(lp.text_offset.length, n);
    for (let i = 0; i < n; ++i) {
      assert.equal(typeof lp.tokens[i], "string");
      assert.ok(lp.token_logprobs[i] <= 0);
      const alts = lp.top_logprobs[i];
      const keys = Object.keys(alts);
      assert.ok(keys.length >= 1 && keys.length <= 3, JSON.stringify(alts));
      assert.ok(lp.tokens[i] in alts, `sampled token ${JSON.stringify(lp.tokens[i])} in ${JSON.stringify(alts)}`);
      // Greedy: the sampled token has the highest log-probability.
      assert.ok(Math.abs(Math.max(...Object.values(alts)) - lp.token_logprobs[i]) < 1e-4);
      if (i > 0) assert.ok(lp.text_offset[i] >= lp.text_offset[i - 1]);
    }
  });

  it("stops at a stop string taken from a greedy output", async () => {
    const body = {
      model: MODEL_ID,
      prompt: "A sentence:",
      max_tokens: 24,
      temperature: 0,
      ignore_eos: true,
      logit_bias: PLAIN_TEXT,
    };
    const full = (await client.completions.create(body)).choices[0].text;
    const stop = pickStopString(full);
    const r = await client.completions.create({ ...body, stop });
    assert.equal(r.choices[0].finish_reason, "stop");
    assert.equal(r.choices[0].text, full.slice(0, full.indexOf(stop)));
    // include_stop_str_in_output keeps it.
    const kept = await client.completions.create({ ...body, stop, include_stop_str_in_output: true });
    assert.equal(kept.choices[0].text, full.slice(0, full.indexOf(stop)) + stop);
  });

  it("seed reproducibility at temperature 1", async () => {
    const run = async (seed) =>
      (
        await client.completions.create({
          model: MODEL_ID,
          prompt: "Seeded",
          max_tokens: 16,
          temperature: 1,
          ignore_eos: true,
          seed,
        })
      ).choices[0].text;
    assert.equal(await run(5), await run(5));
    assert.notEqual(await run(5), await run(6));
  });

  it("max_tokens → length; the prompt plus output fits the context", async () => {
    const r = await client.completions.create({
      model: MODEL_ID,
      prompt: "x",
      max_tokens: 32,
      ignore_eos: true,
    });
    assert.equal(r.choices[0].finish_reason, "length");
    assertUsage(r.usage, { completionTokens: 32 });
    assert.ok(r.usage.total_tokens <= MAX_MODEL_LEN);
  });

  it("detokenize/tokenize round trip agrees with usage.prompt_tokens", async () => {
    const prompt = "Round trip text";
    const t = await fetch(daemon.url("/tokenize"), {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({ model: MODEL_ID, prompt }),
    }).then((r) => r.json());
    assert.equal(t.count, t.tokens.length);
    assert.equal(t.tokens[0], 0, "BOS first (add_bos_token)");
    for (const id of t.tokens) assert.ok(id >= 0 && id < VOCAB_SIZE);
    const r = await client.completions.create({ model: MODEL_ID, prompt, max_tokens: 1 });
    assert.equal(r.usage.prompt_tokens, t.count);
  });
});

describe("after the suite", () => {
  it("leaves no request running and no KV block in use", async () => {
    await waitIdle(daemon);
  });
});
