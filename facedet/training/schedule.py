"""Learning-rate schedule: linear warm-up, then cosine decay to 0 (docs/training.md, "Recipe").

The rate is set before every optimiser step from the global iteration ``t``
(0-based) and the total ``T``::

    t <  t_w:  lr = base * (t + 1) / t_w
    t >= t_w:  lr = base * (1 + cos(pi * (t - t_w) / (T - t_w))) / 2

The reference used ``t / t_w`` (its first step had rate 0); facedet uses
``t + 1`` so that no step is wasted.  ``t_w`` is 5 epochs in the reference
recipe; :func:`warmup_iterations` caps it at 10 % of the run so that short
runs still spend most of their steps decaying.
"""

from __future__ import annotations

import math

__all__ = ["lr_at", "warmup_iterations"]


def warmup_iterations(warmup_epochs: float, iters_per_epoch: int, total_iters: int) -> int:
    """Warm-up length in iterations: ``warmup_epochs`` epochs, at most 10 % of the run."""
    return max(0, min(int(round(warmup_epochs * iters_per_epoch)), total_iters // 10))


def lr_at(t: int, base_lr: float, warmup_iters: int, total_iters: int) -> float:
    """Learning rate of iteration ``t`` (see the module docstring)."""
    if warmup_iters > 0 and t < warmup_iters:
        return base_lr * (t + 1) / warmup_iters
    span = max(total_iters - warmup_iters, 1)
    progress = min(max(t - warmup_iters, 0) / span, 1.0)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
