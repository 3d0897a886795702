"""One BLAS thread while the small matrices of RL are multiplied.

OpenBLAS starts a thread per core for every matmul.  For a 128 x 64 minibatch that costs more than
the arithmetic, and on a busy 2-core machine the spinning threads fight the env runners' processes:
a PPO update measured 0.19 s with one thread and 6.5 s with two.  ``one_blas_thread()`` sets the
count to 1 for the duration of a ``with`` block and puts it back after, so the caller's own numpy
is not changed.  It finds numpy's OpenBLAS among the process's loaded libraries (as threadpoolctl
does); where there is none (macOS Accelerate, MKL) it does nothing.
"""
from __future__ import annotations

import contextlib
import ctypes

_SYMBOLS = (("openblas_get_num_threads", "openblas_set_num_threads"),
            ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
            ("openblas_get_num_threads64_", "openblas_set_num_threads64_"))
_api: tuple | None = None


def _find() -> tuple:
    import numpy  # noqa: F401  (loads its BLAS)

    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return ()
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get, set_ in _SYMBOLS:
            if hasattr(lib, get) and hasattr(lib, set_):
                return getattr(lib, get), getattr(lib, set_)
    return ()


@contextlib.contextmanager
def one_blas_thread():
    global _api
    if _api is None:
        _api = _find()
    if not _api:
        yield
        return
    get, set_ = _api
    before = get()
    set_(1)
    try:
        yield
    finally:
        set_(before)
