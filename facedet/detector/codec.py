"""SSD box codec with variances (SSD, Liu et al. 2016; as in the RNNPool reference code, Saha et al. NeurIPS 2020).

``encode`` and ``decode`` are exact inverses (up to float rounding)::

    t_xy = (c_gt - c_p) / (v0 * wh_p)      t_wh = log(wh_gt / wh_p) / v1
    c    = c_p + v0 * t_xy * wh_p          wh   = wh_p * exp(v1 * t_wh)
"""

from __future__ import annotations

import torch
from torch import Tensor

from facedet.boxes import cxcywh_to_xyxy, xyxy_to_cxcywh

VARIANCES = (0.1, 0.2)


def encode(boxes: Tensor, priors: Tensor, variances: tuple[float, float] = VARIANCES) -> Tensor:
    """Encode matched ground truth against priors.

    Args:
        boxes: ``Tensor[..., P, 4]`` xyxy pixels (one matched box per prior).
        priors: ``Tensor[P, 4]`` cxcywh pixels.
    Returns:
        ``Tensor[..., P, 4]`` regression targets.
    """
    g = xyxy_to_cxcywh(boxes)
    t_xy = (g[..., :2] - priors[:, :2]) / (variances[0] * priors[:, 2:])
    t_wh = torch.log(g[..., 2:].clamp(min=1e-6) / priors[:, 2:]) / variances[1]
    return torch.cat([t_xy, t_wh], -1)


def decode(loc: Tensor, priors: Tensor, variances: tuple[float, float] = VARIANCES) -> Tensor:
    """Decode regression outputs into boxes.

    Args:
        loc: ``Tensor[..., P, 4]`` network offsets.
        priors: ``Tensor[P, 4]`` cxcywh pixels.
    Returns:
        ``Tensor[..., P, 4]`` xyxy pixels (not clipped).
    """
    c = priors[:, :2] + loc[..., :2] * variances[0] * priors[:, 2:]
    wh = priors[:, 2:] * torch.exp(loc[..., 2:] * variances[1])
    return cxcywh_to_xyxy(torch.cat([c, wh], -1))
