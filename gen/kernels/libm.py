"""The C math library's ``exp``, ``expf``, ``expm1f`` and ``tanhf``, elementwise over numpy
arrays.

LiteRT's shared libraries call these from the system's ``libm.so.6`` (dynamically: they
import ``exp``, ``expf``, ``expm1f`` and ``tanhf`` from glibc), and glibc's ``expf`` and
``tanhf`` are not correctly rounded: measured over 2.2 million float32 arguments, ``expf``
differs from the correctly rounded result in 1,128 and ``tanhf`` in 164,819 (by one unit
in the last place).  A table built from numpy's functions would therefore differ from LiteRT's
now and then, so the tables of the ``litert`` profiles call the same C functions through
``ctypes``.  Without a loadable C math library (on which LiteRT itself depends) they
cannot be bit-exact: a function called then raises
:class:`~tfl2rtl.errors.Tfl2RtlError` instead of computing something else.

Only tables of at most 256 entries are computed this way, so the per-element calls cost
nothing that matters.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

from ..errors import Tfl2RtlError

__all__ = ["exp", "expf", "expm1f", "tanhf"]


def _load():
    """The C math library with the four functions typed, and ``None``; or ``None`` and
    why it cannot be loaded."""
    name = ctypes.util.find_library("m") or "libm.so.6"
    try:
        lib = ctypes.CDLL(name)
        for fn, ctype in (("exp", ctypes.c_double), ("expf", ctypes.c_float),
                          ("expm1f", ctypes.c_float), ("tanhf", ctypes.c_float)):
            getattr(lib, fn).restype = ctype
            getattr(lib, fn).argtypes = [ctype]
    except (OSError, AttributeError) as exc:
        return None, " ".join(f"{name}: {exc}".split())
    return lib, None


_LIBM, _LOAD_ERROR = _load()


def _apply(name: str, x, dtype):
    if _LIBM is None:
        raise Tfl2RtlError(f"the litert profiles compute {name} with the C math library, as "
                           f"LiteRT does, and it cannot be loaded ({_LOAD_ERROR}): without it "
                           "they are not bit-exact (the tflm profile does not need it)")
    x = np.asarray(x, dtype)
    fn = getattr(_LIBM, name)
    flat = [fn(float(v)) for v in x.reshape(-1)]
    return np.array(flat, dtype).reshape(x.shape)


def exp(x) -> np.ndarray:
    """C ``exp`` on float64 values."""
    return _apply("exp", x, np.float64)


def expf(x) -> np.ndarray:
    """C ``expf`` on float32 values."""
    return _apply("expf", x, np.float32)


def tanhf(x) -> np.ndarray:
    """C ``tanhf`` on float32 values."""
    return _apply("tanhf", x, np.float32)


def expm1f(x) -> np.ndarray:
    """C ``expm1f`` on float32 values."""
    return _apply("expm1f", x, np.float32)
