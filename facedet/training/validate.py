"""Validation AP@0.5 during training, with inference's exact pre- and post-processing.

Each validation image is resized like :class:`facedet.inference.Detector`
does (area-preserving to the model's nominal pixel budget, INTER_LINEAR),
normalised, run through the model, post-processed by
:func:`facedet.detector.postprocess.detect_boxes` (score > 0.05 -- the
reference's CONF_THRESH for the QVGA models --, the 1000 best scores enter
NMS 0.3, at most 750 faces kept) and mapped back to original pixels.  The
score floor and pre-NMS cap keep validation fast early in training, when an
untrained model scores thousands of priors; they barely move AP@0.5.  AP is the COCO-style
101-point AP at IoU 0.5 of :mod:`facedet.evaluation.ap` (ignored faces neither
required nor penalised).

With ``pyramid=True`` (``facedet train``'s default) each image goes through
:meth:`facedet.inference.Detector.detect` with ``pyramid=True`` instead: the
same levels and merging NMS as ``facedet detect``, with the score floor and
pre-NMS cap above applied per level, so the best checkpoint is the best one for
the way the model is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from facedet.data.dataset import ValDataset, make_val_loader
from facedet.data.types import ImageAnnotation
from facedet.detector.postprocess import detect_boxes
from facedet.evaluation.ap import accumulate, coco_ap, match_image

__all__ = ["VAL_THRESHOLD", "validate_ap"]

VAL_THRESHOLD = 0.05
VAL_TOP_K = 1000
VAL_NMS = 0.3
VAL_MAX_FACES = 750


@torch.inference_mode()
def validate_ap(model, records: Sequence[ImageAnnotation], root, device: torch.device | str = "cpu", workers: int = 0, progress=None, pyramid: bool = False) -> float:
    """AP@0.5 of ``model`` on ``records`` (NaN if they hold no face).

    Args:
        model: an :class:`~facedet.detector.RNNPoolFace` (put in eval mode
            here and restored to its previous mode afterwards).
        records: validation annotations, ``file`` relative to ``root``.
        progress: optional callable wrapping the item iterator (e.g. a bar).
        pyramid: detect with ``facedet detect``'s image pyramid (``workers``
            is then unused: images are read in this process).
    """
    was_training = model.training
    model.eval()
    detections = _pyramid_detections(model, records, root, device, progress) if pyramid else _single_scale_detections(model, records, root, device, workers, progress)
    per_image, num_gt, thr = [], 0, np.array([0.5])
    try:
        for index, boxes, scores in detections:
            rec = records[index]
            num_gt += int((~rec.ignore).sum())
            per_image.append(match_image(boxes, scores, rec.boxes, rec.ignore, thr))
    finally:
        model.train(was_training)
    stats = accumulate(per_image, num_gt, thr)
    return coco_ap(stats.tp[0], stats.ignored[0], stats.num_gt)


def _single_scale_detections(model, records, root, device, workers, progress):
    """Yields ``(record index, boxes float64[N, 4] original pixels, scores [N])`` at the area-preserving scale."""
    spec = model.spec
    ds = ValDataset(records, root, spec.input_size, spec.in_channels, spec.mean_bgr, model.min_input_side())
    loader = make_val_loader(ds, workers)
    if progress is not None:
        loader = progress(loader, len(ds))
    priors_cache: dict[tuple[int, int], torch.Tensor] = {}
    for item in loader:
        x = item.x[None].to(device)
        key = (x.shape[2], x.shape[3])
        if key not in priors_cache:
            priors_cache[key] = model.priors(*key).to(device)
        conf, loc = model(x)
        boxes, scores = detect_boxes(conf[0], loc[0], priors_cache[key], threshold=VAL_THRESHOLD, nms_threshold=VAL_NMS, max_faces=VAL_MAX_FACES, variances=spec.variances, top_k=VAL_TOP_K)
        boxes = boxes.cpu().numpy().astype(np.float64)
        if len(boxes):
            boxes[:, 0::2] = np.clip(boxes[:, 0::2] / item.sx, 0, item.width)
            boxes[:, 1::2] = np.clip(boxes[:, 1::2] / item.sy, 0, item.height)
        yield item.index, boxes, scores.cpu().numpy()


def _pyramid_detections(model, records, root, device, progress):
    """The same as :func:`_single_scale_detections`, through ``Detector.detect(pyramid=True)``."""
    from facedet.data.dataset import load_image
    from facedet.inference import Detector

    det = Detector(model, device=str(device))
    items = range(len(records))
    if progress is not None:
        items = progress(items, len(records))
    for i in items:
        d = det.detect(load_image(Path(root) / records[i].file), threshold=VAL_THRESHOLD, nms_threshold=VAL_NMS, max_faces=VAL_MAX_FACES, pyramid=True, top_k=VAL_TOP_K)
        yield i, d.boxes.astype(np.float64), d.scores
