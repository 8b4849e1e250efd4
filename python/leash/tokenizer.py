"""Byte-level BPE tokenizers (include/leash/tokenizer.h): GPT-2's vocab.json + merges.txt, a Hugging Face
tokenizer.json, or a GGUF file's tokenizer, encoding as Hugging Face's tokenizers does with
add_special_tokens=False."""
import ctypes
import os
import threading

import numpy as np

from ._lib import LeashError, as_array, check, lib, ptr


class Tokenizer:
    """A tokenizer loaded with Tokenizer.load(path), or a Model's .tokenizer."""

    def __init__(self, handle, path):
        self._h = handle
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path):
        """From a model directory (tokenizer.json, else vocab.json + merges.txt) or a .gguf file."""
        path = os.fspath(path)
        h = ctypes.c_void_p()
        check(lib.leash_tokenizer_load_dir(ctypes.byref(h), path.encode()))
        return cls(h, path)

    def close(self):
        """Frees the C tokenizer now (otherwise when the object is collected)."""
        h, self._h = getattr(self, "_h", None), None
        if h:
            lib.leash_tokenizer_free(h)

    def __del__(self):
        self.close()

    def _handle(self):
        if not self._h:
            raise LeashError(f"the tokenizer of {self.path} is closed")
        return self._h

    @property
    def vocab_size(self):
        """The largest id + 1."""
        return lib.leash_tokenizer_vocab_size(self._handle())

    def special_id(self, text):
        """The id of a special token such as "<|endoftext|>", or None."""
        i = lib.leash_tokenizer_special_id(self._handle(), text.encode())
        return None if i < 0 else i

    def encode(self, text, split_special_tokens=False):
        """Token ids (int32 numpy array) of text (str, UTF-8 encoded, or bytes). Special-token strings such as
        "<|endoftext|>" in the text become their ids, unless split_special_tokens=True makes them plain text
        (Hugging Face's split_special_tokens). No BOS or EOS is added."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        ids, n, cap = ctypes.c_void_p(), ctypes.c_size_t(), ctypes.c_size_t()
        with self._lock:
            status = lib.leash_tokenizer_encode(self._handle(), data, len(data), 0 if split_special_tokens else 1,
                                                ctypes.byref(ids), ctypes.byref(n), ctypes.byref(cap))
            try:
                check(status)
                out = np.empty(n.value, np.int32)
                if n.value:
                    ctypes.memmove(ptr(out), ids, n.value * 4)
            finally:
                lib.leash_api_free(ids)
        return out

    def decode_bytes(self, ids):
        """The bytes of ids (a sequence or array of ints): exactly what the tokens hold."""
        a = as_array(ids, np.int32, "ids").reshape(-1)
        out, n, cap = ctypes.c_void_p(), ctypes.c_size_t(), ctypes.c_size_t()
        with self._lock:
            status = lib.leash_tokenizer_decode(self._handle(), ptr(a), a.size, ctypes.byref(out), ctypes.byref(n),
                                                ctypes.byref(cap))
            try:
                check(status)
                data = ctypes.string_at(out, n.value) if n.value else b""
            finally:
                lib.leash_api_free(out)
        return data

    def decode(self, ids, errors="replace"):
        """The text of ids: decode_bytes() as UTF-8 (bytes that are not valid UTF-8 become U+FFFD)."""
        return self.decode_bytes(ids).decode("utf-8", errors)

    def __repr__(self):
        return f"leash.Tokenizer({self.path!r}, vocab_size={self.vocab_size})"
