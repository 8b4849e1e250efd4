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
#                             versions that run on Debian's torch 1.13); without them those comparisons are
#                             skipped with a message
set -euo pipefail

# Why each: gcc/make build; pkg-config finds the libraries; OpenBLAS (cblas) does matrix products;
# libgomp (with gcc) gives OpenMP threads; cJSON parses config/JSONL; Criterion runs the unit tests;
# gnuplot draws PNG plots.
pkgs=(gcc make pkg-config libopenblas-openmp-dev libcjson-dev libpcre2-dev libcriterion-dev gnuplot-nox)
# Open MPI (optional) runs data-parallel training across processes and machines.
ref=0
for arg in "$@"; do
  case "$arg" in
    --ref) pkgs+=(python3-torch python3-regex python3-pip python3-venv); ref=1 ;;
    --mpi) pkgs+=(libopenmpi-dev openmpi-bin) ;;
    --valgrind) pkgs+=(valgrind) ;;
    --fuzz) pkgs+=(clang) ;;
    *) echo "scripts/deps.sh: unknown option $arg (use --ref, --mpi, --valgrind, --fuzz)" >&2; exit 2 ;;
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
