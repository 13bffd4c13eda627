// Writes two small hand-made tokenizers used by tests that must run without
// the real (npm-installed) ones:
//   tests/data/tokenizer/tiny_byte_fallback/: Llama/Mistral style (Metaspace
//     via normalizer, BPE with byte_fallback, <s> template).
//   tests/data/tokenizer/tiny_byte_level/: GPT-2 style byte-level BPE.
//
//   node tests/tokenizer_ref/make_tiny_tokenizers.mjs
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const dataDir = join(dirname(fileURLToPath(import.meta.url)), "..", "data", "tokenizer");
const special = (id, content) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });

function write(name, tokenizer, config) {
  const dir = join(dataDir, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizer, null, 1) + "\n");
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(config, null, 1) + "\n");
}

// Builds vocab + merges from a list of words: every merge joins the pieces
// of a word left to right, so each listed word becomes one token.
function addWords(vocab, merges, words, splitChars) {
  for (const word of words) {
    const chars = splitChars(word);
    let acc = chars[0];
    for (let i = 1; i < chars.length; ++i) {
      for (const t of [acc, chars[i]]) if (!(t in vocab)) vocab[t] = Object.keys(vocab).length;
      const merged = acc + chars[i];
      if (!(merged in vocab)) {
        vocab[merged] = Object.keys(vocab).length;
        merges.push(`${acc} ${chars[i]}`);
      }
      acc = merged;
    }
  }
}

{
  const vocab = { "<unk>": 0, "<s>": 1, "</s>": 2 };
  for (let b = 0; b < 256; ++b) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`] = 3 + b;
  for (const c of "▁abcdefghijklmnopqrstuvwxyz.,!?'é中文") vocab[c] = Object.keys(vocab).length;
  const merges = [];
  addWords(vocab, merges, ["▁the", "▁hello", "▁world", "he", "ll", "llo", "▁a", "▁is", "ing", "▁中文"], (w) => Array.from(w));
  write("tiny_byte_fallback", {
    version: "1.0", truncation: null, padding: null,
    added_tokens: [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
    normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "▁" }, { type: "Replace", pattern: { String: " " }, content: "▁" }] },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "<s>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: { type: "Sequence", decoders: [{ type: "Replace", pattern: { String: "▁" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }] },
    model: { type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges },
  }, { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", tokenizer_class: "PreTrainedTokenizerFast", clean_up_tokenization_spaces: false });
}

{
  // GPT-2's bytes_to_unicode.
  const byteChars = [];
  let n = 0;
  for (let b = 0; b < 256; ++b) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    byteChars.push(String.fromCodePoint(printable ? b : 256 + n++));
  }
  const vocab = {};
  for (const c of byteChars) vocab[c] = Object.keys(vocab).length;
  const merges = [];
  const enc = (s) => Array.from(new TextEncoder().encode(s), (b) => byteChars[b]);
  addWords(vocab, merges, [" the", " hello", " world", "ing", " 中文", "é", "😀", "\n\n", "    "], enc);
  const eot = Object.keys(vocab).length;
  write("tiny_byte_level", {
    version: "1.0", truncation: null, padding: null,
    added_tokens: [special(eot, "<|endoftext|>")],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "", fuse_unk: false, byte_fallback: false, vocab, merges },
  }, { eos_token: "<|endoftext|>", tokenizer_class: "GPT2Tokenizer", clean_up_tokenization_spaces: false });
}
console.log(`wrote tiny tokenizers to ${dataDir}`);
