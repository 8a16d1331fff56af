"""The fused RNNPool inference path: RNN1 and RNN2 over every patch of a map in one native call.

:func:`rnnpool_map` computes :meth:`facedet.rnnpool.RNNPool.forward_map` (and the
replicate pad of :class:`~facedet.rnnpool.RNNPoolLayer`) in the C extension
(``facedet/_native.c``, loaded by :mod:`facedet.native`), equal to the torch path
to float rounding.  :class:`~facedet.rnnpool.RNNPool` takes it by itself under
``torch.no_grad`` / ``torch.inference_mode`` for CPU float32 inputs (:func:`usable`);
training keeps the autograd path.  Where the extension is not built, the torch
path runs and :mod:`facedet.native` warns once.
"""

from __future__ import annotations

import torch
from torch import Tensor

from facedet import native

__all__ = ["usable", "rnnpool_map"]


def usable(x: Tensor, pool) -> bool:
    """Whether ``pool`` on ``x`` takes the kernel: no autograd, CPU float32, kernels enabled."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 4:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in pool.parameters())):
        return False
    return native.enabled()


def _cell_args(cell) -> tuple:
    params = [cell.W, cell.U, cell.bias_gate, cell.bias_update]
    if any(p.dtype != torch.float32 or p.device.type != "cpu" or not p.is_contiguous() for p in params):
        raise ValueError("fused RNNPool needs contiguous float32 CPU parameters")
    sz = float(torch.sigmoid(cell.zeta.detach()))
    sn = float(torch.sigmoid(cell.nu.detach()))
    return tuple(p.data_ptr() for p in params) + (sz, sn)


def rnnpool_map(pool, x: Tensor, patch: tuple[int, int], stride: tuple[int, int], pad: bool = False, threads: int | None = None) -> Tensor:
    """Pool every ``patch`` window of ``x`` (taken with ``stride``) with ``pool``'s two cells.

    Args:
        pool: a :class:`facedet.rnnpool.RNNPool` (``rnn1``, ``rnn2``, sizes).
        x: ``float32[B, k, H, W]`` on the CPU.
        patch: ``(P_h, P_w)``; stride: ``(s_h, s_w)``.
        pad: also replicate-pad one row at the bottom and one column at the right.
        threads: worker threads (default ``torch.get_num_threads()``).
    Returns:
        ``float32[B, 4*h2, oh(+1), ow(+1)]``, contiguous: rows fwd, rows bwd, cols fwd, cols bwd.
    """
    mod = native.module()
    if mod is None:
        raise RuntimeError(f"the fused RNNPool kernel is not available ({native.unavailable_reason()})")
    b, k, h, w = x.shape
    ph, pw = patch
    sh, sw = stride
    if h < ph or w < pw:
        raise ValueError(f"RNNPool needs at least {ph}x{pw} input, got {h}x{w}")
    if k != pool.in_channels:
        raise ValueError(f"RNNPool expects {pool.in_channels} channels, got {k}")
    x = x.detach().contiguous()
    oh, ow = (h - ph) // sh + 1, (w - pw) // sw + 1
    out = torch.empty(b, 4 * pool.hidden2, oh + int(pad), ow + int(pad))
    if b == 0:
        return out
    mod.rnnpool(
        x.data_ptr(), out.data_ptr(), b, k, h, w, ph, pw, sh, sw, pool.hidden1, pool.hidden2, int(pad),
        _cell_args(pool.rnn1), _cell_args(pool.rnn2), int(threads or torch.get_num_threads()),
    )
    return out
