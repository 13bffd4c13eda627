// The README's examples, run as printed against `moeserve serve` with no model argument (the
// bundled trained model, models/tiny): the `curl` command and the `openai` SDK snippet. Only the
// port changes (the test daemon listens on a free one instead of 8000). Both must return
// generated English text: most of its words are whole words of the model's vocabulary, which a
// model with random weights does not produce.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SOURCE_DIR, request, startDaemon } from "./harness.mjs";

const README = readFileSync(join(SOURCE_DIR, "README.md"), "utf8");
const VOCAB = JSON.parse(readFileSync(join(SOURCE_DIR, "models/tiny/tokenizer.json"), "utf8")).model.vocab;

// The fenced code blocks of the README with their language: [{lang, code}].
function codeBlocks(markdown) {
  return [...markdown.matchAll(/```(\w*)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1], code: m[2] }));
}

function run(file, args, { timeoutMs = 60000, cwd } = {}) {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, cwd, maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(" ")}: ${error.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

// Generated text reads as English: at least 10 words of 3 or more letters, and at least 60% of
// them (as written or lower-cased) are single tokens of the vocabulary with the leading-space
// marker, i.e. whole words the tokenizer learned from the corpus. The trained model's answers
// score 69-94% on this; the random-weight test checkpoint's output (tests/data/tiny/v3_tiny)
// scored 0-50%, on 2-10 such words.
function assertRealText(text, what) {
  const words = text.match(/[A-Za-z]{3,}/g) ?? [];
  assert.ok(words.length >= 10, `${what}: fewer than 10 words in ${JSON.stringify(text)}`);
  const known = words.filter((w) => `Ġ${w}` in VOCAB || `Ġ${w.toLowerCase()}` in VOCAB);
  assert.ok(known.length >= 0.6 * words.length,
    `${what}: only ${known.length} of ${words.length} words are whole vocabulary words: ${JSON.stringify(text)}`);
}

let daemon;

before(async () => {
  daemon = await startDaemon({ bundledModel: true });
});

after(async () => {
  if (daemon) await daemon.stopAndCheck();
});

const onTestPort = (code) => code.replaceAll("127.0.0.1:8000", `127.0.0.1:${daemon.port}`);

describe("README examples against the bundled model", () => {
  it("serves the bundled model as 'tiny'", async () => {
    const r = await request(daemon, "/v1/models", { method: "GET" });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.data.map((m) => m.id), ["tiny"]);
  });

  it("the curl example returns generated text", async () => {
    const block = codeBlocks(README).find((b) => b.lang === "sh" && b.code.includes("curl ") &&
      b.code.includes("/v1/chat/completions"));
    assert.ok(block, "README has no sh block with the curl chat example");
    const out = await run("bash", ["-c", onTestPort(block.code)]);
    const body = JSON.parse(out);
    const message = body.choices[0].message;
    assert.equal(message.role, "assistant");
    assertRealText(message.content, "curl content");
  });

  it("the openai SDK example returns generated text", async () => {
    const block = codeBlocks(README).find((b) => b.lang === "js" && b.code.includes("new OpenAI("));
    assert.ok(block, "README has no js block with the openai SDK example");
    // Next to node_modules, so that `import OpenAI from "openai"` resolves.
    const file = join(import.meta.dirname, `.readme_example_${process.pid}.mjs`);
    writeFileSync(file, onTestPort(block.code));
    try {
      const out = await run(process.execPath, [file], { cwd: import.meta.dirname });
      assertRealText(out, "SDK output");
    } finally {
      rmSync(file, { force: true });
    }
  });
});
