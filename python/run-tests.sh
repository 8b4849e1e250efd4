#!/usr/bin/env bash
# make test-python: python/tests with pytest against libleash.so and the leash CLI of one build.
#   python/run-tests.sh BUILD/libleash.so BUILD/leash
# Skips with the reason (exit 0) when python3, numpy or pytest is missing; under LEASH_REQUIRE_REF=1 that is a
# failure, as for the other references. Builds the .so (with $MAKE, inheriting make's variables) only when the
# tests can run. pytest's "no tests collected" (exit 5) is a failure here, never a pass.
set -euo pipefail
cd "$(dirname "$0")/.."
SHLIB=$1 BIN=$2
abs() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
PY=${PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || PY=$(command -v python3 || true)

skip() {
  if [ "${LEASH_REQUIRE_REF:-0}" = 1 ]; then
    echo "test-python: FAILED: $1 (LEASH_REQUIRE_REF=1 requires the Python tests; scripts/deps.sh --ref installs them)" >&2
    exit 1
  fi
  echo "test-python: skipped: $1 (scripts/deps.sh --ref installs it)"
  exit 0
}
[ -n "$PY" ] || skip "no python3"
"$PY" -c 'import numpy' 2>/dev/null || skip "$PY has no numpy (Debian python3-numpy)"
"$PY" -c 'import pytest' 2>/dev/null || skip "$PY has no pytest (Debian python3-pytest)"

${MAKE:-make} --no-print-directory "$SHLIB"
set +e
LEASH_LIBRARY=$(abs "$SHLIB") LEASH_BIN=$(abs "$BIN") PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}" \
  OMP_WAIT_POLICY=PASSIVE "$PY" -m pytest -q -rs -p no:cacheprovider python/tests
rc=$?
set -e
if [ $rc = 5 ]; then
  echo "test-python: FAILED: pytest collected no tests from python/tests" >&2
  exit 1
fi
exit $rc
