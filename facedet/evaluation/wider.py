"""The official WIDER FACE evaluation protocol, in NumPy.

This module re-implements the ``eval_tools`` MATLAB code (and its widely used
Python port) without MATLAB or Cython:

* ground truth is read from the official ``wider_face_val.mat`` (cell arrays
  ``event_list``, ``file_list``, ``face_bbx_list``) and the three subset files
  ``wider_{easy,medium,hard}_val.mat`` (cell array ``gt_list`` of 1-based
  indices of the faces that belong to the subset; every other face of the
  image is *ignored* in that subset);
* predictions are per-image text files ``P/<event>/<image>.txt``: line 1 the
  image name, line 2 the number of boxes, then one ``x y w h score`` line per
  box;
* scores are min-max normalised over the whole prediction set;
* per image, each prediction (in descending score order) is assigned to the
  ground-truth face it overlaps most; with IoU >= 0.5 under the "+1 pixel"
  convention (a box ``x y w h`` spans ``[x, x + w]`` and has width
  ``w + 1``), a prediction on an ignored face is dropped from the proposal
  count, a prediction on a kept face recalls it (once);
* 1000 score thresholds ``t_k = 1 - k/1000`` (k = 1..1000) give a PR curve,
  summed over images; images without any ground-truth face contribute nothing
  (not even false positives), exactly as in the official code;
* AP is the VOC area under the monotone precision envelope.

Where the official code is ill-defined we document the choice:

* the Python port walks the prediction file in file order and assumes it is
  sorted by score; the MATLAB ``read_pred`` sorts it.  We sort (stably, so
  ties keep file order), which equals both on sorted files;
* if every normalised score would be 0/0 (all scores equal), the port divides
  by zero; we give every prediction the normalised score 1;
* a subset with no faces at all has AP 0 (the port gives NaN).

The "+1" convention is :func:`facedet.boxes.box_iou`'s ``plus_one``; the rest
of facedet uses continuous ``xyxy`` boxes (see :mod:`facedet.boxes`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facedet.boxes import box_iou, xywh_to_xyxy
from facedet.errors import FacedetError

__all__ = [
    "SUBSETS",
    "THRESH_NUM",
    "WiderImage",
    "WiderGroundTruth",
    "WiderResult",
    "load_wider_gt",
    "read_wider_pred_file",
    "parse_wider_pred_text",
    "load_wider_predictions",
    "normalise_scores",
    "wider_iou",
    "voc_ap",
    "evaluate_wider_arrays",
    "evaluate_wider",
]

SUBSETS = ("easy", "medium", "hard")
THRESH_NUM = 1000
IOU_THRESH = 0.5


# --------------------------------------------------------------------------- ground truth


@dataclass
class WiderImage:
    """Ground truth of one WIDER image.

    Attributes:
        event: event folder name, e.g. ``"0--Parade"``.
        name: image name without extension, e.g. ``"0_Parade_marchingband_1_20"``.
        boxes: ``float64[M, 4]`` official ``x y w h`` (not our xyxy contract).
        keep: subset name -> ``bool[M]``; True for faces that belong to that
            subset, False for faces ignored in it.
    """

    event: str
    name: str
    boxes: np.ndarray
    keep: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class WiderGroundTruth:
    """All images of the official ground truth, in ``.mat`` order."""

    images: list[WiderImage]

    def key_index(self) -> dict[tuple[str, str], int]:
        """``(event, name) -> index`` into :attr:`images`."""
        return {(im.event, im.name): i for i, im in enumerate(self.images)}

    @property
    def events(self) -> list[str]:
        seen: dict[str, None] = {}
        for im in self.images:
            seen.setdefault(im.event, None)
        return list(seen)


def _loadmat(path: Path) -> dict:
    from scipy.io import loadmat

    if not path.is_file():
        raise FacedetError(f"{path}: ground-truth file not found")
    try:
        return loadmat(str(path))
    except Exception as exc:  # scipy raises many types for corrupt files
        raise FacedetError(f"{path}: not a readable MATLAB .mat file ({exc})") from None


def _cells(value, path: Path, what: str) -> list:
    """Flatten a MATLAB cell array (object ndarray, any shape) to a list."""
    if not isinstance(value, np.ndarray) or value.dtype != object:
        raise FacedetError(f"{path}: '{what}' is not a cell array")
    return list(value.reshape(-1, order="F"))


def _string(value, path: Path, what: str) -> str:
    """A MATLAB char array as loaded by scipy (``array(['name'])``) -> str."""
    v = value
    while isinstance(v, np.ndarray):
        if v.size != 1:
            raise FacedetError(f"{path}: '{what}' is not a string")
        v = v.reshape(-1)[0]
    if not isinstance(v, str):
        raise FacedetError(f"{path}: '{what}' is not a string")
    return v


def _numeric(value, path: Path, what: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iufb":
        raise FacedetError(f"{path}: '{what}' is not a numeric array")
    return value.astype(np.float64)


def load_wider_gt(gt_dir: str | Path) -> WiderGroundTruth:
    """Read the official ``eval_tools/ground_truth`` folder.

    Args:
        gt_dir: folder holding ``wider_face_val.mat`` and
            ``wider_{easy,medium,hard}_val.mat``.
    Returns:
        :class:`WiderGroundTruth` with one :class:`WiderImage` per image.
    Raises:
        FacedetError: a file is missing, unreadable or not structured like
            the official files (the message names the file and the entry).
    """
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise FacedetError(f"{gt_dir}: ground-truth folder not found")
    main_path = gt_dir / "wider_face_val.mat"
    mat = _loadmat(main_path)
    for key in ("event_list", "file_list", "face_bbx_list"):
        if key not in mat:
            raise FacedetError(f"{main_path}: missing variable '{key}'")
    events = [_string(e, main_path, f"event_list{{{i + 1}}}") for i, e in enumerate(_cells(mat["event_list"], main_path, "event_list"))]
    files = _cells(mat["file_list"], main_path, "file_list")
    bbxs = _cells(mat["face_bbx_list"], main_path, "face_bbx_list")
    if not (len(events) == len(files) == len(bbxs)):
        raise FacedetError(f"{main_path}: event_list, file_list and face_bbx_list have different lengths")

    images: list[WiderImage] = []
    per_event: list[list[int]] = []
    for i, (event, flist, blist) in enumerate(zip(events, files, bbxs)):
        names = _cells(flist, main_path, f"file_list{{{i + 1}}}")
        boxes = _cells(blist, main_path, f"face_bbx_list{{{i + 1}}}")
        if len(names) != len(boxes):
            raise FacedetError(f"{main_path}: file_list{{{i + 1}}} and face_bbx_list{{{i + 1}}} have different lengths")
        idx = []
        for j, (n, b) in enumerate(zip(names, boxes)):
            where = f"face_bbx_list{{{i + 1}}}{{{j + 1}}}"
            arr = _numeric(b, main_path, where)
            if arr.size == 0:
                arr = np.zeros((0, 4))
            if arr.ndim != 2 or arr.shape[1] != 4:
                raise FacedetError(f"{main_path}: {where} has shape {arr.shape}, expected [N, 4]")
            idx.append(len(images))
            images.append(WiderImage(event, _string(n, main_path, f"file_list{{{i + 1}}}{{{j + 1}}}"), arr))
        per_event.append(idx)

    for subset in SUBSETS:
        path = gt_dir / f"wider_{subset}_val.mat"
        sub = _loadmat(path)
        if "gt_list" not in sub:
            raise FacedetError(f"{path}: missing variable 'gt_list'")
        gl = _cells(sub["gt_list"], path, "gt_list")
        if len(gl) != len(events):
            raise FacedetError(f"{path}: gt_list has {len(gl)} events, wider_face_val.mat has {len(events)}")
        for i, ev in enumerate(gl):
            lists = _cells(ev, path, f"gt_list{{{i + 1}}}")
            if len(lists) != len(per_event[i]):
                raise FacedetError(f"{path}: gt_list{{{i + 1}}} has {len(lists)} images, wider_face_val.mat has {len(per_event[i])}")
            for j, (k, ii) in enumerate(zip(lists, per_event[i])):
                where = f"gt_list{{{i + 1}}}{{{j + 1}}}"
                arr = _numeric(k, path, where).reshape(-1)
                im = images[ii]
                m = len(im.boxes)
                if arr.size and (np.any(arr != np.round(arr)) or arr.min() < 1 or arr.max() > m):
                    raise FacedetError(f"{path}: {where} holds face indices outside 1..{m}")
                keep = np.zeros(m, dtype=bool)
                keep[arr.astype(np.int64) - 1] = True
                im.keep[subset] = keep
    return WiderGroundTruth(images)


# --------------------------------------------------------------------------- predictions


def parse_wider_pred_text(text: str, source: str) -> np.ndarray:
    """Parse one official prediction file.

    Args:
        text: file content (line 1 image name, line 2 count, then
            ``x y w h score`` lines; trailing blank lines are allowed).
        source: file name used in error messages.
    Returns:
        ``float64[N, 5]`` rows ``x, y, w, h, score`` in file order.
    Raises:
        FacedetError: ``source:line: problem`` for a missing/incorrect count
            line, a non-numeric or non-finite field, a line without exactly
            five fields, or a negative width/height.
    """
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or not lines[0].strip():
        raise FacedetError(f"{source}:1: missing image name line")
    if len(lines) < 2:
        raise FacedetError(f"{source}:2: missing box count line")
    count_s = lines[1].strip()
    try:
        count = int(count_s)
    except ValueError:
        raise FacedetError(f"{source}:2: box count {count_s!r} is not an integer") from None
    body = lines[2:]
    if count < 0 or count != len(body):
        raise FacedetError(f"{source}:2: box count says {count} but the file has {len(body)} box lines")
    if count == 0:
        return np.zeros((0, 5), dtype=np.float64)
    # Fast path: one vectorised conversion; on any failure fall back to a
    # line-by-line parse that names the offending line.
    try:
        rows = [ln.split() for ln in body]
        if all(len(r) == 5 for r in rows):
            arr = np.array(rows, dtype=np.float64)
            if np.isfinite(arr).all() and (arr[:, 2:4] >= 0).all():
                return arr
    except ValueError:
        pass
    out = np.empty((count, 5), dtype=np.float64)
    for k, ln in enumerate(body):
        lineno = k + 3
        fields = ln.split()
        if len(fields) != 5:
            raise FacedetError(f"{source}:{lineno}: expected 5 fields 'x y w h score', got {len(fields)}")
        for c, f in enumerate(fields):
            try:
                v = float(f)
            except ValueError:
                raise FacedetError(f"{source}:{lineno}: field {c + 1} {f!r} is not a number") from None
            if not math.isfinite(v):
                raise FacedetError(f"{source}:{lineno}: field {c + 1} {f!r} is not finite")
            out[k, c] = v
        if out[k, 2] < 0 or out[k, 3] < 0:
            raise FacedetError(f"{source}:{lineno}: negative box width or height")
    return out


def read_wider_pred_file(path: str | Path) -> np.ndarray:
    """Read ``P/<event>/<image>.txt``; see :func:`parse_wider_pred_text`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FacedetError(f"{path}:1: not a text file") from None
    return parse_wider_pred_text(text, str(path))


def load_wider_predictions(pred_dir: str | Path, gt: WiderGroundTruth) -> tuple[dict[tuple[str, str], np.ndarray], int]:
    """Read every prediction file of ``pred_dir`` that the ground truth expects.

    Files are looked up by path (``<event>/<name>.txt``), like the official
    MATLAB ``read_pred``; line 1 is not interpreted.

    Args:
        pred_dir: folder ``P`` with ``P/<event>/<name>.txt``.
        gt: the ground truth (defines which files are expected).
    Returns:
        ``(preds, missing)``: ``(event, name) -> float64[N, 5]`` for each file
        found, and the number of ground-truth images without a file.
    Raises:
        FacedetError: the folder is missing or holds no ``.txt`` file at all, a
            file is malformed, or a file names an image that is not in the
            ground truth.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise FacedetError(f"{pred_dir}: prediction folder not found")
    expected = gt.key_index()
    found: dict[tuple[str, str], Path] = {}
    for root, _dirs, fnames in os.walk(pred_dir):
        for fn in fnames:
            if not fn.endswith(".txt"):
                continue
            p = Path(root) / fn
            rel = p.relative_to(pred_dir)
            if len(rel.parts) != 2:
                raise FacedetError(f"{p}: prediction files must be at <pred-dir>/<event>/<image>.txt")
            key = (rel.parts[0], p.stem)
            if key not in expected:
                raise FacedetError(f"{p}: image {rel.parts[0]}/{p.stem} is not in the ground truth")
            found[key] = p
    if not found:
        raise FacedetError(f"{pred_dir}: no prediction files (<event>/<image>.txt) found")
    preds = {key: read_wider_pred_file(p) for key, p in sorted(found.items())}
    return preds, len(expected) - len(found)


# --------------------------------------------------------------------------- protocol


def normalise_scores(preds: dict) -> dict:
    """Min-max normalise the scores of a whole prediction set, like the official code.

    The official ``norm_score`` starts from ``max = 0`` and ``min = 1``, so the
    range always includes ``[min(scores), 1]`` and ``[0, max(scores)]``
    clipped as such; we reproduce that.  If the range is empty (every score
    equal to 0 or every score equal to 1), every score becomes 1.

    Args:
        preds: key -> ``float64[N, 5]``.
    Returns:
        a new dict with copies whose column 4 is normalised.
    """
    non_empty = [v for v in preds.values() if len(v)]
    out = {k: v.copy() for k, v in preds.items()}
    if not non_empty:
        return out
    max_score = max(0.0, max(float(v[:, 4].max()) for v in non_empty))
    min_score = min(1.0, min(float(v[:, 4].min()) for v in non_empty))
    diff = max_score - min_score
    for v in out.values():
        if len(v):
            v[:, 4] = (v[:, 4] - min_score) / diff if diff > 0 else 1.0
    return out


def wider_iou(pred_xywh: np.ndarray, gt_xywh: np.ndarray) -> np.ndarray:
    """Pairwise IoU with the WIDER "+1 pixel" convention.

    A box ``x y w h`` spans ``x1 = x``, ``x2 = x + w`` and its width is
    ``x2 - x1 + 1``; the intersection width is ``min(x2) - max(x1) + 1`` and
    counts only when positive (same for heights).  Computed in float64 with
    the official operation order, so values on the 0.5 threshold compare
    exactly as they do in the official code.

    Args:
        pred_xywh: ``[N, 4]``.
        gt_xywh: ``[M, 4]``.
    Returns:
        ``float64[N, M]``.
    """
    p = xywh_to_xyxy(np.asarray(pred_xywh, dtype=np.float64).reshape(-1, 4))
    g = xywh_to_xyxy(np.asarray(gt_xywh, dtype=np.float64).reshape(-1, 4))
    return box_iou(p, g, plus_one=True)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC area under the monotone precision envelope (the official ``voc_ap``).

    Args:
        recall: ``float[K]``, non-decreasing.
        precision: ``float[K]``; NaN marks points without any proposal (they
            only ever occur where recall is 0 and do not change the area).
    Returns:
        the AP.
    """
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], np.nan_to_num(precision, nan=0.0), [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


@dataclass
class WiderResult:
    """Result of the WIDER protocol.

    Attributes:
        ap: subset -> AP in [0, 1].
        thresholds: ``float64[1000]`` the normalised-score thresholds.
        precision: subset -> ``float64[1000]`` (NaN where no proposal passes).
        recall: subset -> ``float64[1000]``.
        faces: subset -> number of faces in the subset.
        images: number of ground-truth images.
        missing: number of ground-truth images without a prediction file.
    """

    ap: dict[str, float]
    thresholds: np.ndarray
    precision: dict[str, np.ndarray]
    recall: dict[str, np.ndarray]
    faces: dict[str, int]
    images: int
    missing: int = 0

    def to_json(self) -> dict:
        """JSON-ready dict: ``easy``/``medium``/``hard`` APs plus PR curves."""

        def clean(a):
            return [None if not np.isfinite(x) else round(float(x), 6) for x in a]

        out: dict = {s: self.ap[s] for s in SUBSETS}
        out["protocol"] = "wider-face"
        out["iou_threshold"] = IOU_THRESH
        out["images"] = self.images
        out["images_without_predictions"] = self.missing
        out["faces"] = dict(self.faces)
        out["curves"] = {
            s: {"threshold": clean(self.thresholds), "precision": clean(self.precision[s]), "recall": clean(self.recall[s])}
            for s in SUBSETS
        }
        return out


def _sorted_by_score(pred: np.ndarray) -> np.ndarray:
    if len(pred) < 2:
        return pred
    order = np.argsort(-pred[:, 4], kind="stable")
    return pred[order]


def evaluate_wider_arrays(preds: dict[tuple[str, str], np.ndarray], gt: WiderGroundTruth, *, missing: int | None = None) -> WiderResult:
    """Score in-memory predictions with the official protocol.

    Args:
        preds: ``(event, name) -> float64[N, 5]`` (``x y w h score``, raw
            scores, any order); images absent from the dict have no detection.
        gt: the ground truth.
        missing: reported count of images without predictions (default:
            computed from ``preds``).
    Returns:
        :class:`WiderResult`.
    """
    index = gt.key_index()
    for key in preds:
        if key not in index:
            raise FacedetError(f"predictions for {key[0]}/{key[1]} which is not in the ground truth")
    normed = normalise_scores(preds)
    thresholds = 1 - np.arange(1, THRESH_NUM + 1) / THRESH_NUM

    # Pass 1 (subset independent): each prediction's best face, if IoU >= 0.5.
    scores_l, img_l, match_l = [], [], []
    gt_offset = 0
    gt_offsets = np.zeros(len(gt.images), dtype=np.int64)
    for i, im in enumerate(gt.images):
        gt_offsets[i] = gt_offset
        m = len(im.boxes)
        gt_offset += m
        p = normed.get((im.event, im.name))
        if p is None or len(p) == 0 or m == 0:
            continue  # the official code skips these images entirely
        p = _sorted_by_score(p)
        iou = wider_iou(p[:, :4], im.boxes)
        best = iou.argmax(axis=1)  # first maximum, like MATLAB max / numpy argmax
        ok = iou[np.arange(len(p)), best] >= IOU_THRESH
        scores_l.append(p[:, 4])
        match_l.append(np.where(ok, best + gt_offsets[i], -1))
        img_l.append(np.full(len(p), i))
    if scores_l:
        scores = np.concatenate(scores_l)
        match = np.concatenate(match_l)
    else:
        scores = np.zeros(0)
        match = np.zeros(0, dtype=np.int64)

    # "score >= t" for each prediction, as a count per threshold: the number of
    # thresholds a score passes is the number of t_k <= score.
    asc = thresholds[::-1]  # ascending
    passes = np.searchsorted(asc, scores, side="right")  # how many thresholds pass

    result_prec, result_rec, aps, faces = {}, {}, {}, {}
    for subset in SUBSETS:
        keep_all = np.concatenate([im.keep[subset] for im in gt.images]) if gt.images else np.zeros(0, bool)
        count_face = int(keep_all.sum())
        matched = match >= 0
        on_ignored = matched & ~keep_all[np.where(matched, match, 0)] if len(match) else matched
        proposal = ~on_ignored
        on_kept = matched & ~on_ignored
        # A kept face is recalled by the first (highest ranked) prediction on it.
        first = np.zeros(len(match), dtype=bool)
        if on_kept.any():
            idx = np.nonzero(on_kept)[0]
            _, first_pos = np.unique(match[idx], return_index=True)
            first[idx[first_pos]] = True
        # Per threshold k (0-based, t_k = 1 - (k+1)/1000): predictions with
        # score >= t_k are those with passes >= 1000 - k.
        prop_hist = np.bincount(passes[proposal], minlength=THRESH_NUM + 1)
        rec_hist = np.bincount(passes[first], minlength=THRESH_NUM + 1)
        # count(passes >= j) for j = 1000..1  -> thresholds k = 0..999
        prop_cnt = np.cumsum(prop_hist[::-1])[:THRESH_NUM].astype(np.float64)
        rec_cnt = np.cumsum(rec_hist[::-1])[:THRESH_NUM].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(prop_cnt > 0, rec_cnt / np.where(prop_cnt > 0, prop_cnt, 1), np.nan)
        recall = rec_cnt / count_face if count_face else np.zeros(THRESH_NUM)
        result_prec[subset] = precision
        result_rec[subset] = recall
        aps[subset] = voc_ap(recall, precision) if count_face else 0.0
        faces[subset] = count_face
    if missing is None:
        missing = sum(1 for im in gt.images if (im.event, im.name) not in preds)
    return WiderResult(aps, thresholds, result_prec, result_rec, faces, len(gt.images), missing)


def evaluate_wider(pred_dir: str | Path, gt_dir: str | Path, *, on_missing=None) -> WiderResult:
    """Score a prediction folder against the official ground truth.

    Args:
        pred_dir: ``P/<event>/<image>.txt`` files.
        gt_dir: folder with the four official ``.mat`` files.
        on_missing: optional callback ``f(n_missing, n_images)`` called when
            some ground-truth images have no prediction file (they count as
            images without detections).
    Returns:
        :class:`WiderResult`.
    """
    gt = load_wider_gt(gt_dir)
    preds, missing = load_wider_predictions(pred_dir, gt)
    if missing and on_missing is not None:
        on_missing(missing, len(gt.images))
    return evaluate_wider_arrays(preds, gt, missing=missing)
