#!/usr/bin/env python3
"""Trains a small DeepSeek-style byte-level BPE tokenizer for the tiny test checkpoints.

The tiny checkpoints (tests/data/tiny/*) have random weights and a vocabulary of a few hundred
ids, so the real DeepSeek tokenizer cannot drive them. This writes a Hugging Face tokenizer.json
and tokenizer_config.json of the same shape as DeepSeek-V3/R1's:

  id 0                 <｜begin▁of▁sentence｜>  (BOS, special)
  id 1                 <｜end▁of▁sentence｜>    (EOS, special)
  ids 2 .. 257         the 256 byte tokens (GPT-2 bytes-to-unicode alphabet)
  ids 258 .. N-6       merges learned from the corpus
  ids N-5 .. N-1       <｜User｜>, <｜Assistant｜>, <think>, </think> (added, not special, as in
                       DeepSeek-R1's file) and <｜▁pad▁｜> (special)

with DeepSeek-V3's pre-tokenizer (digit / CJK / word splits, then ByteLevel without regex),
a ByteLevel decoder, LlamaTokenizerFast with add_bos_token, and DeepSeek-R1's chat template.

Training is standard BPE over pre-tokenized words: repeatedly merge the most frequent adjacent
pair, ties broken by the smaller pair in code-point order, so the output depends only on the
corpus bytes. The training pre-tokenizer approximates DeepSeek's regex with Python's `re`
(which lacks \\p{...}); any merge list is valid for any pre-tokenizer, so this only changes
which merges are learned, not whether encoding is correct.

  python3 tests/reference/make_tokenizer.py --vocab-size 512 \\
      --corpus tests/data/tokenizer/corpus.jsonl --out tests/data/tiny/tokenizer_512

The committed tokenizer_512 was trained on tests/data/tokenizer/corpus.jsonl (the tokenizer
parity corpus: English, code, numbers and a dozen scripts), which stays fixed, so the command
above reproduces it byte for byte.
"""

import argparse
import collections
import heapq
import json
import os
import re
import sys

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
# (content, special, normalized) appended after the merges, in this order.
TAIL_TOKENS = [
    ("<｜User｜>", False, True),
    ("<｜Assistant｜>", False, True),
    ("<think>", False, True),
    ("</think>", False, True),
    ("<｜▁pad▁｜>", True, False),
]
N_BYTE_TOKENS = 256
MAX_WORD_BYTES = 16
FIRST_BYTE_ID = 2

# DeepSeek-V3's pre-tokenizer, as in its tokenizer.json.
PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated",
         "invert": False},
        {"type": "Split", "pattern": {"Regex": "[一-龥\u3040-ゟ゠-ヿ]+"}, "behavior": "Isolated",
         "invert": False},
        {"type": "Split",
         "pattern": {"Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|"
                              "[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|"
                              "\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
         "use_regex": False},
    ],
}

# Training-time approximation of PRE_TOKENIZER: digit runs of at most 3, CJK runs, words with
# one leading non-letter, punctuation runs, whitespace.
TRAIN_SPLIT = re.compile(
    r"\d{1,3}|[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+|[^\W\d_]+|[^\r\n\w][^\W\d_]+|"
    r" ?[^\s\w]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+|_+")


def bytes_to_unicode():
    """GPT-2's byte -> printable character table (index = byte value)."""
    chars = []
    n = 0
    for b in range(256):
        printable = 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or b >= 0xAE
        if printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + n))
            n += 1
    return chars


def count_words(texts, byte_chars):
    """Pre-tokenized words as tuples of byte-level symbols, each counted once per text it occurs
    in; words over MAX_WORD_BYTES are left out. Both keep long repetitive strings (stress-test
    lines of a corpus) from filling the vocabulary with their runs."""
    counts = collections.Counter()
    for text in texts:
        for piece in set(TRAIN_SPLIT.findall(text)):
            if len(piece.encode("utf-8")) <= MAX_WORD_BYTES:
                counts[piece] += 1
    words = {}
    for piece, count in counts.items():
        symbols = tuple(byte_chars[b] for b in piece.encode("utf-8"))
        words[symbols] = words.get(symbols, 0) + count
    return words


def merge_word(word, pair, merged):
    out = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == pair[0] and word[i + 1] == pair[1]:
            out.append(merged)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def _pairs(word):
    return collections.Counter(zip(word, word[1:]))


def train_bpe(words, n_merges):
    """Returns up to n_merges (left, right) pairs in the order learned: each step merges the most
    frequent adjacent pair, ties broken by the smaller pair. Pair counts are kept up to date
    incrementally (only the words holding the merged pair are revisited) and the best pair comes
    from a heap whose stale entries are skipped, so a few thousand merges over a corpus of
    megabytes take seconds, with the same result as recounting every pair at every step."""
    words = [list(w) for w in words.items()]          # [symbols, count]
    pair_counts = collections.Counter()
    where = collections.defaultdict(set)             # pair -> indices of words holding it
    for i, (word, count) in enumerate(words):
        for pair, n in _pairs(word).items():
            pair_counts[pair] += n * count
            where[pair].add(i)
    heap = [(-c, p) for p, c in pair_counts.items()]
    heapq.heapify(heap)
    merges = []
    while len(merges) < n_merges and heap:
        neg, best = heapq.heappop(heap)
        if pair_counts.get(best, 0) != -neg or neg == 0:
            continue                                  # stale entry
        merged = best[0] + best[1]
        merges.append(best)
        touched = set()
        for i in where.pop(best):
            word, count = words[i]
            new_word = merge_word(word, best, merged)
            for pair, n in _pairs(word).items():
                pair_counts[pair] -= n * count
                touched.add(pair)
            for pair, n in _pairs(new_word).items():
                pair_counts[pair] += n * count
                where[pair].add(i)
                touched.add(pair)
            words[i][0] = new_word
        for pair in touched:
            c = pair_counts.get(pair, 0)
            if c > 0:
                heapq.heappush(heap, (-c, pair))
            else:
                pair_counts.pop(pair, None)
                where.pop(pair, None)
    return merges


def added_token(token_id, content, special, normalized):
    return {"id": token_id, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": normalized, "special": special}


def config_token(content):
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True,
            "rstrip": False, "single_word": False}


def build(vocab_size, texts, chat_template, model_max_length=256):
    n_merges = vocab_size - FIRST_BYTE_ID - N_BYTE_TOKENS - len(TAIL_TOKENS)
    if n_merges < 0:
        sys.exit(f"--vocab-size must be at least {vocab_size - n_merges}")
    byte_chars = bytes_to_unicode()
    vocab = {BOS: 0, EOS: 1}
    for i, c in enumerate(byte_chars):
        vocab[c] = FIRST_BYTE_ID + i
    merges = train_bpe(count_words(texts, byte_chars), n_merges)
    if len(merges) < n_merges:
        sys.exit(f"corpus too small: learned {len(merges)} of {n_merges} merges")
    for a, b in merges:
        vocab[a + b] = len(vocab)
    added = [added_token(0, BOS, True, False), added_token(1, EOS, True, False)]
    for i, (content, special, normalized) in enumerate(TAIL_TOKENS):
        added.append(added_token(len(vocab) + i, content, special, normalized))
    assert added[-1]["id"] == vocab_size - 1

    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": []},
        "pre_tokenizer": PRE_TOKENIZER,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                  "merges": [f"{a} {b}" for a, b in merges]},
    }
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": config_token(BOS),
        "clean_up_tokenization_spaces": False,
        "eos_token": config_token(EOS),
        "legacy": True,
        "model_max_length": model_max_length,
        "pad_token": config_token("<｜▁pad▁｜>"),
        "sp_model_kwargs": {},
        "unk_token": None,
        "tokenizer_class": "LlamaTokenizerFast",
        "chat_template": chat_template,
    }
    return tokenizer, config


def read_corpus(path):
    """The texts of one corpus file: a .jsonl file holds one JSON string per line, any other
    file one text per line."""
    with open(path, encoding="utf-8") as f:
        if not path.endswith(".jsonl"):
            return f.read().splitlines(keepends=True)
        return [json.loads(line) for line in f if line.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab-size", type=int, required=True)
    parser.add_argument("--corpus", nargs="+", required=True,
                        help="UTF-8 text files; .jsonl: one JSON string per line")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--chat-template",
                        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                             "data", "chat_templates", "deepseek_r1.jinja"))
    args = parser.parse_args()

    texts = []
    for path in args.corpus:
        texts.extend(read_corpus(path))
    with open(args.chat_template, encoding="utf-8") as f:
        chat_template = f.read()
    tokenizer, config = build(args.vocab_size, texts, chat_template)

    os.makedirs(args.out, exist_ok=True)
    for name, obj in [("tokenizer.json", tokenizer), ("tokenizer_config.json", config)]:
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=1)
            f.write("\n")
    print(f"wrote {args.out}: {args.vocab_size} ids, {len(tokenizer['model']['merges'])} merges")


if __name__ == "__main__":
    main()
