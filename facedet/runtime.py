"""Process-level tuning for fast CPU inference.

PyTorch allocates a fresh buffer for most intermediate tensors.  With glibc's
default policy every buffer above the (dynamic) mmap threshold is a fresh
``mmap``, so each inference pays page faults for megabytes of activations:
for ``m4`` at 320x240 that doubles the forward time on a 2-core CPU.
:func:`tune_allocator` raises the mmap and trim thresholds so freed memory is
reused from the heap.  It is called by the CLI and the benchmarks; library
users may call it themselves (it changes process-wide allocator settings).
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 << 20  # glibc's maximum on 64-bit
_TRIM_THRESHOLD = 256 << 20

_done = False


def tune_allocator() -> bool:
    """Apply the glibc settings once; returns True if they were applied."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    _done = ok
    return ok


# Setters of the OpenBLAS that NumPy's wheels bundle (64-bit interface, "scipy_openblas" symbol prefix
# in NumPy 2), then those of a system OpenBLAS.
_BLAS_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_", "openblas_set_num_threads")


def limit_blas_threads(n: int) -> bool:
    """Let the OpenBLAS behind NumPy use at most ``n`` threads; returns True if one was found and set.

    The integer interpreter's products run in NumPy's BLAS, whose thread pool
    otherwise takes every core: on a loaded 2-core machine that made an
    integer ``detect`` 4x slower than with one thread.  Linux only (the loaded
    libraries are read from ``/proc/self/maps``); elsewhere nothing is changed.
    Like ``torch.set_num_threads`` this is a process-wide setting.
    """
    import numpy  # noqa: F401  (loads its BLAS)

    try:
        with open("/proc/self/maps") as f:
            paths = list(dict.fromkeys(parts[5] for parts in map(str.split, f) if len(parts) >= 6 and "openblas" in parts[5].lower()))
    except OSError:
        return False
    done = False
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _BLAS_SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(ctypes.c_int(n))
                done = True
                break
    return done
