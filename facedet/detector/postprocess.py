"""Raw network outputs -> scored face boxes (SSD/S3FD inference: softmax, decode, threshold, NMS).

One implementation for torch tensors (the torch model, training's validation)
and NumPy arrays (ONNX Runtime, the integer interpreter): the inputs' kind is
kept throughout, and tensors go through torch's own softmax and top-k.
"""

from __future__ import annotations

import numpy as np

from facedet.arrays import is_tensor
from facedet.boxes import nms
from facedet.detector.codec import VARIANCES, decode

NMS_TOP_K = 5000  # candidates entering NMS, by score


def face_scores(conf):
    """Softmax face probability ``[P]`` of ``[P, 2]`` logits (background, face), in float32."""
    if is_tensor(conf):
        import torch

        return torch.softmax(conf.float(), dim=-1)[:, 1]
    x = np.asarray(conf, dtype=np.float32)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e[:, 1] / e.sum(axis=-1)


def detect_boxes(
    conf,
    loc,
    priors,
    *,
    threshold: float,
    nms_threshold: float,
    max_faces: int,
    variances: tuple[float, float] = VARIANCES,
    top_k: int = NMS_TOP_K,
):
    """Softmax, decode, score threshold, greedy NMS and top-k for one image.

    Args:
        conf: ``[P, 2]`` logits (background, face); a tensor or an array.
        loc: ``[P, 4]`` offsets, the same kind.
        priors: ``[P, 4]`` cxcywh pixels, the same kind.
        threshold: keep scores strictly above this.
        nms_threshold: suppress IoU strictly above this.
        max_faces: keep at most this many after NMS.
        top_k: at most this many best-scoring boxes enter NMS.
    Returns:
        ``(boxes [K, 4] xyxy in network-input pixels, scores [K])`` float32,
        sorted by decreasing score, of the inputs' kind.
    """
    tensor = is_tensor(conf)
    scores = face_scores(conf)
    keep = scores > threshold
    if not bool(keep.any()):
        if tensor:
            import torch

            return torch.zeros(0, 4), torch.zeros(0)
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    scores = scores[keep]
    boxes = decode(loc[keep].float() if tensor else np.asarray(loc[keep], np.float32), priors[keep], variances)
    if len(scores) > top_k:
        if tensor:
            import torch

            top = torch.topk(scores, top_k).indices
        else:  # the top_k best, best first; equal scores in index order
            top = np.argsort(-scores, kind="stable")[:top_k]
        scores, boxes = scores[top], boxes[top]
    kept = nms(boxes, scores, nms_threshold)[:max_faces]
    return boxes[kept], scores[kept]
