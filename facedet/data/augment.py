"""Training augmentation (docs/training.md, "Augmentation"), on BGR uint8 images.

Every function takes an image ``uint8[H, W, 3]`` in **BGR** order (as OpenCV
reads it), boxes ``float32[N, 4]`` xyxy float pixels (:mod:`facedet.boxes`),
an ``ignore`` mask ``bool[N]`` and a :class:`numpy.random.Generator`, and
returns the transformed triple.  All randomness comes from that generator, so a
sample is a pure function of its seed (the dataset seeds it from
``(seed, epoch, index)``, which makes resumed training reproduce an
uninterrupted run exactly, with or without worker processes).

Two pipelines:

* :func:`augment_qvga` -- the monochrome QVGA path of the M4 / QVGA models
  (square crops of 320x320 by default): pad to near-square, photometric
  distortion, shrink so the largest face is at most 48 px, expand the canvas to
  at least the output size, resize, flip.
* :func:`augment_vga` -- the RGB VGA path of the Quant / C models (640x640):
  photometric distortion, then data-anchor sampling or SSD square crops,
  resize, flip.

Differences from the RNNPool reference code (microsoft/EdgeML), whose bugs are fixed here:

* padding uses the mean colour (104, 117, 123) **in BGR order on BGR images**;
  the reference wrote the BGR mean into RGB images;
* box coordinates are scaled exactly, never floored;
* faces that end up too small to learn from (side below ``min_face`` pixels in
  the output, default 4 px on the QVGA path and 6 px on the VGA path) are
  marked *ignored* rather than kept as positives (QVGA) or deleted (VGA):
  they are then neither forced onto an anchor nor mined as background
  (the reference's QVGA path had no minimum-face filter);
* photometric distortion works in OpenCV's HSV space (hue in [0, 180)); the
  reference's PIL hue shift of +-18/256 of a turn becomes +-12.7 OpenCV units.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = [
    "MEAN_BGR",
    "INTERPOLATIONS",
    "photometric_distort",
    "hflip",
    "resize_square",
    "augment_qvga",
    "augment_vga",
    "no_augment",
]

MEAN_BGR = (104.0, 117.0, 123.0)
INTERPOLATIONS = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA, cv2.INTER_NEAREST, cv2.INTER_LANCZOS4)


def _fill(mean_bgr) -> tuple[int, int, int]:
    return tuple(int(round(v)) for v in mean_bgr)


# --------------------------------------------------------------------------- photometric


def _blend(img: np.ndarray, other: np.ndarray | float, factor: float) -> np.ndarray:
    """``other + factor * (img - other)``, the PIL ImageEnhance rule, in float32."""
    return other + factor * (img - other)


def _grey(img: np.ndarray) -> np.ndarray:
    b, g, r = img[..., 0], img[..., 1], img[..., 2]
    return (0.299 * r + 0.587 * g + 0.114 * b)[..., None]


def photometric_distort(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast, saturation and hue (each with probability 0.5).

    Factors: brightness ``1 + U(-0.125, 0.125)``, contrast and saturation
    ``1 + U(-0.5, 0.5)``, hue shift ``U(-12.7, 12.7)`` OpenCV units.  The order
    is brightness, contrast, saturation, hue or brightness, saturation, hue,
    contrast, chosen at random (as in the reference).
    """
    order = ("b", "c", "s", "h") if rng.random() < 0.5 else ("b", "s", "h", "c")
    draws = {k: (rng.random() < 0.5, rng.uniform(-1.0, 1.0)) for k in ("b", "c", "s", "h")}
    if not any(on for on, _ in draws.values()):
        return image
    x = image.astype(np.float32)
    for op in order:
        on, u = draws[op]
        if not on:
            continue
        if op == "b":
            x = x * (1.0 + 0.125 * u)
        elif op == "c":
            x = _blend(x, float(_grey(x).mean()), 1.0 + 0.5 * u)
        elif op == "s":
            x = _blend(x, _grey(x), 1.0 + 0.5 * u)
        else:
            hsv = cv2.cvtColor(np.clip(x + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV)
            shift = u * 18.0 * 180.0 / 256.0
            hsv[..., 0] = np.mod(hsv[..., 0].astype(np.float32) + shift, 180.0).astype(np.uint8)
            x = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR).astype(np.float32)
        x = np.clip(x, 0.0, 255.0)
    return (x + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------- geometry helpers


def hflip(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right: ``x -> W - x``."""
    w = image.shape[1]
    out = boxes.copy()
    out[:, 0] = w - boxes[:, 2]
    out[:, 2] = w - boxes[:, 0]
    return np.ascontiguousarray(image[:, ::-1]), out


def _resize(image: np.ndarray, boxes: np.ndarray, height: int, width: int, interp: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    if (h, w) != (height, width):
        image = cv2.resize(image, (width, height), interpolation=interp)
    out = boxes * np.array([width / w, height / h, width / w, height / h], np.float32)
    return image, out.astype(np.float32)


def resize_square(image: np.ndarray, boxes: np.ndarray, size: int, interp: int = cv2.INTER_LINEAR) -> tuple[np.ndarray, np.ndarray]:
    """Resize to ``size x size`` (aspect ratio not kept), scaling the boxes exactly."""
    return _resize(image, boxes, size, size, interp)


def _pad_to(image: np.ndarray, boxes: np.ndarray, height: int, width: int, top: int, left: int, mean_bgr) -> tuple[np.ndarray, np.ndarray]:
    """Place ``image`` on a mean-coloured ``height x width`` canvas at ``(top, left)``."""
    h, w = image.shape[:2]
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = _fill(mean_bgr)
    canvas[top : top + h, left : left + w] = image
    return canvas, boxes + np.array([left, top, left, top], np.float32)


def _crop(image: np.ndarray, boxes: np.ndarray, ignore: np.ndarray, x0: int, y0: int, cw: int, ch: int, mean_bgr):
    """Crop ``[x0, x0+cw) x [y0, y0+ch)`` (may extend past the image: mean padding).

    Keeps the boxes whose centre lies inside the crop, shifted and clipped.
    """
    h, w = image.shape[:2]
    out = np.empty((ch, cw, 3), np.uint8)
    out[:] = _fill(mean_bgr)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + cw, w), min(y0 + ch, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    keep = (c[:, 0] >= x0) & (c[:, 0] < x0 + cw) & (c[:, 1] >= y0) & (c[:, 1] < y0 + ch)
    b = boxes[keep] - np.array([x0, y0, x0, y0], np.float32)
    b[:, 0::2] = np.clip(b[:, 0::2], 0, cw)
    b[:, 1::2] = np.clip(b[:, 1::2], 0, ch)
    return out, b.astype(np.float32), ignore[keep]


def _finish(image, boxes, ignore, min_face: float):
    """Drop degenerate boxes; mark boxes with side ``sqrt(w*h) < min_face`` ignored."""
    boxes = boxes.astype(np.float32).reshape(-1, 4)
    wh = boxes[:, 2:] - boxes[:, :2]
    keep = (wh[:, 0] > 0) & (wh[:, 1] > 0)
    boxes, ignore, wh = boxes[keep], ignore[keep].copy(), wh[keep]
    ignore |= np.sqrt(wh[:, 0] * wh[:, 1]) < min_face
    return image, boxes, ignore


# --------------------------------------------------------------------------- QVGA path


def augment_qvga(
    image: np.ndarray,
    boxes: np.ndarray,
    ignore: np.ndarray,
    rng: np.random.Generator,
    size: int = 320,
    mean_bgr=MEAN_BGR,
    max_face: float = 48.0,
    min_face: float = 4.0,
    photometric: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The QVGA training path (reference ``preprocess_qvga``), output ``size x size``.

    1. near-square padding: if ``W - 20 > H`` pad the bottom to a random height
       in ``[W - 20, W + 20)`` (and symmetrically on the right), mean colour;
    2. photometric distortion;
    3. if the largest face side ``sqrt(w*h)`` exceeds ``max_face`` (48), shrink
       the image so that it equals ``max_face`` (INTER_AREA); boxes scaled
       exactly (the reference floored them);
    4. if a side is now below ``size``, expand the canvas by
       ``1 / min(H/size, W/size)`` with the mean colour, image at a random offset;
    5. resize to ``size x size`` with a random interpolation;
    6. horizontal flip with probability 0.5.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    ignore = np.asarray(ignore, bool).reshape(-1)
    h, w = image.shape[:2]
    if w - 20 > h:
        nh = int(rng.integers(w - 20, w + 20))
        image, boxes = _pad_to(image, boxes, nh, w, 0, 0, mean_bgr)
    elif h - 20 > w:
        nw = int(rng.integers(h - 20, h + 20))
        image, boxes = _pad_to(image, boxes, h, nw, 0, 0, mean_bgr)
    if photometric:
        image = photometric_distort(image, rng)
    if len(boxes):
        wh = boxes[:, 2:] - boxes[:, :2]
        side = float(np.sqrt((wh[:, 0] * wh[:, 1]).max()))
        if side > max_face:
            h, w = image.shape[:2]
            r = side / max_face
            nh, nw = max(int(round(h / r)), 1), max(int(round(w / r)), 1)
            image, boxes = _resize(image, boxes, nh, nw, cv2.INTER_AREA)
    h, w = image.shape[:2]
    if h < size or w < size:
        e = 1.0 / min(h / size, w / size)
        nh, nw = max(int(math.ceil(h * e)), h), max(int(math.ceil(w * e)), w)
        top = int(rng.integers(0, nh - h + 1))
        left = int(rng.integers(0, nw - w + 1))
        image, boxes = _pad_to(image, boxes, nh, nw, top, left, mean_bgr)
    interp = INTERPOLATIONS[int(rng.integers(len(INTERPOLATIONS)))]
    image, boxes = resize_square(image, boxes, size, interp)
    if rng.random() < 0.5:
        image, boxes = hflip(image, boxes)
    return _finish(image, boxes, ignore, min_face)


# --------------------------------------------------------------------------- VGA path

VGA_ANCHORS = (16, 32, 64, 128, 256, 512)


def _data_anchor_sample(image, boxes, ignore, rng, size, anchors, mean_bgr):
    """PyramidBox data-anchor sampling; returns None when no face can be used."""
    cand = np.flatnonzero(~ignore)
    if len(cand) == 0:
        return None
    k = int(cand[rng.integers(len(cand))])
    wh = boxes[k, 2:] - boxes[k, :2]
    side = float(np.sqrt(max(wh[0] * wh[1], 1e-6)))
    idx = int(np.argmin(np.abs(np.asarray(anchors, np.float64) - side)))
    target = float(anchors[int(rng.integers(0, min(idx + 1, len(anchors) - 1) + 1))])
    scale = target / side * 2.0 ** rng.uniform(-1.0, 1.0)
    h, w = image.shape[:2]
    if h * w * scale * scale > 12000.0**2:
        scale = math.sqrt(12000.0**2 / (h * w))
    nh, nw = max(int(round(h * scale)), 1), max(int(round(w * scale)), 1)
    interp = INTERPOLATIONS[int(rng.integers(len(INTERPOLATIONS)))]
    image, boxes = _resize(image, boxes, nh, nw, interp)
    x1, y1, x2, y2 = boxes[k]
    lo_x, hi_x = sorted((x2 - size, x1))
    lo_y, hi_y = sorted((y2 - size, y1))
    x0 = int(math.floor(rng.uniform(lo_x, hi_x))) if hi_x > lo_x else int(math.floor(lo_x))
    y0 = int(math.floor(rng.uniform(lo_y, hi_y))) if hi_y > lo_y else int(math.floor(lo_y))
    return _crop(image, boxes, ignore, x0, y0, size, size, mean_bgr)


def _ssd_square_crop(image, boxes, ignore, rng, mean_bgr, trials: int = 50):
    """SSD-style square crop covering at least one whole face; None if no candidate."""
    h, w = image.shape[:2]
    short = min(h, w)
    candidates = []
    for sampler in range(5):
        for _ in range(trials):
            scale = 1.0 if sampler == 0 else rng.uniform(0.3, 1.0)
            side = max(int(short * scale), 1)
            x0 = int(rng.integers(0, w - side + 1))
            y0 = int(rng.integers(0, h - side + 1))
            inside = (boxes[:, 0] >= x0) & (boxes[:, 1] >= y0) & (boxes[:, 2] <= x0 + side) & (boxes[:, 3] <= y0 + side) & ~ignore
            if inside.any():
                candidates.append((x0, y0, side))
                break
    if not candidates:
        return None
    x0, y0, side = candidates[int(rng.integers(len(candidates)))]
    return _crop(image, boxes, ignore, x0, y0, side, side, mean_bgr)


def augment_vga(
    image: np.ndarray,
    boxes: np.ndarray,
    ignore: np.ndarray,
    rng: np.random.Generator,
    size: int = 640,
    mean_bgr=MEAN_BGR,
    anchors=VGA_ANCHORS,
    min_face: float = 6.0,
    photometric: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The VGA training path (reference ``preprocess``), output ``size x size``.

    1. photometric distortion;
    2. with probability 0.5 data-anchor sampling (pick a face, rescale so that
       it matches a randomly chosen anchor no larger than the next one up from
       its own, times ``2^U(-1, 1)``, take a ``size x size`` crop containing it,
       mean padding outside the image); otherwise one of up to five SSD square
       crops (scale 1 or ``U(0.3, 1)`` of the short side) that fully contains a
       face, or the whole image if none does;
    3. resize to ``size x size`` with a random interpolation;
    4. horizontal flip with probability 0.5.

    Faces keep when their centre is inside the crop; faces with side below
    ``min_face`` output pixels become ignored.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    ignore = np.asarray(ignore, bool).reshape(-1)
    if photometric:
        image = photometric_distort(image, rng)
    res = None
    if rng.random() < 0.5:
        res = _data_anchor_sample(image, boxes, ignore, rng, size, anchors, mean_bgr)
    if res is None:
        res = _ssd_square_crop(image, boxes, ignore, rng, mean_bgr)
    if res is not None:
        image, boxes, ignore = res
    interp = INTERPOLATIONS[int(rng.integers(len(INTERPOLATIONS)))]
    image, boxes = resize_square(image, boxes, size, interp)
    if rng.random() < 0.5:
        image, boxes = hflip(image, boxes)
    return _finish(image, boxes, ignore, min_face)


def no_augment(image: np.ndarray, boxes: np.ndarray, ignore: np.ndarray, rng: np.random.Generator | None = None, size: int = 320, min_face: float = 0.0):
    """Deterministic training input: resize to ``size x size`` (INTER_LINEAR), nothing else."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    ignore = np.asarray(ignore, bool).reshape(-1)
    image, boxes = resize_square(image, boxes, size)
    return _finish(image, boxes, ignore, min_face)
