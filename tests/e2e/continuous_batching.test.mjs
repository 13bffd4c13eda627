// Continuous batching seen from outside: 32 concurrent greedy streams give exactly the outputs
// the same requests give one at a time, and the engine really batched them (the
// moeserve:step_sequences histogram shows steps carrying more than 8 sequences while they ran,
// and only single-sequence steps while they ran one by one).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { MODEL_ID, metricValue, metrics, startDaemon, streamRequest, waitIdle } from "./harness.mjs";

const N_REQUESTS = 32;
const MAX_TOKENS = 16;

let daemon;

before(async () => {
  daemon = await startDaemon({ args: ["--grpc-port", "-1", "--max-num-seqs", "64"] });
});

after(async () => {
  if (daemon) await daemon.stopAndCheck();
});

// Steps counted so far: all, and those with at most `le` sequences.
async function stepCounts() {
  const m = await metrics(daemon);
  const bucket = (le) => metricValue(m, "moeserve:step_sequences_bucket", { le }) ?? 0;
  return {
    total: metricValue(m, "moeserve:step_sequences_count") ?? 0,
    le1: bucket("1"),
    le8: bucket("8"),
  };
}

// One greedy streaming chat or completion request; returns its text and finish reason.
async function run(i) {
  const chat = i % 2 === 0;
  const body = chat
    ? {
        model: MODEL_ID,
        messages: [{ role: "user", content: `Question number ${i}: ${"why ".repeat(i % 5)}?` }],
        max_tokens: MAX_TOKENS,
        temperature: 0,
        ignore_eos: true,
        stream_options: { include_usage: true },
      }
    : {
        model: MODEL_ID,
        prompt: `Prompt ${i} ${"and more ".repeat(i % 7)}`,
        max_tokens: MAX_TOKENS,
        temperature: 0,
        ignore_eos: true,
        stream_options: { include_usage: true },
      };
  const { status, events, text } = await streamRequest(daemon, chat ? "/v1/chat/completions" : "/v1/completions", body);
  assert.equal(status, 200, text);
  assert.equal(events.at(-1), "[DONE]");
  const chunks = events.filter((e) => e !== "[DONE]");
  const usage = chunks.at(-1).usage;
  assert.equal(usage.completion_tokens, MAX_TOKENS, `request ${i}`);
  const choices = chunks.flatMap((c) => c.choices);
  const out = choices
    .map((c) => (chat ? (c.delta.reasoning_content ?? "") + "|" + (c.delta.content ?? "") : c.text))
    .join("");
  const finish = choices.filter((c) => c.finish_reason).map((c) => c.finish_reason);
  return { out, finish };
}

describe("continuous batching", () => {
  it("32 concurrent greedy streams equal the same requests run one at a time", { timeout: 300000 }, async (t) => {
    await waitIdle(daemon);
    const before = await stepCounts();
    const concurrent = await Promise.all(Array.from({ length: N_REQUESTS }, (_, i) => run(i)));
    const mid = await stepCounts();

    const batchedSteps = mid.total - before.total;
    const over8 = batchedSteps - (mid.le8 - before.le8);
    t.diagnostic(`concurrent phase: ${batchedSteps} steps, ${over8} with more than 8 sequences`);
    assert.ok(batchedSteps > 0);
    assert.ok(over8 > 0, `no step carried more than 8 sequences (${batchedSteps} steps)`);

    await waitIdle(daemon);
    const sequential = [];
    const seqBefore = await stepCounts();
    for (let i = 0; i < N_REQUESTS; ++i) sequential.push(await run(i));
    const seqAfter = await stepCounts();
    assert.equal(
      seqAfter.total - seqBefore.total,
      seqAfter.le1 - seqBefore.le1,
      "one request at a time: every step carries one sequence",
    );

    for (let i = 0; i < N_REQUESTS; ++i) {
      assert.deepEqual(concurrent[i].finish, ["length"], `request ${i}`);
      assert.equal(concurrent[i].out, sequential[i].out, `request ${i}: batched output differs from alone`);
    }
    // Different prompts give different outputs (the comparison is not vacuous).
    assert.ok(new Set(sequential.map((s) => s.out)).size > N_REQUESTS / 2);
    await waitIdle(daemon);
  });
});
