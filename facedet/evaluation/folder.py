"""Evaluation on any annotated image folder (PASCAL VOC XML or the generic JSON).

``--annotations`` is either

* a generic-format JSON file (:mod:`facedet.data.generic`): exactly the images
  it lists are evaluated, ``file`` relative to ``--images``; or
* a folder of VOC XML files (:mod:`facedet.data.voc`), one per image.  An XML
  belongs to ``<images>/<filename>`` when that file exists, else to the image
  with the XML's stem in the same relative sub-folder (``a/b.xml`` ->
  ``<images>/a/b.jpg``, any image suffix).  Every image under ``--images``
  that no XML claims is a negative (no face), since VOC sets usually omit
  files for empty images.

Predictions for image ``<file>`` live in ``<pred-dir>/<file minus suffix>.txt``
in the official WIDER per-image format (``x y w h score``, continuous pixels:
``x2 = x + w``).  Missing prediction files count as images without detections.

Metrics (:mod:`facedet.evaluation.ap`): AP@0.5 and AP@[0.5:0.95] (COCO
101-point), plus precision / recall / F1 at IoU 0.5 among detections scoring at
least an operating threshold.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from facedet.data.types import ImageAnnotation
from facedet.errors import FacedetError
from facedet.evaluation.ap import COCO_IOUS, accumulate, coco_ap, match_image, pr_points
from facedet.evaluation.wider import parse_wider_pred_text
from facedet.imageio import IMAGE_SUFFIXES

__all__ = ["FolderResult", "load_folder_annotations", "read_folder_predictions", "prediction_path", "evaluate_folder"]

def _images_under(images_dir: Path) -> list[str]:
    out = []
    for root, _dirs, files in os.walk(images_dir):
        for f in files:
            if Path(f).suffix.lower() in IMAGE_SUFFIXES:
                out.append((Path(root) / f).relative_to(images_dir).as_posix())
    return sorted(out)


def load_folder_annotations(
    images_dir: str | Path,
    annotations: str | Path,
    *,
    classes: Iterable[str] | None = None,
    voc_one_based: bool = True,
) -> tuple[list[ImageAnnotation], int]:
    """Ground truth of an annotated folder, with ``file`` relative to ``images_dir``.

    Args:
        images_dir: image root.
        annotations: generic JSON file, or folder of VOC XML files.
        classes: VOC class names to keep (None: all objects).
        voc_one_based: VOC coordinate convention (see :mod:`facedet.data.voc`).
    Returns:
        ``(annotations, unannotated)``: one record per evaluated image, sorted by
        file, and how many of them are images without an annotation file
        (VOC only; counted as negatives).
    Raises:
        FacedetError: missing folders/files, malformed annotations, an image
            listed but absent, or two annotations for one image.
    """
    from facedet.data.generic import read_generic
    from facedet.data.voc import read_voc_xml

    images_dir = Path(images_dir)
    annotations = Path(annotations)
    if not images_dir.is_dir():
        raise FacedetError(f"{images_dir}: images folder not found")
    if annotations.is_dir():
        on_disk = _images_under(images_dir)
        by_stem: dict[tuple[str, str], list[str]] = {}
        for f in on_disk:
            p = Path(f)
            by_stem.setdefault((p.parent.as_posix(), p.stem), []).append(f)
        xmls = sorted(annotations.rglob("*.xml"))
        if not xmls:
            raise FacedetError(f"{annotations}: no .xml annotation files found")
        claimed: dict[str, Path] = {}
        records = []
        for x in xmls:
            ann = read_voc_xml(x, classes=classes, one_based=voc_one_based)
            rel = x.relative_to(annotations)
            fname = ann.file
            file = None
            for cand in (Path(rel.parent, fname).as_posix() if fname else None, fname):
                if cand and (images_dir / cand).is_file():
                    file = Path(cand).as_posix()
                    break
            if file is None:
                hits = by_stem.get((rel.parent.as_posix(), rel.stem), [])
                if len(hits) > 1:
                    raise FacedetError(f"{x}: several images match its name: {', '.join(hits)}")
                if not hits:
                    raise FacedetError(f"{x}: image {fname!r} not found under {images_dir}")
                file = hits[0]
            file = os.path.normpath(file).replace(os.sep, "/")
            if file in claimed:
                raise FacedetError(f"{x}: image {file} is already annotated by {claimed[file]}")
            claimed[file] = x
            ann.file = file
            records.append(ann)
        negatives = [ImageAnnotation(file=f) for f in on_disk if f not in claimed]
        records.extend(negatives)
        records.sort(key=lambda a: a.file)
        return records, len(negatives)
    if not annotations.is_file():
        raise FacedetError(f"{annotations}: annotation file or folder not found")
    records = read_generic(annotations)
    missing = [a.file for a in records if not (images_dir / a.file).is_file()]
    if missing:
        raise FacedetError(f"{annotations}: {len(missing)} listed image(s) not found under {images_dir}, first: {missing[0]}")
    return sorted(records, key=lambda a: a.file), 0


def prediction_path(pred_dir: str | Path, file: str) -> Path:
    """``<pred_dir>/<file minus suffix>.txt``."""
    return Path(pred_dir) / Path(file).with_suffix(".txt")


def read_folder_predictions(pred_dir: str | Path, annotations: list[ImageAnnotation]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int]:
    """Read the prediction files of an annotated folder.

    Returns:
        ``(preds, missing)``: ``file -> (boxes float64[N, 4] xyxy, scores
        float64[N])`` and the number of images without a prediction file.
    Raises:
        FacedetError: no prediction file at all, a malformed file, or a file
            for an image that is not evaluated.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise FacedetError(f"{pred_dir}: prediction folder not found")
    expected = {prediction_path(pred_dir, a.file): a.file for a in annotations}
    found = 0
    for root, _dirs, files in os.walk(pred_dir):
        for f in files:
            if f.endswith(".txt"):
                p = Path(root) / f
                if p not in expected:
                    raise FacedetError(f"{p}: prediction for an image that is not in the annotations")
                found += 1
    if not found:
        raise FacedetError(f"{pred_dir}: no prediction files found")
    preds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for p, file in expected.items():
        if p.is_file():
            a = parse_wider_pred_text(p.read_text(encoding="utf-8"), str(p))
            boxes = a[:, :4].copy()
            boxes[:, 2:] += boxes[:, :2]
            preds[file] = (boxes, a[:, 4].copy())
    return preds, len(expected) - len(preds)


@dataclass
class FolderResult:
    """Metrics of one annotated folder.

    Attributes:
        ap50: AP at IoU 0.5 (NaN when there is no non-ignored face).
        ap50_95: mean AP over IoU 0.50:0.05:0.95.
        ap_per_iou: IoU -> AP.
        threshold: operating score threshold of ``precision``/``recall``.
        precision, recall, f1: at IoU 0.5 among detections with score > threshold
            (strictly, as ``facedet detect -t`` reports faces).
        tp, fp: counts at that operating point (IoU 0.5).
        images, negatives, faces, ignored_faces, detections: set sizes.
        curve_recall, curve_precision, curve_score: ``float64[K]`` PR curve at
            IoU 0.5 (one point per non-ignored detection, descending score).
    """

    ap50: float
    ap50_95: float
    ap_per_iou: dict[float, float]
    threshold: float
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    images: int
    negatives: int
    faces: int
    ignored_faces: int
    detections: int
    curve_recall: np.ndarray
    curve_precision: np.ndarray
    curve_score: np.ndarray
    missing: int = 0
    unannotated: int = 0

    def to_json(self, max_curve_points: int = 1000) -> dict:
        """JSON-ready dict (NaN -> null; the curve thinned to ``max_curve_points``)."""

        def f(x):
            return None if not np.isfinite(x) else round(float(x), 6)

        n = len(self.curve_recall)
        idx = np.unique(np.linspace(0, n - 1, min(n, max_curve_points)).round().astype(int)) if n else np.zeros(0, int)
        return {
            "protocol": "folder",
            "ap50": f(self.ap50),
            "ap50_95": f(self.ap50_95),
            "ap_per_iou": {f"{k:.2f}": f(v) for k, v in self.ap_per_iou.items()},
            "threshold": self.threshold,
            "precision": f(self.precision),
            "recall": f(self.recall),
            "f1": f(self.f1),
            "tp": self.tp,
            "fp": self.fp,
            "images": self.images,
            "negative_images": self.negatives,
            "images_without_annotation_file": self.unannotated,
            "images_without_predictions": self.missing,
            "faces": self.faces,
            "ignored_faces": self.ignored_faces,
            "detections": self.detections,
            "curve": {
                "recall": [f(v) for v in self.curve_recall[idx]],
                "precision": [f(v) for v in self.curve_precision[idx]],
                "score": [f(v) for v in self.curve_score[idx]],
            },
        }


def evaluate_folder(
    annotations: list[ImageAnnotation],
    predictions: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    threshold: float = 0.5,
    missing: int | None = None,
    unannotated: int = 0,
) -> FolderResult:
    """Score predictions against annotations.

    Args:
        annotations: ground truth; ``file`` is the key into ``predictions``.
        predictions: ``file -> (boxes [N, 4] xyxy, scores [N])``; absent files
            have no detection.
        threshold: operating score threshold for precision / recall / F1.
    Returns:
        :class:`FolderResult`.
    Raises:
        FacedetError: a prediction key that is not an annotated file.
    """
    files = {a.file for a in annotations}
    for k in predictions:
        if k not in files:
            raise FacedetError(f"predictions for {k} which is not in the annotations")
    per_image = []
    num_gt = 0
    ignored = 0
    negatives = 0
    for a in annotations:
        num_gt += int((~a.ignore).sum())
        ignored += int(a.ignore.sum())
        negatives += int(len(a.boxes) == 0)
        boxes, scores = predictions.get(a.file, (np.zeros((0, 4)), np.zeros(0)))
        per_image.append(match_image(boxes, scores, a.boxes, a.ignore, COCO_IOUS))
    stats = accumulate(per_image, num_gt, COCO_IOUS)
    aps = {float(t): coco_ap(stats.tp[k], stats.ignored[k], num_gt) for k, t in enumerate(COCO_IOUS)}
    ap50 = aps[0.5]
    ap50_95 = float(np.mean(list(aps.values()))) if num_gt else float("nan")
    keep = ~stats.ignored[0]
    sel = keep & (stats.scores > threshold)
    tp = int(stats.tp[0][sel].sum())
    fp = int(sel.sum()) - tp
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / num_gt if num_gt else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if tp else (0.0 if num_gt else float("nan"))
    if num_gt:
        cr, cp = pr_points(stats.tp[0], stats.ignored[0], num_gt)
    else:
        cr = cp = np.zeros(0)
    if missing is None:
        missing = sum(1 for a in annotations if a.file not in predictions)
    return FolderResult(
        ap50=ap50,
        ap50_95=ap50_95,
        ap_per_iou=aps,
        threshold=threshold,
        precision=precision,
        recall=recall,
        f1=f1,
        tp=tp,
        fp=fp,
        images=len(annotations),
        negatives=negatives,
        faces=num_gt,
        ignored_faces=ignored,
        detections=int(keep.sum()),
        curve_recall=cr,
        curve_precision=cp,
        curve_score=stats.scores[keep] if num_gt else np.zeros(0),
        missing=missing,
        unannotated=unannotated,
    )
