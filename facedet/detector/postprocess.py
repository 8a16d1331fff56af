"""Raw network outputs -> scored face boxes (SSD/S3FD inference: softmax, decode, threshold, NMS)."""

from __future__ import annotations

import torch
from torch import Tensor

from facedet.boxes import nms
from facedet.detector.codec import VARIANCES, decode

NMS_TOP_K = 5000  # candidates entering NMS, by score


def detect_boxes(
    conf: Tensor,
    loc: Tensor,
    priors: Tensor,
    *,
    threshold: float,
    nms_threshold: float,
    max_faces: int,
    variances: tuple[float, float] = VARIANCES,
    top_k: int = NMS_TOP_K,
) -> tuple[Tensor, Tensor]:
    """Softmax, decode, score threshold, greedy NMS and top-k for one image.

    Args:
        conf: ``Tensor[P, 2]`` logits (background, face).
        loc: ``Tensor[P, 4]`` offsets.
        priors: ``Tensor[P, 4]`` cxcywh pixels.
        threshold: keep scores strictly above this.
        nms_threshold: suppress IoU strictly above this.
        max_faces: keep at most this many after NMS.
    Returns:
        ``(boxes Tensor[K, 4] xyxy in network-input pixels, scores Tensor[K])``,
        sorted by decreasing score.
    """
    scores = torch.softmax(conf.float(), dim=-1)[:, 1]
    keep = scores > threshold
    if not bool(keep.any()):
        return torch.zeros(0, 4), torch.zeros(0)
    scores = scores[keep]
    boxes = decode(loc[keep].float(), priors[keep], variances)
    if scores.numel() > top_k:
        top = torch.topk(scores, top_k).indices
        scores, boxes = scores[top], boxes[top]
    kept = nms(boxes, scores, nms_threshold)[:max_faces]
    return boxes[kept], scores[kept]
