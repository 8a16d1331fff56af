"""Code that takes torch tensors and NumPy arrays alike, without importing torch.

Box operations, the SSD codec and post-processing have one implementation each
and serve both the torch model (training, the torch backend) and the backends
that run without torch (ONNX Runtime, the integer interpreter).  They use the
operations the two libraries spell alike (``exp``, ``log``, ``where``,
``minimum``, ``concatenate``, ``.clip``) through :func:`namespace`.
"""

from __future__ import annotations

import sys
from types import ModuleType

import numpy as np


def is_tensor(a) -> bool:
    """Whether ``a`` is a torch tensor (False, without importing torch, when torch is not loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(a, torch.Tensor)


def namespace(a) -> ModuleType:
    """``torch`` for a tensor, ``numpy`` for anything else."""
    return sys.modules["torch"] if is_tensor(a) else np
