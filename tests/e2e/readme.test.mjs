// The README's examples, run as printed against `moeserve serve` with no model argument (the
// bundled trained model, models/tiny): the `curl` command and the `openai` SDK snippet. Only the
// port changes (the test daemon listens on a free one instead of 8000). Both must return
// generated English text, which a model with random weights does not produce.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { SOURCE_DIR, request, startDaemon } from "./harness.mjs";

const README = readFileSync(join(SOURCE_DIR, "README.md"), "utf8");
const HERE = dirname(fileURLToPath(import.meta.url));

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

// Generated text reads as English: at least 10 words, at least 20% of them among the commonest
// English function words. Answers of the bundled model scored 24-47% on this; texts decoded from
// 55 uniformly random ids of its vocabulary scored at most 14.7% (mean 1.5%) in 1,000 draws.
const FUNCTION_WORDS = new Set(("the of and to a in is it that for as with be are this by on not " +
  "or an from at can which if but").split(" "));
function assertRealText(text, what) {
  const words = text.match(/[A-Za-z]+/g) ?? [];
  assert.ok(words.length >= 10, `${what}: fewer than 10 words in ${JSON.stringify(text)}`);
  const common = words.filter((w) => FUNCTION_WORDS.has(w.toLowerCase()));
  assert.ok(common.length >= 0.2 * words.length,
    `${what}: only ${common.length} of ${words.length} words are function words: ${JSON.stringify(text)}`);
}

let daemon;

before(async () => {
  daemon = await startDaemon({ bundledModel: true });
});

after(async () => {
  if (daemon) await daemon.stopAndCheck();
});

// The example on the test daemon's port; the example must name the README's port, or it would
// talk to whatever listens on 8000 instead.
function onTestPort(code) {
  assert.ok(code.includes("127.0.0.1:8000"), `the example does not use 127.0.0.1:8000:\n${code}`);
  return code.replaceAll("127.0.0.1:8000", `127.0.0.1:${daemon.port}`);
}

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
    // The R1 template opens <think>: the reasoning part, then the answer.
    assert.ok(typeof message.reasoning_content === "string" && message.reasoning_content.length > 0,
      JSON.stringify(message));
    assertRealText(message.content, "curl content");
  });

  it("the openai SDK example returns generated text", async () => {
    const block = codeBlocks(README).find((b) => b.lang === "js" && b.code.includes("new OpenAI("));
    assert.ok(block, "README has no js block with the openai SDK example");
    // Next to node_modules, so that `import OpenAI from "openai"` resolves.
    const file = join(HERE, `.readme_example_${process.pid}.mjs`);
    writeFileSync(file, onTestPort(block.code));
    try {
      const out = await run(process.execPath, [file], { cwd: HERE });
      assertRealText(out, "SDK output");
    } finally {
      rmSync(file, { force: true });
    }
  });
});
