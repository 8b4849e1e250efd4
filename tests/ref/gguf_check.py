"""Checks GGUF files leash exported against llama.cpp's own Python package (PyPI `gguf`: GGUFReader, quants,
SpecialVocab) and the model directory they came from.

usage: python3 tests/ref/gguf_check.py MODEL_DIR PRE TYPE=FILE.gguf [TYPE=FILE.gguf ...]

MODEL_DIR is a leash/Hugging Face model directory (config.json, model.safetensors in F32, tokenizer files);
PRE the tokenizer.ggml.pre the file must carry; TYPE one of f32, f16, bf16, q8_0. For each file:
  - every tensor's bytes equal gguf.quants.quantize of the model's weight in llama.cpp's layout (Q8_0 bytes,
    F16 = numpy's astype(float16), BF16 also checked against torch's rounding), with the converter's type
    rule; read back (gguf.quants.dequantize), the layout undone (llama q/k permutation, GPT-2 transposes), the
    weights match the safetensors (F32 exactly);
  - every metadata key, and no other, with the value convert_hf_to_gguf.py would write, from config.json,
    the tokenizer files (tokens in vocab order padded with [PAD{i}]) and gguf.SpecialVocab (merges, special
    ids, add_*_token, chat template).
Prints one line of numbers per file; exits 1 at the first mismatch, saying what differs.
"""
import json
import math
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValueType as VT
from gguf_ref import permute, read_safetensors  # the converter's permutation; F32 safetensors


def fail(msg):
    print(f"MISMATCH: {msg}")
    sys.exit(1)


def unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_factors(cfg, dim):
    import torch

    rs = cfg["rope_scaling"]
    base = cfg.get("rope_theta", 10000.0)
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor, lo, hi = rs.get("factor", 8.0), rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
    old = rs.get("original_max_position_embeddings", 8192)
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old / hi:
            out.append(1)
        elif wavelen > old / lo:
            out.append(factor)
        else:
            smooth = (old / wavelen - lo) / (hi - lo)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(out, dtype=torch.float32).numpy()


def expected_tensors(cfg, st):
    """name -> (array in llama.cpp's layout, function undoing the layout, source name)."""
    ident = lambda x: x  # noqa: E731
    out = {}
    if cfg["model_type"] == "gpt2":
        glob = {"wte.weight": "token_embd.weight", "wpe.weight": "position_embd.weight",
                "ln_f.weight": "output_norm.weight", "ln_f.bias": "output_norm.bias"}
        layer = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
                 "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
        for name, w in st.items():
            name = name.removeprefix("transformer.")
            if name in glob:
                out[glob[name]] = (w, ident, name)
                continue
            _, l, rest = name.split(".", 2)
            mod, kind = rest.rsplit(".", 1)
            conv = kind == "weight" and mod in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
            out[f"blk.{l}.{layer[mod]}.{kind}"] = (w.T.copy() if conv else w, (lambda x: x.T) if conv else ident, name)
        return out
    llama = cfg["model_type"] in ("llama", "mistral")
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    glob = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
            "lm_head.weight": "output.weight"}
    layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for name, w in st.items():
        if name in glob:
            out[glob[name]] = (w, ident, name)
            continue
        _, _, l, rest = name.split(".", 3)
        mod, kind = rest.rsplit(".", 1)
        heads = nh if mod == "self_attn.q_proj" else nkv if mod == "self_attn.k_proj" else 0
        if llama and heads:
            out[f"blk.{l}.{layer[mod]}.{kind}"] = (permute(w, heads, None), lambda x, h=heads: unpermute(x, h), name)
        else:
            out[f"blk.{l}.{layer[mod]}.{kind}"] = (w, ident, name)
    rs = cfg.get("rope_scaling") or {}
    if rs.get("rope_type") == "llama3":
        dim = cfg.get("head_dim") or cfg["hidden_size"] // nh
        out["rope_freqs.weight"] = (llama3_factors(cfg, dim), ident, None)
    return out


def qtype_for(name, w, ftype):  # the converter's rule
    if w.ndim <= 1 or name.endswith("_norm.weight") or name == "position_embd.weight":
        return Q.F32
    want = {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0}[ftype]
    if want == Q.Q8_0 and w.shape[-1] % 32:
        return Q.F16
    return want


def expected_metadata(model_dir, cfg, ftype, pre, n_vocab):
    S, U32, F32, B = VT.STRING, VT.UINT32, VT.FLOAT32, VT.BOOL
    mt = cfg["model_type"]
    arch = "gpt2" if mt == "gpt2" else "qwen2" if mt == "qwen2" else "llama"
    file_type = {"f32": 0, "f16": 1, "q8_0": 7, "bf16": 32}[ftype]
    md = {"general.architecture": (S, arch), "general.type": (S, "model"),
          "general.name": (S, os.path.basename(os.path.normpath(model_dir))), "general.alignment": (U32, 32),
          "general.file_type": (U32, file_type), "general.quantization_version": (U32, 2),
          f"{arch}.vocab_size": (U32, cfg["vocab_size"])}
    if arch == "gpt2":
        md.update({f"{arch}.context_length": (U32, cfg.get("n_positions", cfg.get("n_ctx"))),
                   f"{arch}.embedding_length": (U32, cfg["n_embd"]), f"{arch}.block_count": (U32, cfg["n_layer"]),
                   f"{arch}.feed_forward_length": (U32, cfg.get("n_inner") or 4 * cfg["n_embd"]),
                   f"{arch}.attention.head_count": (U32, cfg["n_head"]),
                   f"{arch}.attention.layer_norm_epsilon": (F32, cfg["layer_norm_epsilon"])})
    else:
        nh = cfg["num_attention_heads"]
        hd = cfg.get("head_dim") or cfg["hidden_size"] // nh
        md.update({f"{arch}.context_length": (U32, cfg["max_position_embeddings"]),
                   f"{arch}.embedding_length": (U32, cfg["hidden_size"]),
                   f"{arch}.block_count": (U32, cfg["num_hidden_layers"]),
                   f"{arch}.feed_forward_length": (U32, cfg["intermediate_size"]),
                   f"{arch}.attention.head_count": (U32, nh),
                   f"{arch}.attention.head_count_kv": (U32, cfg.get("num_key_value_heads", nh)),
                   f"{arch}.attention.key_length": (U32, hd), f"{arch}.attention.value_length": (U32, hd),
                   f"{arch}.attention.layer_norm_rms_epsilon": (F32, cfg["rms_norm_eps"]),
                   f"{arch}.rope.freq_base": (F32, cfg.get("rope_theta", 10000.0)),
                   f"{arch}.rope.dimension_count": (U32, hd)})
        rs = cfg.get("rope_scaling") or {}
        if rs.get("rope_type") == "linear":
            md[f"{arch}.rope.scaling.type"] = (S, "linear")
            md[f"{arch}.rope.scaling.factor"] = (F32, rs["factor"])
    # the tokenizer, from its files
    tj = os.path.join(model_dir, "tokenizer.json")
    tokens, types = {}, {}
    if os.path.exists(tj):
        t = json.load(open(tj, encoding="utf-8"))
        for s, i in t["model"]["vocab"].items():
            tokens[i], types[i] = s, 1
        for a in t.get("added_tokens", []):
            special = a.get("special") or (a["content"].startswith("<|") and a["content"].endswith("|>"))
            tokens[a["id"]], types[a["id"]] = a["content"], 3 if special else 4
    else:
        for s, i in json.load(open(os.path.join(model_dir, "vocab.json"), encoding="utf-8")).items():
            tokens[i] = s
            types[i] = 3 if s.startswith("<|") and s.endswith("|>") else 1
    md["tokenizer.ggml.model"] = (S, "gpt2")
    md["tokenizer.ggml.pre"] = (S, pre)
    md["tokenizer.ggml.tokens"] = ((VT.ARRAY, S), [tokens.get(i, f"[PAD{i}]") for i in range(n_vocab)])
    md["tokenizer.ggml.token_type"] = ((VT.ARRAY, VT.INT32), [types.get(i, 5) for i in range(n_vocab)])
    sv = gguf.SpecialVocab(model_dir, load_merges=True)
    md["tokenizer.ggml.merges"] = ((VT.ARRAY, S), sv.merges)
    keys = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id", "sep": "seperator_token_id",
            "pad": "padding_token_id", "cls": "cls_token_id", "mask": "mask_token_id"}
    for typ, tid in sv.special_token_ids.items():
        md[f"tokenizer.ggml.{keys[typ]}"] = (U32, tid)
    for typ, v in sv.add_special_token.items():
        md[f"tokenizer.ggml.add_{typ}_token"] = (B, v)
    if sv.chat_template is not None:
        md["tokenizer.chat_template"] = (S, sv.chat_template)
    return md


def field_value(f):
    t = f.types[0]
    if t == VT.ARRAY:
        return (VT.ARRAY, f.types[1]), [f.contents(i) for i in range(len(f.data))]
    return t, f.contents()


def check_metadata(r, want, path):
    have = {k: f for k, f in r.fields.items() if not k.startswith("GGUF.")}
    if set(have) != set(want):
        fail(f"{path}: keys differ: extra {sorted(set(have) - set(want))}, missing {sorted(set(want) - set(have))}")
    for k, (wt, wv) in want.items():
        ht, hv = field_value(have[k])
        if ht != wt:
            fail(f"{path}: {k} has type {ht}, want {wt}")
        if wt == VT.FLOAT32:
            same = np.float32(hv) == np.float32(wv)
        else:
            same = hv == wv
        if not same:
            shown = lambda v: (v[:5], len(v)) if isinstance(v, list) else v  # noqa: E731
            if isinstance(hv, list) and isinstance(wv, list) and len(hv) == len(wv):
                i = next(i for i in range(len(hv)) if hv[i] != wv[i])
                fail(f"{path}: {k}[{i}] is {hv[i]!r}, want {wv[i]!r}")
            fail(f"{path}: {k} is {shown(hv)!r}, want {shown(wv)!r}")
    return len(want)


def check_tensors(r, tensors, ftype, path):
    got = {t.name: t for t in r.tensors}
    if set(got) != set(tensors):
        fail(f"{path}: tensors differ: extra {sorted(set(got) - set(tensors))}, missing {sorted(set(tensors) - set(got))}")
    worst = 0.0
    counts = {}
    for name, (w, undo, src) in tensors.items():
        t = got[name]
        qt = qtype_for(name, w, ftype)
        if t.tensor_type != qt:
            fail(f"{path}: {name} is {t.tensor_type.name}, want {qt.name}")
        if list(t.shape) != list(reversed(w.shape)):
            fail(f"{path}: {name} has ne {list(t.shape)}, want {list(reversed(w.shape))}")
        if t.data_offset % 32:
            fail(f"{path}: {name} data at offset {t.data_offset}, not 32-aligned")
        raw = np.asarray(t.data).tobytes()
        want = gguf.quants.quantize(np.ascontiguousarray(w, dtype=np.float32), qt).tobytes()
        if name == "rope_freqs.weight":  # float32 torch arithmetic: allow an ulp, report it
            diff = np.abs(np.frombuffer(raw, np.float32) - w).max()
            if diff > 1e-6 * np.abs(w).max():
                fail(f"{path}: rope_freqs.weight differs by {diff} from the converter's formula")
            worst = max(worst, 0.0)
            counts["rope_freqs_maxdiff"] = float(diff)
            continue
        if raw != want:
            a, b = np.frombuffer(raw, np.uint8), np.frombuffer(want, np.uint8)
            i = int(np.argmax(a != b)) if a.size == b.size else -1
            fail(f"{path}: {name} ({qt.name}) bytes differ from gguf.quants.quantize (first at byte {i}; sizes {a.size}, {b.size})")
        if qt == Q.BF16:  # a second, independent rounding: torch's float32 -> bfloat16
            import torch

            tb = torch.from_numpy(np.array(w, np.float32)).to(torch.bfloat16).view(torch.int16).numpy()
            if tb.tobytes() != raw:
                fail(f"{path}: {name} BF16 bytes differ from torch's rounding")
        back = undo(gguf.quants.dequantize(np.asarray(t.data), qt).reshape(w.shape))
        if src is not None:
            err = float(np.abs(back - undo(w)).max())
            if qt == Q.F32 and err != 0.0:
                fail(f"{path}: {name} read back as F32 differs by {err} from {src}")
            worst = max(worst, err / max(float(np.abs(w).max()), 1e-30))
        counts[qt.name] = counts.get(qt.name, 0) + 1
    return worst, counts


def main(model_dir, pre, *pairs):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    st = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    tensors = expected_tensors(cfg, st)
    for pair in pairs:
        ftype, path = pair.split("=", 1)
        r = gguf.GGUFReader(path)
        if r.fields["GGUF.version"].contents() != 3:
            fail(f"{path}: version {r.fields['GGUF.version'].contents()}, want 3")
        n_keys = check_metadata(r, expected_metadata(model_dir, cfg, ftype, pre, cfg["vocab_size"]), path)
        worst, counts = check_tensors(r, tensors, ftype, path)
        print(f"{os.path.basename(path)}: {len(r.tensors)} tensors byte-identical to gguf.quants ({counts}), "
              f"{n_keys} keys identical, read back within {worst:.3g} of the weights (relative to each tensor's max)")
    print("OK")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
