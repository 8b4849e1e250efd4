"""tokenizer.json files made and encoded by Hugging Face's own `tokenizers` library (pip install
tokenizers), the reference leash's tokenizer.json reader is checked against.

usage: python3 tests/ref/hf_tokenizer_ref.py STYLE TEXTS_JSON OUT_DIR [--gguf]

Trains a small byte-level BPE on the texts with the pre-tokenizer of a model family (STYLE):
  llama3   Split(Llama 3's regex, Isolated) + ByteLevel(use_regex=False), ignore_merges (with 30 tokens
           that merges cannot build, which only ignore_merges produces), Llama 3 specials
  qwen2    NFC normalizer + Split(Qwen2's regex, Isolated) + ByteLevel(use_regex=False), ChatML specials
  smollm2  Digits(individual_digits) + ByteLevel(use_regex=True), ChatML specials
  gpt2     ByteLevel(use_regex=True) alone, <|endoftext|>
and writes OUT_DIR/tokenizer.json, then OUT_DIR/ids.json: for each text, the ids of
tokenizer.encode(text, add_special_tokens=False), or null where the text is not in NFC and the
tokenizer normalises (leash assumes NFC input there; the test counts those).
With --gguf it also writes OUT_DIR/tokenizer.gguf with llama.cpp's own Python package `gguf`, as
llama.cpp's converter stores the same tokenizer: tokens, token types (special added tokens CONTROL),
merges, and the pre-tokenizer's name (llama-bpe, qwen2, smollm, gpt-2).
"""
import json
import sys
import unicodedata

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def build(style):
    if style == "llama3":
        tok = Tokenizer(models.BPE(ignore_merges=True))
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )
        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    elif style == "qwen2":
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(QWEN2), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    elif style == "gpt2":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        specials = ["<|endoftext|>"]
    elif style == "smollm2":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
        )
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    else:
        raise SystemExit(f"unknown style {style}")
    tok.decoder = decoders.ByteLevel()
    return tok, specials


def add_whole_pieces(tok, texts, path):
    """Adds 30 pre-tokenized pieces that merges cannot build to the vocabulary, so that ignore_merges
    (a piece that is a token is that token) decides their encoding."""
    data = json.load(open(path))
    vocab = data["model"]["vocab"]
    next_id = max(list(vocab.values()) + [a["id"] for a in data["added_tokens"]]) + 1
    for t in texts:
        for piece, _ in tok.pre_tokenizer.pre_tokenize_str(t):
            if 4 <= len(piece) <= 12 and piece not in vocab and next_id < 2000:
                vocab[piece] = next_id
                next_id += 1
        if next_id >= 2000 or len(vocab) >= 730:
            break
    json.dump(data, open(path, "w"), ensure_ascii=False)


PRE_NAMES = {"llama3": "llama-bpe", "qwen2": "qwen2", "smollm2": "smollm", "gpt2": "gpt-2"}


def write_gguf(style, path, out_path):
    import gguf

    data = json.load(open(path))
    by_id = {i: (t, gguf.TokenType.NORMAL) for t, i in data["model"]["vocab"].items()}
    for a in data["added_tokens"]:
        by_id[a["id"]] = (a["content"], gguf.TokenType.CONTROL if a["special"] else gguf.TokenType.USER_DEFINED)
    n = max(by_id) + 1
    toks = [by_id.get(i, (f"[PAD{i}]", gguf.TokenType.UNUSED)) for i in range(n)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    w = gguf.GGUFWriter(out_path, "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(PRE_NAMES[style])
    w.add_token_list([t for t, _ in toks])
    w.add_token_types([int(ty) for _, ty in toks])
    w.add_token_merges(merges)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main(style, texts_path, out_dir, *flags):
    texts = json.load(open(texts_path))
    tok, specials = build(style)
    trainer = trainers.BpeTrainer(
        vocab_size=700, min_frequency=2, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts * 4, trainer=trainer)
    tok.save(f"{out_dir}/tokenizer.json")
    if style == "llama3":
        add_whole_pieces(tok, texts, f"{out_dir}/tokenizer.json")
    if "--gguf" in flags:
        write_gguf(style, f"{out_dir}/tokenizer.json", f"{out_dir}/tokenizer.gguf")
    tok = Tokenizer.from_file(f"{out_dir}/tokenizer.json")  # encode with the file as written
    out = []
    for t in texts:
        if style == "qwen2" and not unicodedata.is_normalized("NFC", t):
            out.append(None)
        else:
            out.append(tok.encode(t, add_special_tokens=False).ids)
    json.dump(out, open(f"{out_dir}/ids.json", "w"))


if __name__ == "__main__":
    main(*sys.argv[1:])
