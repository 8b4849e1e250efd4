"""Hugging Face transformers and PEFT themselves, for checking that model directories leash writes load in
them and compute the same logits, and that directories they write load in leash. Runs with either venv that
scripts/deps.sh --ref makes: /opt/leash-hf (transformers 4.44.2 + PEFT 0.12.0 over Debian's torch 1.13) and
/opt/leash-hf5 (transformers 5 + the current PEFT over PyPI's torch). Logits are computed in float64 and
written, as nested lists (rows, positions, vocabulary), to DIR.logits.json beside each directory DIR.

usage: python tests/ref/hf_transformers_ref.py logits TOKENS_JSON DIR...
           DIR: a model directory (config.json + weights) or a PEFT adapter directory; TOKENS_JSON a list of
           token-id rows of equal length.
       python tests/ref/hf_transformers_ref.py write TOKENS_JSON OUT KIND...
           writes a randomly initialised model of each KIND (a key of KINDS below) with save_pretrained into
           OUT/KIND, and its logits.
       python tests/ref/hf_transformers_ref.py peft TOKENS_JSON TARGETS BASE...
           PEFT puts LoRA adapters (r 4, alpha 8, lora_B random) on every linear layer but the head of the
           model in BASE, TARGETS "all-linear" or "names" (the layers' short names, listed), and writes them
           with save_pretrained into BASE-peft, and their logits.
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local directories only
import torch
import transformers
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, MistralConfig, Qwen2Config
from transformers.pytorch_utils import Conv1D

V5 = int(transformers.__version__.split(".")[0]) >= 5
torch.manual_seed(0)
torch.set_num_threads(1)  # tiny models; the tests run beside each other

COMMON = dict(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2)
GPT2 = dict(vocab_size=97, n_positions=64, n_embd=32, n_layer=2, n_head=4, bos_token_id=1, eos_token_id=2)
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 16}

# kind: (config, dtype it is saved in, shard size or None for one file, GPT-2 mask buffers' dtype or None).
# rope_theta and rope_scaling are given the transformers 4 way; transformers 5 takes them and writes them
# only inside "rope_parameters", which is what the thetas away from 10000 here check.
KINDS = {
    "llama": (lambda: LlamaConfig(**COMMON, rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=False),
              torch.float32, "40KB", None),
    "llama-linear": (lambda: LlamaConfig(**COMMON, rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=False,
                                         rope_scaling={"rope_type": "linear", "factor": 2.0}),
                     torch.float32, "40KB", None),
    "llama3": (lambda: LlamaConfig(**COMMON, rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False,
                                   rope_scaling=LLAMA3),
               torch.bfloat16, "40KB", None),
    "qwen2": (lambda: Qwen2Config(**COMMON, rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=True),
              torch.float32, "40KB", None),
    "mistral": (lambda: MistralConfig(**COMMON, rms_norm_eps=1e-5, rope_theta=1e6, sliding_window=32,
                                      tie_word_embeddings=False),
                torch.float32, "40KB", None),
    "gpt2": (lambda: GPT2Config(**GPT2), torch.float32, "40KB", None),
    # GPT-2 with the attention mask buffers that transformers <= 4.26 saved with every checkpoint (attn.bias a
    # lower-triangular (1, 1, n_positions, n_positions) uint8; attn.masked_bias the scalar -1e4, float32), and
    # as bool and float32 masks (the original conversions' float32 mask is in the Hub's GPT-2 files)
    "gpt2-mask-u8": (lambda: GPT2Config(**GPT2), torch.float32, None, torch.uint8),
    "gpt2-mask-bool": (lambda: GPT2Config(**GPT2), torch.float32, None, torch.bool),
    "gpt2-mask-f32": (lambda: GPT2Config(**GPT2), torch.float32, None, torch.float32),
}


def dtype_arg(dtype):
    return {"dtype": dtype} if V5 else {"torch_dtype": dtype}


def logits_of(model, rows, out):
    model = model.double().eval()
    with torch.no_grad():
        json.dump(model(torch.tensor(rows)).logits.tolist(), open(out, "w"))


def load(d):
    if os.path.exists(os.path.join(d, "adapter_config.json")):
        from peft import PeftModel

        cfg = json.load(open(os.path.join(d, "adapter_config.json")))
        return PeftModel.from_pretrained(load(cfg["base_model_name_or_path"]), d)
    return AutoModelForCausalLM.from_pretrained(d, **dtype_arg(torch.float32))


def add_mask_buffers(d, config, dtype):
    """Adds h.N.attn.bias and h.N.attn.masked_bias, as older transformers saved them, to d/model.safetensors."""
    from safetensors.torch import load_file, save_file

    path = os.path.join(d, "model.safetensors")
    tensors = load_file(path)
    n = config.n_positions
    for layer in range(config.n_layer):
        tensors[f"transformer.h.{layer}.attn.bias"] = torch.tril(torch.ones(n, n)).to(dtype).view(1, 1, n, n)
        tensors[f"transformer.h.{layer}.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(tensors, path, metadata={"format": "pt"})


def write(kind, d):
    config, dtype, shard, mask = KINDS[kind]
    config = config()
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # norms and biases away from their initial 1 and 0, so that they are tested
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    model.to(dtype).save_pretrained(d, max_shard_size=shard or "1GB", **({} if V5 else {"safe_serialization": True}))
    if mask is not None:
        add_mask_buffers(d, config, mask)
    return load(d)  # not the model in memory: .to(bfloat16) also rounded its rotary frequencies


def peft(base, targets):
    from peft import LoraConfig, get_peft_model

    model = load(base)
    if targets == "names":  # every linear layer but the head, by its short name, as people list them
        targets = sorted({n.rsplit(".", 1)[-1] for n, mod in model.named_modules()
                          if isinstance(mod, (torch.nn.Linear, Conv1D)) and not n.endswith("lm_head")})
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets))
    with torch.no_grad():  # trained-looking: B is 0 at PEFT's initialisation
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.2)
    model.save_pretrained(base + "-peft")
    return model


def main():
    mode, tokens, *rest = sys.argv[1:]
    rows = json.load(open(tokens))
    if mode == "logits":
        for d in rest:
            logits_of(load(d), rows, d + ".logits.json")
    elif mode == "write":
        for kind in rest[1:]:
            d = os.path.join(rest[0], kind)
            logits_of(write(kind, d), rows, d + ".logits.json")
    elif mode == "peft":
        for base in rest[1:]:
            logits_of(peft(base, rest[0]), rows, base + "-peft.logits.json")
    else:
        sys.exit(f"unknown mode {mode}; see the usage at the top of this file")


if __name__ == "__main__":
    main()
