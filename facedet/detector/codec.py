"""SSD box codec with variances (SSD, Liu et al. 2016; as in the RNNPool reference code, Saha et al. NeurIPS 2020).

``encode`` and ``decode`` are exact inverses (up to float rounding)::

    t_xy = (c_gt - c_p) / (v0 * wh_p)      t_wh = log(wh_gt / wh_p) / v1
    c    = c_p + v0 * t_xy * wh_p          wh   = wh_p * exp(v1 * t_wh)
"""

from __future__ import annotations

from facedet.arrays import namespace
from facedet.boxes import cxcywh_to_xyxy, xyxy_to_cxcywh

VARIANCES = (0.1, 0.2)


def encode(boxes, priors, variances: tuple[float, float] = VARIANCES):
    """Encode matched ground truth against priors.

    Args:
        boxes: ``[..., P, 4]`` xyxy pixels (one matched box per prior); a tensor or an array.
        priors: ``[P, 4]`` cxcywh pixels, the same kind.
    Returns:
        ``[..., P, 4]`` regression targets, the same kind.
    """
    xp = namespace(boxes)
    g = xyxy_to_cxcywh(boxes)
    t_xy = (g[..., :2] - priors[:, :2]) / (variances[0] * priors[:, 2:])
    t_wh = xp.log(g[..., 2:].clip(min=1e-6) / priors[:, 2:]) / variances[1]
    return xp.concatenate([t_xy, t_wh], axis=-1)


def decode(loc, priors, variances: tuple[float, float] = VARIANCES):
    """Decode regression outputs into boxes.

    Args:
        loc: ``[..., P, 4]`` network offsets; a tensor or an array.
        priors: ``[P, 4]`` cxcywh pixels, the same kind.
    Returns:
        ``[..., P, 4]`` xyxy pixels (not clipped), the same kind.
    """
    xp = namespace(loc)
    c = priors[:, :2] + loc[..., :2] * variances[0] * priors[:, 2:]
    wh = priors[:, 2:] * xp.exp(loc[..., 2:] * variances[1])
    return cxcywh_to_xyxy(xp.concatenate([c, wh], axis=-1))
