"""Square priors, one per head-map cell (S3FD-style, as in the RNNPool face models of Saha et al., NeurIPS 2020).

In the input pixel frame of the network: for head ``k`` with map ``fh x fw``,
stride ``s_k`` and anchor ``a_k``, the prior at cell ``(i, j)`` (row-major) is
centred at ``((j + 0.5) s_k, (i + 0.5) s_k)`` with side ``a_k``.  Because the
SSD codec divides offsets by the prior size, pixel and normalised priors give
identical encodings; facedet keeps one box contract (pixels) throughout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor


def prior_boxes(map_sizes: Sequence[tuple[int, int]], steps: Sequence[int], anchors: Sequence[float]) -> np.ndarray:
    """Priors for all heads, concatenated in head order.

    Args:
        map_sizes: ``[(fh, fw), ...]`` one per head.
        steps: stride in pixels per head.
        anchors: anchor side in pixels per head.
    Returns:
        ``float32[P, 4]`` cxcywh pixels, ``P = sum(fh * fw)``.
    """
    out = []
    for (fh, fw), step, anchor in zip(map_sizes, steps, anchors):
        ys = (np.arange(fh, dtype=np.float32) + np.float32(0.5)) * np.float32(step)
        xs = (np.arange(fw, dtype=np.float32) + np.float32(0.5)) * np.float32(step)
        cy, cx = np.meshgrid(ys, xs, indexing="ij")
        side = np.full_like(cx, np.float32(anchor))
        out.append(np.stack([cx, cy, side, side], -1).reshape(-1, 4))
    return np.concatenate(out, 0) if out else np.zeros((0, 4), np.float32)


def make_priors(map_sizes: Sequence[tuple[int, int]], steps: Sequence[int], anchors: Sequence[float]) -> "Tensor":
    """:func:`prior_boxes` as a ``Tensor[P, 4]`` (float32), for the torch model and training."""
    import torch

    return torch.from_numpy(prior_boxes(map_sizes, steps, anchors))
