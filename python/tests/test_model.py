"""leash.Model and leash.Tokenizer against the leash CLI on the same files: `leash score --json` (the same
numbers bit for bit), `leash sample --json` (the same tokens and log-probs for the same seed and options) and
`leash tokenizer encode/decode` (the same ids and bytes). On tiny GPT-2 and Llama models the CLI makes in a
second, and on the real SmolLM2-135M-Instruct GGUF file when present."""
import json
from pathlib import Path

import numpy as np
import pytest

import leash
from conftest import cjson_number, json_lines

TEXTS = ["The food was good.", "I liked it<|endoftext|> and then", "caf\u00e9 na\u00efve \u65e5\u672c 123 !!"]


# ---- helpers: one comparison each, shared by the tiny models and SmolLM2 --------------------------------

def check_score_equals_cli(cli, model, path, texts, **opts):
    args = ["score", path, "--json"] + [a for t in texts for a in ("--text", t)]
    if opts.get("temperature"):
        args += ["--temperature", opts["temperature"]]
    ref = json_lines(cli(*args))
    got = model.score(texts, **opts)
    assert len(got) == len(ref) == len(texts)
    for s, j in zip(got, ref):
        assert s.tokens.tolist() == [int(t) for t in j["tokens"]]
        assert j["logprobs"][0] is None and np.isnan(s.logprobs[0])
        cli_lp = np.array([float(v) for v in j["logprobs"][1:]], np.float64)
        # the CLI prints each float32 log-prob with at least 15 digits: read back as float32 it is the same
        assert np.array_equal(cli_lp.astype(np.float32), s.logprobs[1:]), "per-token log-probs differ"
        # the sum of the CLI's own log-probs, in order, in float64, is the Python sum bit for bit
        total = 0.0
        for v in cli_lp.astype(np.float32).tolist():
            total += v
        assert total == s.sum
        for key, value in (("sum_logprob", s.sum), ("mean_logprob", s.mean), ("perplexity", s.perplexity),
                           ("n_scored", s.n_scored)):
            assert j[key] == cjson_number(value), f"{key}: CLI {j[key]}, Python {value!r}"
    print(f"score: {len(texts)} texts, {sum(s.n_scored for s in got)} tokens equal to leash score --json")
    return got


def check_generate_equals_cli(cli, model, path, prompt, n, **opts):
    flags = {"max_new_tokens": "--max-new", "temperature": "--temperature", "top_k": "--top-k", "top_p": "--top-p",
             "seed": "--seed"}
    args = ["sample", path, "--json", "--prompt", prompt, "--num", n]
    for k, v in opts.items():
        args += [flags[k], v]
    ref = json_lines(cli(*args))
    got = model.generate(prompt, num_samples=n, **opts)
    again = model.generate(prompt, num_samples=n, **opts)
    assert len(got) == len(ref) == n
    for g, a, j in zip(got, again, ref):
        assert np.array_equal(g.tokens, a.tokens) and np.array_equal(g.logprobs, a.logprobs) and g.text == a.text
        assert g.tokens.tolist() == [int(t) for t in j["tokens"]]
        assert np.array_equal(np.array([float(v) for v in j["logprobs"]]).astype(np.float32), g.logprobs)
        ended = len(g.tokens) > 0 and int(g.tokens[-1]) in model.eos_token_ids
        assert g.finish_reason == ("eos" if ended else "length")
        assert len(g.tokens) == (len(g.tokens) if ended else opts.get("max_new_tokens", 64))
        body = g.tokens[:-1] if ended else g.tokens
        try:  # the CLI's JSON text is the decoded bytes made valid UTF-8; compare where they already are
            assert g.text == model.tokenizer.decode_bytes(body).decode("utf-8") == j["text"]
        except UnicodeDecodeError:
            pass
    print(f"generate: {n} samples equal to leash sample --json, {sum(g.finish_reason == 'eos' for g in got)} "
          "stopped at an end-of-text id")
    return got


def check_tokenizer_equals_cli(cli, tok, path, texts, tmp_path):
    for i, text in enumerate(texts):
        f = tmp_path / f"text{i}.txt"
        f.write_bytes(text.encode())
        for split in (False, True):
            ids = tok.encode(text, split_special_tokens=split)
            assert ids.dtype == np.int32
            ref = cli("tokenizer", "encode", path, f, *(["--split-special-tokens"] if split else []))
            assert ids.tolist() == [int(x) for x in ref.split()], (text, split)
            assert tok.decode(ids) == text  # round trip (the texts are valid UTF-8)
        ids_file = tmp_path / f"ids{i}.txt"
        ids_file.write_text(" ".join(map(str, tok.encode(text).tolist())))
        assert tok.decode_bytes(tok.encode(text)) == cli("tokenizer", "decode", path, ids_file, binary=True)


# ---- tiny models ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def loaded(tiny_model):
    with leash.Model.load(tiny_model) as m:
        yield m


def test_config_is_the_models(loaded, tiny_model):
    raw = json.loads((Path(tiny_model) / "config.json").read_text())
    c = loaded.config
    assert c["vocab_size"] == raw["vocab_size"] == loaded.tokenizer.vocab_size
    if c["model_type"] == "gpt2":
        assert (c["n_layer"], c["n_embd"], c["n_head"], c["n_positions"]) == (raw["n_layer"], raw["n_embd"],
                                                                             raw["n_head"], raw["n_positions"])
    else:
        assert c["model_type"] == raw["model_type"] == "llama"
        assert (c["n_layer"], c["n_embd"], c["n_head"], c["n_kv_head"], c["n_positions"]) == (
            raw["num_hidden_layers"], raw["hidden_size"], raw["num_attention_heads"], raw["num_key_value_heads"],
            raw["max_position_embeddings"])
    assert c["num_params"] > 0 and c["head_dim"] * c["n_head"] == c["n_embd"]
    assert loaded.eos_token_ids == [loaded.tokenizer.special_id("<|endoftext|>")]


def test_score_equals_cli(cli, loaded, tiny_model):
    check_score_equals_cli(cli, loaded, tiny_model, TEXTS)
    check_score_equals_cli(cli, loaded, tiny_model, TEXTS[:1], temperature=0.7)
    one = loaded.score(TEXTS[0])
    assert isinstance(one, leash.Score) and one.sum == loaded.score([TEXTS[0]])[0].sum
    by_ids = loaded.score_ids(one.tokens.tolist())
    assert np.array_equal(by_ids.logprobs[1:], one.logprobs[1:]) and by_ids.sum == one.sum
    with pytest.raises(leash.LeashError, match="nothing to score"):
        loaded.score_ids([5])


def test_generate_is_deterministic_and_equals_cli(cli, loaded, tiny_model):
    # 8 x 100 tokens from a nearly uniform 300-token model: several stop at <|endoftext|> (seed 5 has some)
    got = check_generate_equals_cli(cli, loaded, tiny_model, "The food", 8, max_new_tokens=100, temperature=1.0,
                                    seed=5)
    assert any(g.finish_reason == "eos" for g in got), "no sample reached an end-of-text id: pick another seed"
    check_generate_equals_cli(cli, loaded, tiny_model, "<|endoftext|>I", 3, max_new_tokens=20, temperature=0.8,
                              top_k=40, top_p=0.9, seed=123)
    # a batch of prompts: sequence i draws from stream i, whatever else is in the batch
    batch = loaded.generate(["The food", "A plot"], max_new_tokens=10, seed=9, num_samples=2)
    alone = loaded.generate("The food", max_new_tokens=10, seed=9, num_samples=2)
    assert [b.prompt for b in batch] == ["The food", "The food", "A plot", "A plot"]
    assert all(np.array_equal(b.tokens, a.tokens) for b, a in zip(batch[:2], alone))
    assert isinstance(loaded.generate("The", max_new_tokens=3), leash.Generation)


def test_tokenizer_equals_cli(cli, loaded, tiny_model, tmp_path):
    check_tokenizer_equals_cli(cli, loaded.tokenizer, tiny_model, TEXTS, tmp_path)
    tok = leash.Tokenizer.load(tiny_model)
    assert tok.encode(TEXTS[1]).tolist() == loaded.tokenizer.encode(TEXTS[1]).tolist()
    assert tok.special_id("<|endoftext|>") in tok.encode("<|endoftext|>").tolist()
    assert tok.special_id("<|endoftext|>") not in tok.encode("<|endoftext|>", split_special_tokens=True).tolist()


def test_errors_carry_the_library_message(loaded, tiny_model, tmp_path):
    with pytest.raises(leash.LeashError) as e:
        leash.Model.load(tmp_path / "nowhere")
    assert "nowhere" in str(e.value)
    with pytest.raises(leash.LeashError, match="nothing to score"):
        loaded.score("a")
    with pytest.raises(leash.LeashError, match="128 positions"):
        loaded.generate("The food", max_new_tokens=loaded.config["n_positions"])
    with pytest.raises(leash.LeashError, match="temperature"):
        loaded.score(TEXTS[0], temperature=0.0)
    m = leash.Model.load(tiny_model)
    m.close()
    with pytest.raises(leash.LeashError, match="closed"):
        m.score(TEXTS[0])


# ---- the real SmolLM2-135M-Instruct (GGUF, Q4_1) --------------------------------------------------------

CHAT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def smol(smollm2):
    with leash.Model.load(smollm2) as m:
        yield m


def test_smollm2_config(smol):
    c = smol.config
    assert (c["model_type"], c["n_layer"], c["n_embd"], c["n_head"], c["n_kv_head"], c["vocab_size"]) == (
        "llama", 30, 576, 9, 3, 49152)
    assert smol.tokenizer.special_id("<|im_end|>") in smol.eos_token_ids


def test_smollm2_score_equals_cli(cli, smol, smollm2):
    got = check_score_equals_cli(cli, smol, smollm2, ["The capital of France is Paris.", CHAT + "Paris.<|im_end|>"])
    assert -4.0 < got[0].mean < 0.0  # a trained model: far better than uniform over 49152 tokens (-10.8)


def test_smollm2_generate_equals_cli(cli, smol, smollm2):
    got = check_generate_equals_cli(cli, smol, smollm2, CHAT, 2, max_new_tokens=12, temperature=0.2, seed=1)
    assert any("Paris" in g.text for g in got), [g.text for g in got]


def test_smollm2_tokenizer_equals_cli(cli, smol, smollm2, tmp_path):
    check_tokenizer_equals_cli(cli, smol.tokenizer, smollm2, TEXTS + [CHAT], tmp_path)
