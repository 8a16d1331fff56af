"""Running a detector over an evaluation set and writing prediction files.

Two test-time protocols:

* ``pyramid`` (the default): what ``facedet detect`` runs by default, see
  :func:`pyramid_detect`;
* ``single``: one pass with the detector's area-preserving default resize
  (``s = sqrt(Ht*Wt / (H*W))``, the model's pixel budget; Saha et al.,
  NeurIPS 2020, test protocol);
* ``multiscale``: the S3FD test protocol (Zhang et al., ICCV 2017, as in the
  RNNPool reference code's ``wider_test.py``), see :func:`multiscale_detect`,
  followed by box voting (:func:`bbox_vote`).  Unlike the reference code,
  voting *keeps* groups made of a single box (the reference drops them, and
  crashes when nothing at all merges); a face seen at one scale only is still
  a detection.  docs/evaluation.md describes every pass.

Prediction files use the official WIDER format (:func:`facedet.outputs.format_wider_txt`).
Runs are resumable: an item whose prediction file exists is skipped unless
``force``.  Files are written atomically, so an interrupted run leaves no
half-written file behind.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from facedet.boxes import box_iou
from facedet.errors import FacedetError
from facedet.imageio import IMAGE_SUFFIXES
from facedet.inference import DEFAULT_MAX_FACES, DEFAULT_NMS_THRESHOLD

__all__ = [
    "MODES",
    "RunItem",
    "RunStats",
    "multiscale_schedule",
    "multiscale_detect",
    "pyramid_detect",
    "single_detect",
    "flip_boxes",
    "bbox_vote",
    "run_detector",
    "wider_items",
]

MODES = ("single", "multiscale", "pyramid")
DEFAULT_MODE = "pyramid"  # evaluate what `facedet detect` runs
EVAL_THRESHOLD = 0.01  # evaluation keeps the low-score tail that AP needs
S3FD_MAX_AREA = 1700 * 1200
VOTE_IOU = 0.3
MAX_FACES = DEFAULT_MAX_FACES


class _DetectorLike(Protocol):  # what the runner needs from facedet.inference.Detector
    def detect(self, image_bgr: np.ndarray, *, threshold: float = ..., nms_threshold: float = ..., max_faces: int = ..., scale: float | None = ..., pyramid: bool = ...): ...


# --------------------------------------------------------------------------- multiscale protocol


def _wh1(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Widths and heights with the reference's +1 (``x2 - x1 + 1``)."""
    return boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1


def multiscale_schedule(height: int, width: int) -> dict:
    """The scales the S3FD protocol uses for an image of this size.

    Returns:
        ``{"m", "s0", "shrink", "enlarge": [scales...], "enlarge_keeps_small": bool}``
        where ``m = sqrt(1700*1200 / (H*W))``; ``s0 = min(m, 1)`` is used for the
        plain and the flipped pass; the shrink pass keeps boxes whose larger
        side (+1) exceeds 30; the enlarge passes keep boxes whose smaller side
        (+1) is under 100 if ``enlarge_keeps_small`` (the last enlarge factor
        exceeds 1), else boxes whose larger side (+1) exceeds 30.
    """
    m = math.sqrt(S3FD_MAX_AREA / float(height * width))
    s0 = min(m, 1.0)
    st = 0.5 if m >= 0.75 else 0.5 * m
    bt = min(2.0, m) if m > 1 else (st + m) / 2
    enlarge = [bt]
    if m > 2:
        bt *= 2
        while bt < m:
            enlarge.append(bt)
            bt *= 2
        enlarge.append(m)
    return {"m": m, "s0": s0, "shrink": st, "enlarge": enlarge, "enlarge_keeps_small": bt > 1}


def flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Map xyxy boxes found on a horizontally flipped image back: ``x -> W - x``.

    Args:
        boxes: ``[N, 4]`` xyxy on the flipped image.
        width: image width ``W``.
    Returns:
        ``[N, 4]`` xyxy on the original image (``x1' = W - x2``, ``x2' = W - x1``).
    """
    out = np.array(boxes, dtype=np.float32, copy=True).reshape(-1, 4)
    out[:, 0] = width - boxes[:, 2]
    out[:, 2] = width - boxes[:, 0]
    return out


def _det_array(d) -> np.ndarray:
    """Detections -> ``float64[N, 5]`` rows ``x1 y1 x2 y2 score``."""
    b = np.asarray(d.boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(d.scores, dtype=np.float64).reshape(-1, 1)
    return np.hstack([b, s])


def bbox_vote(dets: np.ndarray, iou_threshold: float = VOTE_IOU, max_out: int = MAX_FACES) -> np.ndarray:
    """S3FD box voting, keeping single-box groups.

    Repeatedly take the highest-scoring remaining box, group it with every
    remaining box whose IoU with it (+1-pixel convention) is >= the threshold,
    remove the group, and output the score-weighted mean of the group's
    coordinates with the group's maximum score.  A group of one box is output
    as it is (the reference drops it: documented deviation).  Boxes are visited
    in descending score order, ties in input order.

    Args:
        dets: ``float[N, 5]`` rows ``x1 y1 x2 y2 score``.
    Returns:
        ``float64[K, 5]`` with ``K <= max_out``, descending score.
    """
    dets = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
    if len(dets) == 0:
        return np.zeros((0, 5))
    dets = dets[np.argsort(-dets[:, 4], kind="stable")]
    out = []
    while len(dets) and len(out) < max_out:
        iou = box_iou(dets[:1, :4], dets[:, :4], plus_one=True)[0]
        group = iou >= iou_threshold
        group[0] = True
        g = dets[group]
        dets = dets[~group]
        wsum = g[:, 4].sum()
        coords = (g[:, :4] * g[:, 4:5]).sum(axis=0) / wsum if wsum > 0 else g[:, :4].mean(axis=0)
        out.append(np.append(coords, g[:, 4].max()))
    return np.asarray(out, dtype=np.float64).reshape(-1, 5)


def multiscale_detect(detector: _DetectorLike, image: np.ndarray, *, threshold: float = EVAL_THRESHOLD, nms_threshold: float = DEFAULT_NMS_THRESHOLD, max_faces: int = MAX_FACES) -> tuple[np.ndarray, np.ndarray]:
    """The S3FD multi-scale + flip + box-voting test (docs/evaluation.md, ``--mode multiscale``).

    Passes (``m = sqrt(1700*1200/(H*W))``): the image and its mirror at
    ``s0 = min(m, 1)``; a shrink pass (keeps larger side + 1 > 30); one or more
    enlarge passes (see :func:`multiscale_schedule`); then :func:`bbox_vote`.

    Args:
        detector: anything with ``detect(image, *, threshold, nms_threshold,
            max_faces, scale)`` returning ``.boxes`` xyxy in original pixels
            and ``.scores``.
        image: ``uint8[H, W, 3]`` BGR.
    Returns:
        ``(boxes float32[K, 4] xyxy, scores float32[K])``, descending score.
    """
    h, w = image.shape[:2]
    sch = multiscale_schedule(h, w)
    kw = dict(threshold=threshold, nms_threshold=nms_threshold, max_faces=max_faces)
    parts = [_det_array(detector.detect(image, scale=sch["s0"], **kw))]
    flipped = np.ascontiguousarray(image[:, ::-1])
    f = _det_array(detector.detect(flipped, scale=sch["s0"], **kw))
    if len(f):
        f[:, :4] = flip_boxes(f[:, :4], w)
    parts.append(f)
    s = _det_array(detector.detect(image, scale=sch["shrink"], **kw))
    bw, bh = _wh1(s)
    parts.append(s[np.maximum(bw, bh) > 30])
    b = np.vstack([_det_array(detector.detect(image, scale=sc, **kw)) for sc in sch["enlarge"]])
    bw, bh = _wh1(b)
    parts.append(b[np.minimum(bw, bh) < 100] if sch["enlarge_keeps_small"] else b[np.maximum(bw, bh) > 30])
    voted = bbox_vote(np.vstack(parts), VOTE_IOU, max_faces)
    return voted[:, :4].astype(np.float32), voted[:, 4].astype(np.float32)


def single_detect(detector: _DetectorLike, image: np.ndarray, *, threshold: float = EVAL_THRESHOLD, nms_threshold: float = DEFAULT_NMS_THRESHOLD, max_faces: int = MAX_FACES) -> tuple[np.ndarray, np.ndarray]:
    """One pass at the detector's default area-preserving scale (the RNNPool paper's test)."""
    return _as_arrays(detector.detect(image, threshold=threshold, nms_threshold=nms_threshold, max_faces=max_faces, scale=None))


def pyramid_detect(detector: _DetectorLike, image: np.ndarray, *, threshold: float = EVAL_THRESHOLD, nms_threshold: float = DEFAULT_NMS_THRESHOLD, max_faces: int = MAX_FACES) -> tuple[np.ndarray, np.ndarray]:
    """What ``facedet detect`` runs: :meth:`facedet.inference.Detector.detect` with its image pyramid."""
    return _as_arrays(detector.detect(image, threshold=threshold, nms_threshold=nms_threshold, max_faces=max_faces, pyramid=True))


def _as_arrays(d) -> tuple[np.ndarray, np.ndarray]:
    """Detections -> ``(boxes float32[N, 4], scores float32[N])``."""
    return np.asarray(d.boxes, np.float32).reshape(-1, 4), np.asarray(d.scores, np.float32).reshape(-1)


# --------------------------------------------------------------------------- running over a set


@dataclass
class RunItem:
    """One image to run on.

    Attributes:
        key: identifier of the result (e.g. ``("0--Parade", "0_Parade_...")``
            or a relative file name).
        image: image file.
        out: prediction file to write, or None to keep the result in memory only.
        name: line 1 of the prediction file.
    """

    key: object
    image: Path
    out: Path | None
    name: str


@dataclass
class RunStats:
    """What :func:`run_detector` did."""

    processed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failed: list[tuple[Path, str]] = field(default_factory=list)  # images that could not be read, and why

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0


def _guarded(load: Callable[[Path], np.ndarray]) -> Callable[[Path], tuple[np.ndarray | None, str | None]]:
    """``load`` returning ``(image, None)``, or ``(None, message)`` for a FacedetError."""

    def run(path: Path) -> tuple[np.ndarray | None, str | None]:
        try:
            return load(path), None
        except FacedetError as exc:
            return None, str(exc)

    return run


def _prefetch(items: Sequence[RunItem], load: Callable[[Path], object], workers: int) -> Iterator[tuple[RunItem, object]]:
    """Yield ``(item, load(item.image))`` in order, decoding up to ``2*workers`` images ahead."""
    if workers <= 0:
        for it in items:
            yield it, load(it.image)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        window: deque = deque()
        it_iter = iter(items)
        for it in it_iter:
            window.append((it, pool.submit(load, it.image)))
            if len(window) >= 2 * workers:
                break
        while window:
            it, fut = window.popleft()
            nxt = next(it_iter, None)
            if nxt is not None:
                window.append((nxt, pool.submit(load, nxt.image)))
            yield it, fut.result()


def run_detector(
    detector: _DetectorLike,
    items: Sequence[RunItem],
    *,
    mode: str = DEFAULT_MODE,
    threshold: float = EVAL_THRESHOLD,
    nms_threshold: float = DEFAULT_NMS_THRESHOLD,
    max_faces: int = MAX_FACES,
    force: bool = False,
    workers: int = 2,
    show_progress: bool | None = None,
    loader: Callable[[Path], np.ndarray] | None = None,
    on_error: Callable[[Path, str], None] | None = None,
) -> tuple[dict, RunStats]:
    """Run ``detector`` over ``items`` and write their prediction files.

    Args:
        detector: see :func:`multiscale_detect`.
        items: what to run on.
        mode: ``"pyramid"`` (``facedet detect``'s default pyramid, the default),
            ``"single"`` or ``"multiscale"`` (the S3FD protocol).
        threshold: detections scoring above it are kept (low for evaluation,
            default :data:`EVAL_THRESHOLD`).
        force: recompute items whose prediction file already exists.
        workers: image-decoding threads (0: decode in the calling thread).
        show_progress: progress bar (images/s) on stderr; None = when more
            than one image.
        loader: image reader (default :func:`facedet.imageio.read_image`).
        on_error: called with ``(image, message)`` for an image the loader
            cannot read (a FacedetError); the image is skipped, listed in
            ``stats.failed``, and the run goes on.  Without it the error is raised.
    Returns:
        ``(results, stats)``: ``key -> (boxes float32[N, 4] xyxy, scores
        float32[N])`` for the images processed in this call (skipped ones are
        not re-read), and :class:`RunStats`.
    """
    import time

    from facedet.cli_common import atomic_write_text, progress
    from facedet.outputs import format_wider_txt

    if mode not in MODES:
        raise FacedetError(f"unknown mode {mode!r}, expected one of {', '.join(MODES)}")
    if loader is None:
        from facedet.imageio import read_image as loader
    fn = {"single": single_detect, "multiscale": multiscale_detect, "pyramid": pyramid_detect}[mode]
    todo = [it for it in items if force or it.out is None or not it.out.exists()]
    stats = RunStats(skipped=len(items) - len(todo))
    results: dict = {}
    made_dirs: set[Path] = set()
    t0 = time.perf_counter()
    disable = None if show_progress is None else not show_progress
    for it, (image, problem) in progress(_prefetch(todo, _guarded(loader), workers), total=len(todo), desc=f"detect ({mode})", unit="img", disable=disable):
        if problem is not None:
            if on_error is None:
                raise FacedetError(problem)
            stats.failed.append((it.image, problem))
            on_error(it.image, problem)
            continue
        boxes, scores = fn(detector, image, threshold=threshold, nms_threshold=nms_threshold, max_faces=max_faces)
        if it.out is not None:
            if it.out.parent not in made_dirs:
                it.out.parent.mkdir(parents=True, exist_ok=True)
                made_dirs.add(it.out.parent)
            atomic_write_text(it.out, format_wider_txt(it.name, boxes, scores))
        results[it.key] = (boxes, scores)
        stats.processed += 1
    stats.seconds = time.perf_counter() - t0
    return results, stats


def wider_items(wider_root: str | Path, split: str, out_dir: str | Path) -> list[RunItem]:
    """The images of an official WIDER split: ``<root>/WIDER_<split>/images/<event>/*.jpg``.

    Args:
        wider_root: folder holding ``WIDER_val`` (and/or ``WIDER_train``, ``WIDER_test``).
        split: ``val``, ``test`` or ``train``.
        out_dir: prediction folder; item ``e/n.jpg`` writes ``out_dir/e/n.txt``.
    Returns:
        one :class:`RunItem` per image, sorted by event then name; the key is
        ``(event, stem)`` and line 1 of the file is the image stem.
    Raises:
        FacedetError: the images folder is missing or holds no image.
    """
    root = Path(wider_root) / f"WIDER_{split}" / "images"
    if not root.is_dir():
        raise FacedetError(f"{root}: WIDER images folder not found (expected <wider-root>/WIDER_{split}/images/<event>/*.jpg)")
    items = []
    for event in sorted(p for p in root.iterdir() if p.is_dir()):
        for img in sorted(event.iterdir()):
            if img.suffix.lower() in IMAGE_SUFFIXES and img.is_file():
                items.append(RunItem((event.name, img.stem), img, Path(out_dir) / event.name / f"{img.stem}.txt", img.stem))
    if not items:
        raise FacedetError(f"{root}: no images found (expected <event>/*.jpg)")
    return items
