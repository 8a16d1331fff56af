"""Iterative hard thresholding of the RNNPool weights (the M4 SCUT-HEAD fine-tuning
recipe of the RNNPool paper, Saha et al., NeurIPS 2020; docs/training.md, "Fine-tuning
on SCUT-HEAD, with sparsification").

During SCUT-HEAD fine-tuning of M4 the reference zeroes, after every optimiser
step, all but the largest-magnitude fraction ``s`` (the *density*) of each
FastGRNN matrix: entries whose magnitude is below the ``(1 - s) * 100``-th
percentile of ``|A|`` ('higher' interpolation) become 0.  Densities: first RNN
``W`` 0.5, ``U`` 0.3; second RNN ``W`` 0.3, ``U`` 0.3.  Biases, ``zeta`` and
``nu`` stay dense.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facedet.graph import Block

__all__ = ["DENSITIES", "hard_threshold_", "sparsify_rnnpool_", "rnnpool_density"]

DENSITIES = {"rnn1.W": 0.5, "rnn1.U": 0.3, "rnn2.W": 0.3, "rnn2.U": 0.3}


@torch.no_grad()
def hard_threshold_(a: Tensor, density: float) -> Tensor:
    """Zero the entries of ``a`` whose magnitude is below the ``(1-density)`` quantile (in place)."""
    if density >= 1.0 or a.numel() == 0:
        return a
    mag = a.abs().flatten()
    q = torch.quantile(mag.double(), 1.0 - density, interpolation="higher").to(a.dtype)
    a.masked_fill_(a.abs() < q, 0.0)
    return a


def _cells(model: nn.Module):
    """``(name, parameter, density)`` of every thresholded RNNPool matrix."""
    for name, module in model.named_modules():
        if isinstance(module, Block):
            for key, param in module.rnn_matrices().items():
                density = DENSITIES.get(key.removeprefix("pool."))
                if density is not None:
                    yield f"{name}.{key}", param, density


@torch.no_grad()
def sparsify_rnnpool_(model: nn.Module) -> int:
    """Hard-threshold every RNNPool matrix of ``model`` in place; returns how many were processed."""
    n = 0
    for _, param, density in _cells(model):
        hard_threshold_(param.data, density)
        n += 1
    return n


def rnnpool_density(model: nn.Module) -> dict[str, float]:
    """Fraction of non-zero entries of each thresholded matrix (for the log)."""
    return {name: float((p != 0).float().mean()) for name, p, _ in _cells(model)}
