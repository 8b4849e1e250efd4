"""Small GGUF files whose tokenizer leash must refuse, written with llama.cpp's own Python package `gguf`
(the same writer llama.cpp's converter uses): a 256-byte byte-level vocabulary ("gpt2", pre "gpt-2") with
one thing changed per file.

usage: python3 tests/ref/gguf_tokenizer_cases.py OUT_DIR

Writes OUT_DIR/NAME.gguf for each NAME below, and OUT_DIR/ok.gguf, unchanged.
"""
import sys

import gguf


def byte_tokens():
    out, n = [], 0
    for b in range(256):  # GPT-2's byte-to-unicode alphabet
        printable = ord("!") <= b <= ord("~") or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF
        out.append(chr(b) if printable else chr(256 + n))
        n += 0 if printable else 1
    return out + ["\u0120\u0120", "<|endoftext|>"]


CASES = {  # name: (model, pre, token type of <|endoftext|>, extra keys)
    "ok": ("gpt2", "gpt-2", gguf.TokenType.CONTROL, {}),
    "sentencepiece": ("llama", "gpt-2", gguf.TokenType.CONTROL, {}),
    "pre_default": ("gpt2", "default", gguf.TokenType.CONTROL, {}),
    "pre_unknown": ("gpt2", "deepseek-coder", gguf.TokenType.CONTROL, {}),
    "pre_missing": ("gpt2", None, gguf.TokenType.CONTROL, {}),
    "byte_type": ("gpt2", "gpt-2", gguf.TokenType.BYTE, {}),
    "unknown_key": ("gpt2", "gpt-2", gguf.TokenType.CONTROL, {"tokenizer.ggml.new_option": True}),
    "add_eos": ("gpt2", "gpt-2", gguf.TokenType.CONTROL, {"tokenizer.ggml.add_eos_token": True}),
    "space_prefix": ("gpt2", "gpt-2", gguf.TokenType.CONTROL, {"tokenizer.ggml.add_space_prefix": True}),
}


def main(out_dir):
    toks = byte_tokens()
    for name, (model, pre, eot_type, extra) in CASES.items():
        w = gguf.GGUFWriter(f"{out_dir}/{name}.gguf", "llama")
        w.add_tokenizer_model(model)
        if pre is not None:
            w.add_tokenizer_pre(pre)
        w.add_token_list(toks)
        w.add_token_types([gguf.TokenType.NORMAL] * 257 + [eot_type])
        w.add_token_merges(["\u0120 \u0120"])
        for k, v in extra.items():
            w.add_bool(k, v)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()


if __name__ == "__main__":
    main(sys.argv[1])
