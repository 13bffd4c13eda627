"""Encoding with a DeepSeek-style byte-level BPE tokenizer.json, in Python, for preparing training data.

Handles exactly what tests/reference/make_tokenizer.py writes: a Sequence of `Split` pre-tokenizers
(behaviour `Isolated`) followed by `ByteLevel` without regex, no normalizer, and a BPE model whose
merges are applied by rank. Special tokens are never parsed out of text: callers put their ids in
directly. Needs Debian's `python3-regex` (for \\p{...} classes).
"""

import json
import os
import sys

import regex

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "reference"))
from make_tokenizer import bytes_to_unicode  # noqa: E402


class Tokenizer:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            tj = json.load(f)
        pre = tj["pre_tokenizer"]["pretokenizers"]
        self.splits = []
        for p in pre:
            if p["type"] == "Split":
                assert p["behavior"] == "Isolated" and not p["invert"]
                self.splits.append(regex.compile(p["pattern"]["Regex"]))
            else:
                assert p["type"] == "ByteLevel" and not p["use_regex"], p
        model = tj["model"]
        self.vocab = model["vocab"]
        self.ranks = {tuple(m.split(" ")): i for i, m in enumerate(model["merges"])}
        self.added = {t["content"]: t["id"] for t in tj["added_tokens"]}
        self.byte_chars = bytes_to_unicode()
        self.id_to_piece = {i: p for p, i in self.vocab.items()}
        self.id_to_piece.update({i: c for c, i in self.added.items()})
        self.char_to_byte = {c: b for b, c in enumerate(self.byte_chars)}
        self.cache = {}

    def token_id(self, content):
        return self.added[content]

    def pieces(self, text):
        parts = [text]
        for rx in self.splits:
            out = []
            for part in parts:
                pos = 0
                for m in rx.finditer(part):
                    if m.start() > pos:
                        out.append(part[pos:m.start()])
                    if m.end() > m.start():
                        out.append(m.group())
                    pos = m.end()
                if pos < len(part):
                    out.append(part[pos:])
            parts = out
        return parts

    def _bpe(self, piece):
        ids = self.cache.get(piece)
        if ids is not None:
            return ids
        word = [self.byte_chars[b] for b in piece.encode("utf-8")]
        while len(word) > 1:
            best, best_rank = None, None
            for i in range(len(word) - 1):
                r = self.ranks.get((word[i], word[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best is None:
                break
            word[best:best + 2] = [word[best] + word[best + 1]]
        ids = [self.vocab[s] for s in word]
        self.cache[piece] = ids
        return ids

    def encode(self, text):
        ids = []
        for piece in self.pieces(text):
            ids.extend(self._bpe(piece))
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            piece = self.id_to_piece[i]
            if piece in self.added:
                out.extend(piece.encode("utf-8"))
            else:
                out.extend(self.char_to_byte[c] for c in piece)
        return out.decode("utf-8", errors="replace")

