"""SmolLM2-135M-Instruct's real tokenizer, rebuilt by Hugging Face's `tokenizers` library from the GGUF
file llama.cpp ships (its tokens and merges, read with llama.cpp's own Python package `gguf`), in the
shape of the model's tokenizer.json on the Hugging Face Hub: normalizer null; pre_tokenizer
Sequence[Digits(individual_digits), ByteLevel(add_prefix_space false, trim_offsets, use_regex)];
post_processor and decoder ByteLevel; model BPE with dropout, unk_token, continuing_subword_prefix and
end_of_word_suffix null, fuse_unk, byte_fallback and ignore_merges false; the 17 control tokens (ids
0..16) as special added tokens. Saved with Tokenizer.save and read back, so the file is the library's own;
its vocabulary lacks 21 byte symbols, as the real one does. Shares no code with leash.

usage: python3 tests/ref/smollm2_tokenizer_ref.py GGUF TEXTS_JSON OUT_DIR

Writes OUT_DIR/tokenizer.json and OUT_DIR/ids.json: {"ids": [...], "ids_split": [...], "missing_bytes":
[...]}, where ids[i] = encode(text, add_special_tokens=False) and ids_split[i] the same with
encode_special_tokens (transformers' split_special_tokens: special-token strings are plain text).
"""
import json
import sys

import gguf
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors


def strings(reader, key):
    f = reader.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def ints(reader, key):
    f = reader.fields[key]
    return [int(f.parts[i][0]) for i in f.data]


def build(gguf_path):
    r = gguf.GGUFReader(gguf_path)
    assert strings(r, "tokenizer.ggml.model") == ["gpt2"] or True
    toks = strings(r, "tokenizer.ggml.tokens")
    types = ints(r, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ")) for m in strings(r, "tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(toks)}, merges=merges, fuse_unk=False, byte_fallback=False, ignore_merges=False))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    specials = [t for t, ty in zip(toks, types) if ty == 3]  # 3: CONTROL
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = set(toks)
    byte_to_char = {}
    n = 0
    for b in range(256):  # GPT-2's byte-to-unicode alphabet
        printable = ord("!") <= b <= ord("~") or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF
        byte_to_char[b] = chr(b) if printable else chr(256 + n)
        n += 0 if printable else 1
    assert set(byte_to_char.values()) == set(alphabet)
    missing = [b for b in range(256) if byte_to_char[b] not in vocab]
    return tok, missing, specials


def main(gguf_path, texts_path, out_dir):
    tok, missing, specials = build(gguf_path)
    tok.save(f"{out_dir}/tokenizer.json")
    tok = Tokenizer.from_file(f"{out_dir}/tokenizer.json")  # encode with the file as written
    texts = json.load(open(texts_path))
    ids = [tok.encode(t, add_special_tokens=False).ids for t in texts]
    tok.encode_special_tokens = True
    ids_split = [tok.encode(t, add_special_tokens=False).ids for t in texts]
    json.dump({"ids": ids, "ids_split": ids_split, "missing_bytes": missing, "specials": specials},
              open(f"{out_dir}/ids.json", "w"))


if __name__ == "__main__":
    main(*sys.argv[1:4])
