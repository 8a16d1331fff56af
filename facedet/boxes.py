"""Box operations under one contract.

**The box contract.** Everywhere inside facedet a box is ``[x1, y1, x2, y2]`` in
float pixels: ``(x1, y1)`` is the top-left corner, ``(x2, y2)`` the bottom-right
corner, ``x2 >= x1`` and ``y2 >= y1``, width ``x2 - x1`` (no "+1").  A set of
boxes is an ``[N, 4]`` torch tensor or NumPy array: every function here takes both.
Other layouts exist only at the edges of the program and are converted here:

* ``xywh``  -- ``[x, y, w, h]`` (WIDER FACE annotation and prediction files),
* ``cxcywh`` -- ``[cx, cy, w, h]`` (priors and the SSD box codec).

The official WIDER evaluation (and S3FD's box voting) measure a box as
``x2 - x1 + 1`` pixels wide; :func:`box_iou` takes that as ``plus_one=True``.
This module is the one implementation of IoU and of NMS in facedet; it imports
no torch (see :mod:`facedet.arrays`).
"""

from __future__ import annotations

import numpy as np

from facedet.arrays import is_tensor, namespace

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


def box_area(boxes):
    """Area of each box.

    Args:
        boxes: ``[N, 4]`` xyxy, a tensor or an array.
    Returns:
        ``[N]`` of the same kind; degenerate boxes (x2 < x1) have area 0.
    """
    wh = (boxes[:, 2:] - boxes[:, :2]).clip(min=0)
    return wh[:, 0] * wh[:, 1]


def box_iou(boxes1, boxes2, *, plus_one: bool = False):
    """Pairwise intersection over union.

    Args:
        boxes1: ``[N, 4]`` xyxy, a torch tensor or anything NumPy takes.
        boxes2: ``[M, 4]`` xyxy, the same kind as ``boxes1``.
        plus_one: measure sides as ``x2 - x1 + 1`` (the official WIDER FACE
            evaluation and S3FD's box voting, on integer pixel boxes).  The
            operations are the official code's, in its order, so IoUs exactly on a
            threshold compare as they do there.
    Returns:
        ``[N, M]``: a tensor for tensors; ``float64`` NumPy otherwise.  The IoU of
        boxes with an empty union is 0, not NaN.
    """
    if not is_tensor(boxes1):
        boxes1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
        boxes2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    return _overlap(boxes1, boxes2, 1 if plus_one else 0)


def _overlap(a, b, one: int):
    """:func:`box_iou` in the operands' own type and dtype (what :func:`nms` compares)."""
    xp = namespace(a)
    iw = xp.minimum(a[:, None, 2], b[None, :, 2]) - xp.maximum(a[:, None, 0], b[None, :, 0]) + one
    ih = xp.minimum(a[:, None, 3], b[None, :, 3]) - xp.maximum(a[:, None, 1], b[None, :, 1]) + one
    inter = xp.where((iw > 0) & (ih > 0), iw * ih, xp.zeros_like(iw))
    area_a = (a[:, 2] - a[:, 0] + one).clip(min=0) * (a[:, 3] - a[:, 1] + one).clip(min=0)
    area_b = (b[:, 2] - b[:, 0] + one).clip(min=0) * (b[:, 3] - b[:, 1] + one).clip(min=0)
    union = (area_a[:, None] + area_b[None, :]) - inter
    nonempty = union > 0
    return xp.where(nonempty, inter / xp.where(nonempty, union, xp.ones_like(union)), xp.zeros_like(inter))


def xywh_to_xyxy(boxes):
    """``[N, 4]`` xywh -> ``[N, 4]`` xyxy (same type as the input)."""
    out = boxes.clone() if is_tensor(boxes) else np.array(boxes, dtype=np.float64 if boxes.dtype.kind != "f" else boxes.dtype, copy=True)
    out[:, 2:] = boxes[:, :2] + boxes[:, 2:]
    return out


def xyxy_to_xywh(boxes):
    """``[N, 4]`` xyxy -> ``[N, 4]`` xywh (same type as the input)."""
    out = boxes.clone() if is_tensor(boxes) else np.array(boxes, copy=True)
    out[:, 2:] = boxes[:, 2:] - boxes[:, :2]
    return out


def cxcywh_to_xyxy(boxes):
    """``[..., 4]`` centre form -> ``[..., 4]`` xyxy (same type as the input)."""
    half = boxes[..., 2:] / 2
    return namespace(boxes).concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)


def xyxy_to_cxcywh(boxes):
    """``[..., 4]`` xyxy -> ``[..., 4]`` centre form (same type as the input)."""
    return namespace(boxes).concatenate([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], axis=-1)


def clip_boxes(boxes, height: int, width: int):
    """Clip ``[N, 4]`` xyxy boxes to the image ``[0, width] x [0, height]`` (a copy, same type)."""
    out = boxes.clone() if is_tensor(boxes) else np.array(boxes, copy=True)
    out[:, 0::2] = out[:, 0::2].clip(0, width)
    out[:, 1::2] = out[:, 1::2].clip(0, height)
    return out


def nms(boxes, scores, iou_threshold: float, block_size: int = 128):
    """Greedy non-maximum suppression, vectorised.

    Boxes are visited in order of decreasing score (ties: lower index first); a
    box is kept unless a *kept* box with a higher rank overlaps it with
    ``IoU > iou_threshold``.  This is exactly the classic greedy loop, computed
    without a Python loop over boxes.  The ranked boxes are cut into blocks;
    for each block,

    1. boxes overlapping a box already kept in an earlier block are dropped
       (one IoU matrix against the kept boxes), then
    2. the block's own keep mask is the fixed point of
       ``keep[j] = not any(keep[i] and over[i, j] for i ranked before j)``,
       iterated from "keep everything": after ``k`` steps the first ``k``
       ranks are final, and the only fixed point is the greedy answer.  It is
       reached after as many steps as the longest suppression chain, which
       blocks keep short even for dense, grid-like candidates.

    It runs in NumPy.  IoUs are computed in the boxes' own precision: a
    tensor's dtype (float32 or float64; other float types as float32), float64
    for anything else -- so a float32 tensor gives the same IoUs, and the same
    answer, as the float32 arithmetic of torch would.

    Args:
        boxes: ``[N, 4]`` xyxy, a tensor or a NumPy array.
        scores: ``[N]``, the same kind.
        iou_threshold: boxes with IoU strictly above this are suppressed.
        block_size: boxes per block (a speed knob; the result does not depend on it).
    Returns:
        int64 indices into ``boxes`` of the kept boxes, sorted by decreasing
        score: a ``Tensor[K]`` (on the boxes' device) for tensors, an ``ndarray[K]`` for arrays.
    """
    if is_tensor(boxes):
        import torch

        dtype = boxes.dtype if boxes.dtype in (torch.float32, torch.float64) else torch.float32
        b = boxes.detach().to("cpu", dtype).numpy().reshape(-1, 4)
        s = scores.detach().to("cpu", dtype).numpy().reshape(-1)
        return torch.from_numpy(_greedy(b, s, iou_threshold, block_size)).to(boxes.device)
    return _greedy(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores, dtype=np.float64).reshape(-1), iou_threshold, block_size)


def _greedy(boxes: np.ndarray, scores: np.ndarray, threshold: float, block_size: int) -> np.ndarray:
    """:func:`nms` on NumPy arrays of one dtype."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    # Stable sort so that equal scores keep their input order (like the oracle).
    order = np.argsort(-scores, kind="stable")
    b = boxes[order]
    n = b.shape[0]
    keep = np.zeros(n, dtype=bool)
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        blk = b[start:stop]
        alive = np.ones(stop - start, dtype=bool)
        if start > 0:
            kept_before = b[:start][keep[:start]]
            if len(kept_before):
                alive = ~(_overlap(kept_before, blk, 0) > threshold).any(0)
        # over[i, j]: rank i of the block would suppress rank j (i < j only).
        over = np.triu(_overlap(blk, blk, 0) > threshold, k=1) & alive[:, None]
        cur = alive.copy()
        while True:
            new = alive & ~over[cur].any(0)
            if np.array_equal(new, cur):
                break
            cur = new
        keep[start:stop] = cur
    return order[keep].astype(np.int64)
