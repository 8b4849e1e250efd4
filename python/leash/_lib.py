"""Loading libleash.so and declaring the C functions the package calls (ctypes).

The library is found, in order, at $LEASH_LIBRARY (a path to a libleash.so, e.g. build/libleash.so while
developing), then beside this file (where `pip install ./python` puts it). Every C function returns a status;
check() turns a failure into LeashError carrying leash_errmsg(), read on the same thread right after the call
(the message buffer is thread-local in C, and ctypes calls run on the calling thread).

Arrays cross as raw pointers into numpy buffers (no copies): as_array() makes a C-contiguous array of the
dtype the C function reads, copying only when the caller's array is not one already.
"""
import ctypes
import os
from ctypes import POINTER, c_char_p, c_double, c_float, c_int, c_long, c_size_t, c_uint64, c_void_p
from pathlib import Path

import numpy as np


class LeashError(RuntimeError):
    """A failure reported by the leash C library: str(e) is its message (leash_errmsg()), e.code its
    status (a negative LEASH_E* value) and e.kind the status's short name ("invalid argument", ...)."""

    def __init__(self, message, code=-1, kind=""):
        super().__init__(message)
        self.code = code
        self.kind = kind


def _find_library():
    env = os.environ.get("LEASH_LIBRARY")
    if env:
        if not Path(env).is_file():
            raise ImportError(f"LEASH_LIBRARY={env}: no such file; build it with `make build/libleash.so` "
                              "or unset LEASH_LIBRARY to use the one installed with the package")
        return env
    here = Path(__file__).resolve().parent / "libleash.so"
    if here.is_file():
        return str(here)
    raise ImportError(f"libleash.so is not installed beside {here.parent}; install the package with "
                      "`pip install --no-build-isolation ./python` (or `make python`) from the leash repository, "
                      "or point LEASH_LIBRARY at a built libleash.so (make build/libleash.so)")


LIBRARY_PATH = _find_library()
lib = ctypes.CDLL(LIBRARY_PATH)

_P = c_void_p  # every array argument: a numpy buffer's address, or None for NULL

# (name, result type, argument types); functions returning int return a status unless noted
_SIGNATURES = [
    ("leash_errmsg", c_char_p, []),
    ("leash_strerror", c_char_p, [c_int]),
    # kl.h
    ("leash_kl_exact_rows", c_int, [_P, _P, c_int, c_int, c_float, _P, _P]),
    ("leash_kl_estimator_parse", c_int, [c_char_p, POINTER(c_int)]),
    ("leash_kl_estimator_name", c_char_p, [c_int]),
    ("leash_kl_tokens", c_int, [c_int, _P, _P, _P, c_int, _P, _P]),
    ("leash_masked_reduce", c_int, [_P, _P, c_int, c_int, c_int, POINTER(c_double), _P]),
    # optimum.h
    ("leash_optimum", c_int, [_P, _P, c_int, c_double, _P, POINTER(c_double)]),
    ("leash_kl_objective", c_int, [_P, _P, _P, c_int, c_double, POINTER(c_double), POINTER(c_double),
                                   POINTER(c_double)]),
    ("leash_bon_kl_formula", c_double, [c_long]),
    ("leash_bon", c_int, [_P, _P, c_int, c_long, _P, POINTER(c_double)]),
    # gpt.h
    ("leash_gpt_load", c_int, [POINTER(c_void_p), c_char_p]),
    ("leash_gpt_free", None, [c_void_p]),
    ("leash_gpt_freeze", None, [c_void_p]),
    # tokenizer.h
    ("leash_tokenizer_load_dir", c_int, [POINTER(c_void_p), c_char_p]),
    ("leash_tokenizer_free", None, [c_void_p]),
    ("leash_tokenizer_vocab_size", c_int, [c_void_p]),
    ("leash_tokenizer_special_id", c_int, [c_void_p, c_char_p]),
    ("leash_tokenizer_encode", c_int, [c_void_p, c_char_p, c_size_t, c_int, POINTER(c_void_p), POINTER(c_size_t),
                                       POINTER(c_size_t)]),
    ("leash_tokenizer_decode", c_int, [c_void_p, _P, c_size_t, POINTER(c_void_p), POINTER(c_size_t),
                                       POINTER(c_size_t)]),
    # api.h
    ("leash_api_config_keys", c_char_p, []),
    ("leash_api_config_value", c_int, [c_void_p, c_char_p, POINTER(c_double)]),
    ("leash_api_model_type", c_char_p, [c_void_p]),
    ("leash_api_eos_ids", c_int, [c_void_p, c_void_p, _P, c_int]),  # returns a count
    ("leash_api_generate", c_int, [c_void_p, c_void_p, c_float, c_int, c_float, c_int, c_uint64, _P, _P, c_int, _P,
                                   _P, _P, _P]),
    ("leash_api_score", c_int, [c_void_p, _P, c_int, c_float, _P]),
    ("leash_api_log_softmax_rows", c_int, [_P, c_int, c_int, c_float, _P, _P]),
    ("leash_api_entropy_rows", c_int, [_P, c_int, c_int, c_float, _P]),
    ("leash_api_free", None, [c_void_p]),
]
for _name, _res, _args in _SIGNATURES:
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args


def errmsg():
    return lib.leash_errmsg().decode("utf-8", "replace")


def check(status, what=None):
    """Raises LeashError with the library's message when status is a failure (non-zero)."""
    if status != 0:
        msg = errmsg() or f"{what or 'a leash call'} failed"
        kind = (lib.leash_strerror(status) or b"").decode("ascii", "replace")
        raise LeashError(msg, status, kind)


def as_array(x, dtype, name):
    """x as a C-contiguous numpy array of dtype (the same object when it already is one)."""
    a = np.ascontiguousarray(x, dtype=dtype)
    if a.dtype != np.dtype(dtype):
        raise TypeError(f"{name}: cannot be read as {np.dtype(dtype)}")
    return a


def ptr(a):
    """The address of a numpy array's data, or None for None."""
    return None if a is None else a.ctypes.data


def c_int_size(n, name):
    """n as a C int, with a clear error when it does not fit."""
    if n > 2**31 - 1:
        raise ValueError(f"{name} = {n} does not fit the C library's int sizes (at most 2^31 - 1)")
    return int(n)
