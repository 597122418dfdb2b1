"""G.722 coding by another implementation than pjmedia's, for tests: Debian's spandsp
(libspandsp2, which tshark already depends on), through ctypes.

`code(pcm)` is what a perfect G.722 link does to 16 kHz audio: encode at 64 kbit/s,
decode, nothing lost. pjmedia feeds its encoder the 16-bit samples divided by 4
(PJMEDIA_G722_DEFAULT_PCM_SHIFT 2; its encoder takes 14-bit samples) and multiplies
what it decodes by 4; spandsp's takes 15-bit samples, so `code` halves and doubles
them: the same level into the codec.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np
import pytest

DELAY = 22  # samples the two QMF filter banks delay the audio (measured, as the spec's 23 - 1)


def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("spandsp")
    if name is None:
        pytest.skip("spandsp not installed (Debian package: libspandsp2)")
    lib = ctypes.CDLL(name)
    for f in (lib.g722_encode_init, lib.g722_decode_init):
        f.restype, f.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    for f in (lib.g722_encode, lib.g722_decode):
        f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    for f in (lib.g722_encode_release, lib.g722_decode_release):
        f.argtypes = [ctypes.c_void_p]
    return lib


def code(pcm: np.ndarray) -> np.ndarray:
    """16-bit PCM at 16 kHz through G.722 at 64 kbit/s and back, DELAY samples later."""
    lib = _lib()
    x = np.ascontiguousarray(np.asarray(pcm, dtype=np.int16) >> 1)
    enc, dec = lib.g722_encode_init(None, 64000, 0), lib.g722_decode_init(None, 64000, 0)
    try:
        coded = (ctypes.c_uint8 * len(x))()
        n = lib.g722_encode(enc, coded, x.ctypes.data, len(x))
        out = np.zeros(2 * n + 2, dtype=np.int16)
        m = lib.g722_decode(dec, out.ctypes.data, coded, n)
    finally:
        lib.g722_encode_release(enc)
        lib.g722_decode_release(dec)
    return np.clip(out[:m].astype(np.int32) << 1, -32768, 32767).astype(np.int16)
