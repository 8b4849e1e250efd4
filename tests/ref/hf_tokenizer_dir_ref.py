"""A model directory's tokenizer as transformers loads it (AutoTokenizer.from_pretrained): the check that
the tokenizer.json and tokenizer_config.json leash writes (from a GGUF file, or carried from a model
directory) are usable by transformers, chat template included. Run with the venv that has transformers
(/opt/leash-hf/bin/python; scripts/deps.sh --ref).

usage: python tests/ref/hf_tokenizer_dir_ref.py DIR OUT.json

Writes OUT.json: {"chat_ids": apply_chat_template([system, user], add_generation_prompt=True) ids,
"chat_text": the same as text, "text_ids": tokenizer(TEXT, add_special_tokens=False) ids, "bos", "eos",
"pad": the special tokens' texts}.
"""
import json
import sys

from transformers import AutoTokenizer

TEXT = "Hello <|im_start|>world 12345\n\n日本語 🙂"
MESSAGES = [{"role": "user", "content": "What is 12+30?"}]


def main(model_dir, out_path):
    tok = AutoTokenizer.from_pretrained(model_dir)
    chat_text = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    chat_ids = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True)
    json.dump({"chat_ids": chat_ids, "chat_text": chat_text, "text": TEXT,
               "text_ids": tok(TEXT, add_special_tokens=False)["input_ids"],
               "bos": tok.bos_token, "eos": tok.eos_token, "pad": tok.pad_token}, open(out_path, "w"), ensure_ascii=False)


if __name__ == "__main__":
    main(*sys.argv[1:3])
