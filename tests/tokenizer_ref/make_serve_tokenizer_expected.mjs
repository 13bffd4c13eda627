// Encodes a few strings with the reference tokenizer (transformers.js, @lenml/tokenizers) using
// the tiny serving test tokenizer (tests/data/tiny/tokenizer_512, written by
// tests/reference/make_tokenizer.py) and writes {"text", "ids"} lines to
// tests/data/tokenizer/tiny_serve_512_expected.jsonl for tests/unit/serve_tokenizer_test.cc.
// add_special_tokens is off (transformers.js ignores add_bos_token; see tokenizer.h).
//
//   npm ci --prefix tests/tokenizer_ref && node tests/tokenizer_ref/make_serve_tokenizer_expected.mjs
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { TokenizerLoader } from "@lenml/tokenizers";

const tinyDir = join(dirname(fileURLToPath(import.meta.url)), "..", "data", "tiny");
const dir = join(tinyDir, "tokenizer_512");
const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8")),
  tokenizerConfig: JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8")),
});

const texts = [
  "Hello, world!",
  "the server streams tokens as they are generated",
  "moeserve serve --model DIR --port 8000",
  "1234567 + 89 = 1234656",
  "  leading spaces and trailing   ",
  "line one\nline two\n\n\tindented\r\n",
  "héllo wörld, ça va? naïve café",
  "中文分词测试",
  "日本語のひらがなとカタカナ",
  "emoji 😀🚀 and flags 🇫🇷",
  "Привет, мир",
  "مرحبا بالعالم",
  "e\u0301 combining accent",
  "def f(x):\n    return x ** 2  # square",
  "## Markdown `code` and **bold** [link](http://127.0.0.1/)",
  "<｜User｜>What is 2+2?<｜Assistant｜><think>\nfour</think>4",
  "<｜begin▁of▁sentence｜>text<｜end▁of▁sentence｜>",
  "<think>reasoning</think>answer",
  "supercalifragilisticexpialidocious",
  "don't can't won't I'm you're",
  "a\u00a0non-breaking\u2003space",
  "{\"json\": [1, 2.5, null, true]}",
];

const lines = texts.map((text) =>
  JSON.stringify({ text, ids: tokenizer.encode(text, { add_special_tokens: false }) }));
writeFileSync(join(tinyDir, "..", "tokenizer", "tiny_serve_512_expected.jsonl"), lines.join("\n") + "\n");
console.log(`wrote ${lines.length} lines`);
