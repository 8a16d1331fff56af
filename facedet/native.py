"""Loader of facedet's native inference kernels (the C extension ``facedet._native``).

``facedet/_native.c`` holds the fused RNNPool operator (:mod:`facedet.rnnpool.fused`)
and the direct convolutions and L2Norm of the inference model
(:mod:`facedet.detector.fast`).  ``setup.py`` builds it at install with the system C
compiler as an optional extension: where there is no compiler or the build
fails, facedet still installs and runs, on torch ops, and the first inference
that would have used the kernels warns once, naming the cause.

:func:`set_enabled(False) <set_enabled>` selects the torch ops without a warning
(benchmarks, tests).
"""

from __future__ import annotations

import warnings

__all__ = ["available", "enabled", "set_enabled", "unavailable_reason", "variant", "module"]

_module = None
_reason: str | None = None
_loaded = False
_warned = False
_enabled = True


def _load():
    global _module, _reason, _loaded
    if not _loaded:
        _loaded = True
        try:
            from facedet import _native
        except ImportError as exc:  # not built (no compiler, failed build) or not loadable here
            _reason = f"{type(exc).__name__}: {exc}"
        else:
            _module = _native
    return _module


def module():
    """The extension module, or None where it is not available."""
    return _load()


def available() -> bool:
    """Whether the compiled kernels load."""
    return _load() is not None


def unavailable_reason() -> str | None:
    """Why the extension cannot be used (None when it loads)."""
    _load()
    return _reason


def enabled() -> bool:
    """Whether inference uses the kernels: loaded and not switched off.

    The first call that finds them missing warns (once per process), naming the cause.
    """
    global _warned
    if not _enabled:
        return False
    if _load() is None:
        if not _warned:
            _warned = True
            warnings.warn(
                f"facedet: native kernels not available ({_reason}); inference runs on slower torch ops. "
                "Reinstall facedet with a C compiler present (pip install -e . builds them).",
                RuntimeWarning,
                stacklevel=3,
            )
        return False
    return True


def set_enabled(flag: bool) -> bool:
    """Switch the kernels on or off for this process; returns the previous setting."""
    global _enabled
    old, _enabled = _enabled, bool(flag)
    return old


def variant() -> str | None:
    """The compiled variant that runs (``'avx2+fma'`` or ``'generic'``); None without the extension."""
    return None if _load() is None else _module.variant()
