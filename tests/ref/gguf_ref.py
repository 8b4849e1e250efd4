"""The gguf package's side of leash's GGUF checks (tests/test_gguf.c): llama.cpp's own Python reader and
writer (PyPI `gguf`), independent of leash's C code.

  gguf_ref.py dequant FILE.gguf
      every tensor of FILE, in file order, dequantised by gguf.quants.dequantize to float32, written raw
      (little-endian) to stdout one after another: the C test compares them value for value.
  gguf_ref.py synth OUT.gguf SEED
      a file with one tensor of each type leash reads (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K ..
      Q6_K), each 4 rows of 512 values made of random raw block bytes (with finite fp16 scales and minima,
      and F16/BF16 values of every finite kind, subnormals included), written with GGUFWriter's raw_dtype.
  gguf_ref.py convert ARCH MODEL_DIR OUT.gguf
      a leash model directory (config.json, model.safetensors in F32) written as a GGUF model the way
      llama.cpp's convert_hf_to_gguf.py writes it: its tensor names, its metadata keys, llama's and
      mistral's q/k rows permuted for ggml's interleaved rope (LlamaModel.permute), GPT-2's Conv1D
      weights transposed, F32 data. ARCH: llama, mistral, qwen2, gpt2.
"""
import json
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q


def dequant(path):
    r = gguf.GGUFReader(path)
    out = sys.stdout.buffer
    for t in r.tensors:
        x = gguf.quants.dequantize(t.data, t.tensor_type)
        out.write(np.ascontiguousarray(x, dtype="<f4").tobytes())
    out.flush()


# byte offsets of the fp16 fields (scales, minima) inside each block type
HALF_FIELDS = {Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q5_0: [0], Q.Q5_1: [0, 2], Q.Q8_0: [0], Q.Q2_K: [80, 82],
               Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208]}


def finite_halves(rng, n):
    h = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    inf_nan = (h & 0x7C00) == 0x7C00
    h[inf_nan] &= np.uint16(0xBFFF)  # clear the exponent's top bit: a finite value
    return h


def synth(path, seed):
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(path, "leash-synth")
    rows, cols = 4, 512
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    x[0, :4] = [0.0, -0.0, 1e-40, -3e-39]  # float32 subnormals pass through
    w.add_tensor("f32", x)
    h = finite_halves(rng, rows * cols)
    h[:8] = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF]  # zeros, subnormals, edges, max
    w.add_tensor("f16", h.view(np.uint8).reshape(rows, cols * 2), raw_dtype=Q.F16)
    b = rng.integers(0, 1 << 16, size=rows * cols, dtype=np.uint32).astype(np.uint16)
    b[(b & 0x7F80) == 0x7F80] &= np.uint16(0xBFFF)
    b[:4] = [0x0000, 0x8000, 0x0001, 0x007F]
    w.add_tensor("bf16", b.view(np.uint8).reshape(rows, cols * 2), raw_dtype=Q.BF16)
    for q, fields in HALF_FIELDS.items():
        block, size = gguf.GGML_QUANT_SIZES[q]
        nb = rows * cols // block
        raw = rng.integers(0, 256, size=(nb, size), dtype=np.uint16).astype(np.uint8)
        for f in fields:
            raw[:, f:f + 2] = finite_halves(rng, nb).view(np.uint8).reshape(nb, 2)
        w.add_tensor(q.name.lower(), raw.reshape(rows, cols // block * size), raw_dtype=q)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", (name, e["dtype"])
        b, en = e["data_offsets"]
        out[name] = np.frombuffer(data[b:en], dtype="<f4").reshape(e["shape"])
    return out


def permute(w, n_head, n_head_kv):
    # convert_hf_to_gguf.py's LlamaModel.permute: rows within each head reordered for ggml's interleaved rope
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def convert(arch, model_dir, out):
    cfg = json.load(open(f"{model_dir}/config.json"))
    st = read_safetensors(f"{model_dir}/model.safetensors")
    w = gguf.GGUFWriter(out, arch)
    w.add_name("leash-test")
    w.add_file_type(0)
    if arch == "gpt2":
        C, L, NH = cfg["n_embd"], cfg["n_layer"], cfg["n_head"]
        w.add_context_length(cfg["n_positions"])
        w.add_embedding_length(C)
        w.add_block_count(L)
        w.add_feed_forward_length(4 * C)
        w.add_head_count(NH)
        w.add_layer_norm_eps(cfg.get("layer_norm_epsilon", 1e-5))
        names = {"wte.weight": "token_embd.weight", "wpe.weight": "position_embd.weight",
                 "ln_f.weight": "output_norm.weight", "ln_f.bias": "output_norm.bias"}
        per = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
               "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
        for name, x in st.items():
            name = name.removeprefix("transformer.")
            if name in names:
                new = names[name]
            else:
                _, l, rest = name.split(".", 2)
                stem, kind = rest.rsplit(".", 1)
                new = f"blk.{l}.{per[stem]}.{kind}"
                if kind == "weight" and stem in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
                    x = x.T  # Conv1D (in, out) -> (out, in), as the converter does
            w.add_tensor(new, np.ascontiguousarray(x))
            if new == "token_embd.weight":  # the converter's copy of the tied head
                w.add_tensor("output.weight", np.ascontiguousarray(x))
    else:
        C, NH = cfg["hidden_size"], cfg["num_attention_heads"]
        NKV = cfg.get("num_key_value_heads", NH)
        w.add_context_length(cfg["max_position_embeddings"])
        w.add_embedding_length(C)
        w.add_block_count(cfg["num_hidden_layers"])
        w.add_feed_forward_length(cfg["intermediate_size"])
        w.add_head_count(NH)
        w.add_head_count_kv(NKV)
        w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
        w.add_layer_norm_rms_eps(cfg.get("rms_norm_eps", 1e-6))
        w.add_vocab_size(cfg["vocab_size"])
        w.add_rope_dimension_count(C // NH)
        names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                 "lm_head.weight": "output.weight"}
        per = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
               "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
               "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
               "mlp.down_proj": "ffn_down"}
        for name, x in st.items():
            if name in names:
                new = names[name]
            else:
                _, _, l, rest = name.split(".", 3)
                stem, kind = rest.rsplit(".", 1)
                new = f"blk.{l}.{per[stem]}.{kind}"
                if arch != "qwen2" and stem == "self_attn.q_proj":
                    x = permute(x, NH, NH)
                if arch != "qwen2" and stem == "self_attn.k_proj":
                    x = permute(x, NH, NKV)
            w.add_tensor(new, np.ascontiguousarray(x))
    if cfg.get("bos_token_id") is not None:
        w.add_bos_token_id(cfg["bos_token_id"])
    if cfg.get("eos_token_id") is not None:
        w.add_eos_token_id(cfg["eos_token_id"] if isinstance(cfg["eos_token_id"], int) else cfg["eos_token_id"][0])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "dequant":
        dequant(sys.argv[2])
    elif mode == "synth":
        synth(sys.argv[2], int(sys.argv[3]))
    elif mode == "convert":
        convert(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(f"unknown mode {mode}")
