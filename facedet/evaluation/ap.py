"""Matching and average precision for generic (non-WIDER) face sets.

COCO-style, one class, boxes in facedet's continuous ``xyxy`` contract (no
"+1"):

* per image, detections are visited in descending score order (stable, ties
  keep input order); each one takes the unmatched, non-ignored ground-truth
  box it overlaps most with IoU >= t (ties: lowest index).  If there is none,
  but it overlaps an *ignored* box with IoU >= t, the detection is ignored
  (neither true nor false positive; an ignored box can absorb any number of
  detections).  Otherwise it is a false positive;
* detections of all images are pooled and sorted by score (stable);
* AP is the COCO 101-point interpolated AP: the mean, over recall levels
  0, 0.01, ..., 1, of the highest precision reached at that recall or beyond
  (0 where the recall is never reached);
* AP@[0.5:0.95] is the mean over IoU thresholds 0.50, 0.55, ..., 0.95.

Images without any ground-truth box are negatives: all their detections are
false positives.  There is no cap on detections per image (COCO caps at 100).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facedet.boxes import box_iou

__all__ = [
    "COCO_IOUS",
    "RECALL_LEVELS",
    "match_image",
    "coco_ap",
    "pr_points",
    "DetectionStats",
    "accumulate",
]

COCO_IOUS = np.round(np.linspace(0.5, 0.95, 10), 2)
RECALL_LEVELS = np.linspace(0.0, 1.0, 101)


def match_image(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    gt_boxes: np.ndarray,
    gt_ignore: np.ndarray,
    iou_thresholds: np.ndarray = COCO_IOUS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy COCO matching of one image at several IoU thresholds at once.

    Args:
        det_boxes: ``[N, 4]`` xyxy.
        det_scores: ``[N]``.
        gt_boxes: ``[M, 4]`` xyxy.
        gt_ignore: ``bool[M]``.
        iou_thresholds: ``[T]``.
    Returns:
        ``(scores, tp, ignored)``: ``float64[N]`` scores in descending order,
        ``bool[T, N]`` true positives and ``bool[T, N]`` ignored detections, in
        that order.
    """
    det_scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-det_scores, kind="stable")
    scores = det_scores[order]
    thr = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    n, t = len(order), len(thr)
    tp = np.zeros((t, n), dtype=bool)
    ignored = np.zeros((t, n), dtype=bool)
    gt_ignore = np.asarray(gt_ignore, dtype=bool).reshape(-1)
    m = len(gt_ignore)
    if n == 0 or m == 0:
        return scores, tp, ignored
    iou = box_iou(np.asarray(det_boxes)[order], gt_boxes)  # [N, M] float64
    taken = np.zeros((t, m), dtype=bool)
    rows = np.arange(t)
    for d in range(n):
        over = iou[d][None, :] >= thr[:, None]  # [T, M]
        cand = over & ~taken & ~gt_ignore[None, :]
        has = cand.any(axis=1)
        best = np.where(cand, iou[d][None, :], -1.0).argmax(axis=1)
        taken[rows[has], best[has]] = True
        tp[has, d] = True
        ignored[~has, d] = (over[~has] & gt_ignore[None, :]).any(axis=1)
    return scores, tp, ignored


@dataclass
class DetectionStats:
    """Pooled matching results of a data set.

    Attributes:
        scores: ``float64[N]`` all detections, descending (stable).
        tp: ``bool[T, N]`` true positive at each IoU threshold.
        ignored: ``bool[T, N]`` ignored detection at each IoU threshold.
        num_gt: number of non-ignored ground-truth boxes.
        iou_thresholds: ``float64[T]``.
    """

    scores: np.ndarray
    tp: np.ndarray
    ignored: np.ndarray
    num_gt: int
    iou_thresholds: np.ndarray


def accumulate(per_image: list[tuple[np.ndarray, np.ndarray, np.ndarray]], num_gt: int, iou_thresholds: np.ndarray = COCO_IOUS) -> DetectionStats:
    """Pool the :func:`match_image` results of all images (stable score sort).

    Args:
        per_image: list of ``(scores, tp, ignored)``.
        num_gt: total non-ignored ground-truth boxes.
    """
    t = len(iou_thresholds)
    if per_image:
        scores = np.concatenate([p[0] for p in per_image])
        tp = np.concatenate([p[1] for p in per_image], axis=1)
        ig = np.concatenate([p[2] for p in per_image], axis=1)
    else:
        scores, tp, ig = np.zeros(0), np.zeros((t, 0), bool), np.zeros((t, 0), bool)
    order = np.argsort(-scores, kind="stable")
    return DetectionStats(scores[order], tp[:, order], ig[:, order], int(num_gt), np.asarray(iou_thresholds, np.float64))


def pr_points(tp: np.ndarray, ignored: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each (non-ignored) detection of one IoU threshold.

    Args:
        tp: ``bool[N]`` in descending score order.
        ignored: ``bool[N]``.
        num_gt: non-ignored ground-truth boxes (> 0).
    Returns:
        ``(recall, precision)``, each ``float64[K]`` with K the number of
        non-ignored detections.
    """
    keep = ~ignored
    tps = np.cumsum(tp[keep]).astype(np.float64)
    fps = np.cumsum(~tp[keep]).astype(np.float64)
    recall = tps / num_gt
    precision = tps / np.maximum(tps + fps, np.finfo(np.float64).eps)
    return recall, precision


def coco_ap(tp: np.ndarray, ignored: np.ndarray, num_gt: int) -> float:
    """COCO 101-point interpolated AP of one IoU threshold.

    Args:
        tp, ignored: ``bool[N]`` in descending score order.
        num_gt: non-ignored ground-truth boxes.
    Returns:
        AP in [0, 1]; NaN when ``num_gt == 0`` (undefined).
    """
    if num_gt == 0:
        return float("nan")
    recall, precision = pr_points(tp, ignored, num_gt)
    if len(recall) == 0:
        return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_LEVELS, side="left")
    q = np.where(idx < len(recall), envelope[np.minimum(idx, len(recall) - 1)], 0.0)
    return float(q.mean())
