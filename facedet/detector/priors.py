"""Square priors, one per head-map cell (S3FD-style, as in the RNNPool face models of Saha et al., NeurIPS 2020).

In the input pixel frame of the network: for head ``k`` with map ``fh x fw``,
stride ``s_k`` and anchor ``a_k``, the prior at cell ``(i, j)`` (row-major) is
centred at ``((j + 0.5) s_k, (i + 0.5) s_k)`` with side ``a_k``.  Because the
SSD codec divides offsets by the prior size, pixel and normalised priors give
identical encodings; facedet keeps one box contract (pixels) throughout.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def make_priors(map_sizes: Sequence[tuple[int, int]], steps: Sequence[int], anchors: Sequence[float]) -> Tensor:
    """Priors for all heads, concatenated in head order.

    Args:
        map_sizes: ``[(fh, fw), ...]`` one per head.
        steps: stride in pixels per head.
        anchors: anchor side in pixels per head.
    Returns:
        ``Tensor[P, 4]`` float32 cxcywh pixels, ``P = sum(fh * fw)``.
    """
    out = []
    for (fh, fw), step, anchor in zip(map_sizes, steps, anchors):
        ys = (torch.arange(fh, dtype=torch.float32) + 0.5) * step
        xs = (torch.arange(fw, dtype=torch.float32) + 0.5) * step
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        side = torch.full_like(cx, float(anchor))
        out.append(torch.stack([cx, cy, side, side], -1).reshape(-1, 4))
    return torch.cat(out, 0) if out else torch.zeros(0, 4)
