"""Reference for tests/test_score.c: chat templates rendered by Hugging Face transformers'
apply_chat_template (the real function, on a minimal fast tokenizer that carries the template and the BOS
token), and a GGUF file's tokenizer.chat_template read with llama.cpp's own `gguf` reader.

    score_ref.py render CASES.json OUT.json
        CASES.json: {"template": str, "bos_token": str, "cases": [{"messages": [...], "add_generation_prompt": bool}]}
        OUT.json:   [rendered text of each case]
    score_ref.py gguf-template FILE.gguf OUT.txt
        OUT.txt: the file's tokenizer.chat_template, byte for byte
"""
import json
import sys


def render(cases_path, out_path):
    from tokenizers import Tokenizer
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    with open(cases_path, encoding="utf-8") as f:
        spec = json.load(f)
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(BPE()), bos_token=spec["bos_token"])
    tok.chat_template = spec["template"]
    out = [tok.apply_chat_template(c["messages"], tokenize=False, add_generation_prompt=c["add_generation_prompt"])
           for c in spec["cases"]]
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


def gguf_template(path, out_path):
    import gguf

    field = gguf.GGUFReader(path).fields["tokenizer.chat_template"]
    with open(out_path, "wb") as f:
        f.write(bytes(field.parts[field.data[0]]))


if __name__ == "__main__":
    if sys.argv[1] == "render":
        render(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "gguf-template":
        gguf_template(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: score_ref.py render CASES.json OUT.json | gguf-template FILE.gguf OUT.txt")
