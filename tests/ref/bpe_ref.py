"""An independent GPT-2 byte-level BPE encoder in Python, the reference leash's tokenizer is checked against.

usage: python3 tests/ref/bpe_ref.py VOCAB_JSON MERGES_TXT TEXTS_JSON OUT_JSON

TEXTS_JSON is a JSON list of strings; OUT_JSON receives a list of id lists. Written from the published
algorithm (GPT-2's encoder: the pre-tokenisation regex run with the `regex` module for \\p{L} and \\p{N},
the byte-to-unicode map, then merging the lowest-ranked adjacent pair everywhere until none is left).
Shares no code with leash.
"""
import json
import sys

import regex

PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def byte_alphabet():
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def main(vocab_path, merges_path, texts_path, out_path):
    vocab = json.load(open(vocab_path, encoding="utf-8"))
    lines = open(merges_path, encoding="utf-8").read().split("\n")
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    ranks = {}
    for line in lines:
        if line:
            a, b = line.split(" ")
            ranks.setdefault((a, b), len(ranks))
    alphabet = byte_alphabet()

    def bpe(piece):
        word = [alphabet[b] for b in piece.encode("utf-8")]
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
            if best not in ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return [vocab[w] for w in word]

    out = [[i for piece in PATTERN.findall(text) for i in bpe(piece)] for text in json.load(open(texts_path, encoding="utf-8"))]
    json.dump(out, open(out_path, "w"))


if __name__ == "__main__":
    main(*sys.argv[1:5])
