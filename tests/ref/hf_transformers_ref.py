"""Hugging Face transformers and PEFT themselves (pinned to versions that run on Debian's torch 1.13:
transformers 4.44.2, peft 0.12.0; scripts/deps.sh --ref puts them in a venv), for checking that model
directories leash writes load in them and compute the same logits, and that directories they write load
in leash.

usage: python tests/ref/hf_transformers_ref.py logits DIR TOKENS_JSON OUT_JSON
           DIR: a model directory (config.json + weights) or a PEFT adapter directory; TOKENS_JSON a list of
           token-id rows of equal length; OUT_JSON receives the logits, float64 compute, as nested lists.
       python tests/ref/hf_transformers_ref.py write KIND DIR TOKENS_JSON OUT_JSON
           writes a randomly initialised model of KIND (llama | qwen2 | mistral | gpt2) with save_pretrained
           (sharded into small files, BF16 for llama), and its logits for the tokens as above.
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, MistralConfig, Qwen2Config

torch.manual_seed(0)


def logits_of(model, rows):
    model = model.double().eval()
    with torch.no_grad():
        return model(torch.tensor(rows)).logits.tolist()


def load(d):
    if os.path.exists(os.path.join(d, "adapter_config.json")):
        from peft import PeftModel

        cfg = json.load(open(os.path.join(d, "adapter_config.json")))
        base = AutoModelForCausalLM.from_pretrained(cfg["base_model_name_or_path"], torch_dtype=torch.float32)
        return PeftModel.from_pretrained(base, d)
    return AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32)


def make(kind):
    common = dict(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2)
    if kind == "llama":
        cfg = LlamaConfig(**common, rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False,
                          rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                        "high_freq_factor": 4.0, "original_max_position_embeddings": 16})
    elif kind == "qwen2":
        cfg = Qwen2Config(**common, rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=True)
    elif kind == "mistral":
        cfg = MistralConfig(**common, rms_norm_eps=1e-5, sliding_window=32, tie_word_embeddings=False)
    else:
        cfg = GPT2Config(vocab_size=97, n_positions=64, n_embd=32, n_layer=2, n_head=4, bos_token_id=1, eos_token_id=2)
    model = AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():  # norms and biases away from their initial 1 and 0, so that they are tested
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


def main():
    mode = sys.argv[1]
    if mode == "logits":
        d, tokens, out = sys.argv[2:5]
        model = load(d)
    else:
        kind, d, tokens, out = sys.argv[2:6]
        model = make(kind)
        dtype = torch.bfloat16 if kind == "llama" else torch.float32
        model.to(dtype).save_pretrained(d, safe_serialization=True, max_shard_size="40KB")
        model = model.float()
    rows = json.load(open(tokens))
    json.dump(logits_of(model, rows), open(out, "w"))


if __name__ == "__main__":
    main()
