"""Shared fixtures: the leash CLI (the reference the Model tests compare against), tiny models it makes in a
second, and the real SmolLM2 GGUF file when present.

A missing reference skips its tests with the reason, and fails them under LEASH_REQUIRE_REF=1 (as the C
tests do). Environment: LEASH_BIN (the CLI; default build/leash of this repository), LEASH_SMOLLM2_GGUF (default
/opt/leash-ref/SmolLM2-135M-Instruct.Q4_1.gguf), LEASH_LIBRARY (the libleash.so the package loads).
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def need(ok, reason):
    """Skips the test with reason unless ok; under LEASH_REQUIRE_REF=1 fails it instead."""
    if ok:
        return
    if os.environ.get("LEASH_REQUIRE_REF") == "1":
        pytest.fail(f"{reason} (LEASH_REQUIRE_REF=1: the reference must be present)")
    pytest.skip(reason)


def pytest_sessionfinish(session, exitstatus):
    # "no tests collected" is never a pass (python/run-tests.sh checks it too)
    if exitstatus == 5:
        session.exitstatus = 1


@pytest.fixture(scope="session")
def cli():
    """A function running the leash CLI: cli("score", ...) -> stdout (str); fails with stderr on an error."""
    path = os.environ.get("LEASH_BIN") or str(ROOT / "build" / "leash")
    need(os.access(path, os.X_OK), f"no leash CLI at {path} (make build/leash, or set LEASH_BIN)")

    def run(*args, stdin=None, binary=False):
        p = subprocess.run([path, *map(str, args)], input=stdin, capture_output=True, text=not binary)
        assert p.returncode == 0, f"leash {' '.join(map(str, args))} failed ({p.returncode}): {p.stderr}"
        return p.stdout

    run.path = path
    return run


@pytest.fixture(scope="session")
def world(cli, tmp_path_factory):
    """The default world, tiny: a corpus to pretrain on and prompts."""
    d = tmp_path_factory.mktemp("world")
    cli("world", "--out", d / "w", "--corpus", 400, "--prompts", 8, "--judge", 5, "--heldout", 5)
    return d / "w"


def _pretrain(cli, world, out, arch):
    cli("pretrain", "--data", world / "corpus.txt", "--vocab-size", 300, "--n-layer", 1, "--n-embd", 32, "--n-head", 2,
        "--seq-len", 32, "--batch", 4, "--steps", 3, "--val-every", 0, "--arch", arch, "--out", out, "-q")
    return out


@pytest.fixture(scope="session", params=["gpt2", "llama"])
def tiny_model(request, cli, world, tmp_path_factory):
    """A 1-layer model of each architecture, 3 pretraining steps on the tiny world (about a second)."""
    return _pretrain(cli, world, tmp_path_factory.mktemp(request.param) / "model", request.param)


@pytest.fixture(scope="session")
def smollm2():
    """The path of the real SmolLM2-135M-Instruct Q4_1 GGUF file (scripts/deps.sh --ref)."""
    path = os.environ.get("LEASH_SMOLLM2_GGUF") or "/opt/leash-ref/SmolLM2-135M-Instruct.Q4_1.gguf"
    need(Path(path).is_file(), f"no SmolLM2 GGUF file at {path} (scripts/deps.sh --ref, or set LEASH_SMOLLM2_GGUF)")
    return path


def json_lines(text):
    """JSONL output with every number kept as the exact text the CLI printed."""
    return [json.loads(line, parse_float=str, parse_int=str) for line in text.split("\n") if line.strip()]


def cjson_number(d):
    """A float64 as cJSON 1.7 prints it (print_number): an integer as %d, else %1.15g, or %1.17g when the
    15-digit text does not read back within DBL_EPSILON relative."""
    if d == int(d) and abs(d) < 2**31:
        return "%d" % int(d)
    s = "%1.15g" % d
    t = float(s)
    if abs(t - d) <= max(abs(t), abs(d)) * 2.220446049250313e-16:
        return s
    return "%1.17g" % d
