"""Box operations under one contract.

**The box contract.** Everywhere inside facedet a box is ``[x1, y1, x2, y2]`` in
float pixels: ``(x1, y1)`` is the top-left corner, ``(x2, y2)`` the bottom-right
corner, ``x2 >= x1`` and ``y2 >= y1``, width ``x2 - x1`` (no "+1").  A set of
boxes is a ``Tensor[N, 4]`` (or ``ndarray[N, 4]`` in the NumPy helpers).
Other layouts exist only at the edges of the program and are converted here:

* ``xywh``  -- ``[x, y, w, h]`` (WIDER FACE annotation and prediction files),
* ``cxcywh`` -- ``[cx, cy, w, h]`` (priors and the SSD box codec).

The official WIDER evaluation uses a "+1 pixel" area convention; that lives in
:mod:`facedet.evaluation`, not here.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "box_area",
    "box_iou",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
    "cxcywh_to_xyxy",
    "xyxy_to_cxcywh",
    "clip_boxes",
    "nms",
]


def box_area(boxes: Tensor) -> Tensor:
    """Area of each box.

    Args:
        boxes: ``Tensor[N, 4]`` xyxy.
    Returns:
        ``Tensor[N]``; degenerate boxes (x2 < x1) have area 0.
    """
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0)
    return wh[:, 0] * wh[:, 1]


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise intersection over union.

    Args:
        boxes1: ``Tensor[N, 4]`` xyxy.
        boxes2: ``Tensor[M, 4]`` xyxy.
    Returns:
        ``Tensor[N, M]``; IoU of two empty boxes is 0, not NaN.
    """
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(inter))


def xywh_to_xyxy(boxes: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """``[N, 4]`` xywh -> ``[N, 4]`` xyxy (same type as the input)."""
    out = boxes.clone() if isinstance(boxes, Tensor) else np.array(boxes, dtype=np.float64 if boxes.dtype.kind != "f" else boxes.dtype, copy=True)
    out[:, 2:] = boxes[:, :2] + boxes[:, 2:]
    return out


def xyxy_to_xywh(boxes: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """``[N, 4]`` xyxy -> ``[N, 4]`` xywh (same type as the input)."""
    out = boxes.clone() if isinstance(boxes, Tensor) else np.array(boxes, copy=True)
    out[:, 2:] = boxes[:, 2:] - boxes[:, :2]
    return out


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``Tensor[N, 4]`` centre form -> ``Tensor[N, 4]`` xyxy."""
    half = boxes[..., 2:] / 2
    return torch.cat([boxes[..., :2] - half, boxes[..., :2] + half], dim=-1)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``Tensor[N, 4]`` xyxy -> ``Tensor[N, 4]`` centre form."""
    return torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], dim=-1)


def clip_boxes(boxes: Tensor, height: int, width: int) -> Tensor:
    """Clip ``Tensor[N, 4]`` xyxy boxes to the image ``[0, width] x [0, height]``."""
    out = boxes.clone()
    out[:, 0::2] = out[:, 0::2].clamp(0, width)
    out[:, 1::2] = out[:, 1::2].clamp(0, height)
    return out


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, block_size: int = 128) -> Tensor:
    """Greedy non-maximum suppression, vectorised.

    Boxes are visited in order of decreasing score (ties: lower index first); a
    box is kept unless a *kept* box with a higher rank overlaps it with
    ``IoU > iou_threshold``.  This is exactly the classic greedy loop, computed
    without a Python loop over boxes.  The ranked boxes are cut into blocks;
    for each block,

    1. boxes overlapping a box already kept in an earlier block are dropped
       (one matrix-vector product), then
    2. the block's own keep mask is the fixed point of
       ``keep[j] = not any(keep[i] and over[i, j] for i ranked before j)``,
       iterated from "keep everything": after ``k`` steps the first ``k``
       ranks are final, and the only fixed point is the greedy answer.  It is
       reached after as many steps as the longest suppression chain, which
       blocks keep short even for dense, grid-like candidates.

    Args:
        boxes: ``Tensor[N, 4]`` xyxy.
        scores: ``Tensor[N]``.
        iou_threshold: boxes with IoU strictly above this are suppressed.
        block_size: boxes per block (a speed knob; the result does not depend on it).
    Returns:
        ``Tensor[K]`` int64 indices into ``boxes`` of the kept boxes, sorted by
        decreasing score.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    # Stable sort so that equal scores keep their input order (like the oracle).
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order]
    n = b.shape[0]
    keep = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        blk = b[start:stop]
        alive = torch.ones(stop - start, dtype=torch.bool, device=boxes.device)
        if start > 0:
            kept_before = b[:start][keep[:start]]
            if kept_before.numel():
                alive = ~(box_iou(kept_before, blk) > iou_threshold).any(0)
        # over[i, j]: rank i of the block would suppress rank j (i < j only).
        over = ((box_iou(blk, blk) > iou_threshold).triu_(diagonal=1) & alive[:, None]).to(torch.float32)
        cur = alive.clone()
        while True:
            new = alive & ~((cur.to(torch.float32) @ over) > 0)
            if torch.equal(new, cur):
                break
            cur = new
        keep[start:stop] = cur
    return order[keep]
