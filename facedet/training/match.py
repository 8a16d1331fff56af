"""Prior matching with S3FD scale compensation (Zhang et al., ICCV 2017, as RNNPool
trains it; docs/training.md, "Matching").

For one image with ground-truth faces ``G`` (xyxy pixels) and priors ``P``:

1. IoU of every face with every prior (priors in corner form).
2. Every prior takes its best face.  Every face's best prior is *forced* onto
   that face (its overlap becomes 2); when two faces share a best prior, the
   later face wins (as in the reference).  facedet skips the forcing for a
   face that overlaps no prior at all (best IoU 0), which the reference would
   have matched to prior 0.
3. Priors whose best IoU is ``>= 0.35`` are positives (label 1), others 0.
4. Scale compensation: ``N = (#faces with best-prior IoU >= 0.35 +
   #faces with best-prior IoU >= 0.5) // 2`` (IoUs measured before the
   forcing).  The priors with ``0.1 < IoU < 0.35`` are sorted by IoU
   (descending, ties by prior index) and the first ``min(N, #candidates)``
   become positives, matched to their best face.

   **N is per image, as in the RNNPool reference code** (microsoft/EdgeML): the
   top-N candidates of the whole image are promoted, not N per face.  facedet
   keeps this on purpose -- it is the rule the published models were trained
   with, and a per-face variant would change which small faces get extra
   anchors without published evidence that it helps.
5. Ignored faces (``ignore`` True) never become targets; a prior that is still
   background but overlaps an ignored face with IoU ``>= 0.35`` gets label -1
   and is excluded from the loss (neither positive nor mined as negative).

Thresholds are compared exactly as written (``>=`` 0.35 and 0.5, strict
``0.1 < IoU < 0.35`` for candidates).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from facedet.boxes import box_iou, cxcywh_to_xyxy
from facedet.detector.codec import VARIANCES, encode

__all__ = ["THRESHOLDS", "match", "match_batch"]

THRESHOLDS = (0.1, 0.35, 0.5)


def match(gt_boxes: Tensor, gt_ignore: Tensor | None, priors: Tensor, thresholds: tuple[float, float, float] = THRESHOLDS) -> tuple[Tensor, Tensor]:
    """Match one image's faces to the priors.

    Args:
        gt_boxes: ``Tensor[N, 4]`` xyxy pixels.
        gt_ignore: ``bool Tensor[N]`` or None.
        priors: ``Tensor[P, 4]`` cxcywh pixels.
        thresholds: ``(low, positive, high)`` = (0.1, 0.35, 0.5).
    Returns:
        ``(labels int64 Tensor[P], matched Tensor[P, 4])``: label 1 face,
        0 background, -1 excluded; ``matched`` is the face box (xyxy) each
        positive regresses to (the prior's own box where there is none).
    """
    th1, th2, th3 = thresholds
    P = priors.shape[0]
    device = priors.device
    pxy = cxcywh_to_xyxy(priors)
    gt_boxes = gt_boxes.to(device=device, dtype=priors.dtype).reshape(-1, 4)
    if gt_ignore is None:
        gt_ignore = torch.zeros(gt_boxes.shape[0], dtype=torch.bool, device=device)
    gt_ignore = gt_ignore.to(device=device, dtype=torch.bool).reshape(-1)
    real = gt_boxes[~gt_ignore]
    labels = torch.zeros(P, dtype=torch.int64, device=device)
    matched = pxy.clone()
    if real.shape[0] > 0:
        iou = box_iou(real, pxy)  # [N, P]
        best_prior_overlap, best_prior_idx = iou.max(1)  # per face
        best_truth_overlap, best_truth_idx = iou.max(0)  # per prior
        n_comp = (int((best_prior_overlap >= th2).sum()) + int((best_prior_overlap >= th3).sum())) // 2
        # Forced matches, the later face winning a shared prior.
        n = real.shape[0]
        faces = torch.arange(n, device=device)
        valid = best_prior_overlap > 0
        forced = torch.full((P,), -1, dtype=torch.int64, device=device)
        forced.scatter_reduce_(0, best_prior_idx[valid], faces[valid], reduce="amax")
        is_forced = forced >= 0
        best_truth_idx = torch.where(is_forced, forced, best_truth_idx)
        best_truth_overlap = torch.where(is_forced, torch.full_like(best_truth_overlap, 2.0), best_truth_overlap)
        labels[best_truth_overlap >= th2] = 1
        if n_comp > 0:
            cand = (best_truth_overlap > th1) & (best_truth_overlap < th2)
            k = min(n_comp, int(cand.sum()))
            if k > 0:
                score = torch.where(cand, best_truth_overlap, torch.full_like(best_truth_overlap, -1.0))
                order = torch.sort(score, descending=True, stable=True).indices[:k]
                labels[order] = 1
        matched = real[best_truth_idx]
    ign = gt_boxes[gt_ignore]
    if ign.shape[0] > 0:
        near_ignored = box_iou(ign, pxy).max(0).values >= th2
        labels[(labels == 0) & near_ignored] = -1
    return labels, matched


def match_batch(
    gt_boxes: Sequence[Tensor],
    gt_ignore: Sequence[Tensor | None],
    priors: Tensor,
    variances: tuple[float, float] = VARIANCES,
    thresholds: tuple[float, float, float] = THRESHOLDS,
) -> tuple[Tensor, Tensor]:
    """:func:`match` every image and encode the regression targets.

    Returns:
        ``(labels int64 Tensor[B, P], loc_targets Tensor[B, P, 4])``.
    """
    labels, matched = [], []
    for boxes, ignore in zip(gt_boxes, gt_ignore):
        lab, mat = match(boxes, ignore, priors, thresholds)
        labels.append(lab)
        matched.append(mat)
    labels_t = torch.stack(labels, 0)
    loc_t = encode(torch.stack(matched, 0), priors, variances)
    return labels_t, loc_t
