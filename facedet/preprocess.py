"""Image -> network input, and the scale that maps boxes back (README.md, "Inference").

Pipeline for one image:

1. :func:`to_bgr8` -- any OpenCV image (grey, BGR, BGRA, 16-bit, float) to
   ``uint8[H, W, 3]`` BGR;
2. :func:`network_scale` -- the area-preserving factor
   ``s = sqrt(Hn*Wn / (H*W))`` that gives the image the pixel budget of the
   model's nominal input (``Hn x Wn``, e.g. 240x320 for ``m4``), aspect kept;
   small images are enlarged, as in the reference demo;
3. :func:`resize` -- cv2 ``INTER_LINEAR`` to ``round(H*s) x round(W*s)``;
4. :func:`normalize` -- subtract the BGR mean (104, 117, 123), no scaling; RGB
   channel order for colour models, the luma ``0.299 R' + 0.587 G' + 0.114 B'``
   of the mean-subtracted channels for monochrome models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from facedet.errors import FacedetError

LUMA = (0.299, 0.587, 0.114)  # R, G, B


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Convert any image OpenCV can produce to ``uint8[H, W, 3]`` BGR.

    Accepts ``[H, W]`` or ``[H, W, 1]`` grey, ``[H, W, 3]`` BGR, ``[H, W, 4]``
    BGRA (alpha dropped), in uint8, uint16 (scaled by 1/257) or float (assumed
    in [0, 1]).
    """
    if image is None or image.size == 0 or image.ndim not in (2, 3) or min(image.shape[:2]) == 0:
        raise FacedetError("empty image")
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif image.dtype.kind == "f":
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise FacedetError(f"unsupported image dtype {image.dtype}")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.shape[2] == 3:
        return np.ascontiguousarray(image)
    raise FacedetError(f"unsupported number of channels: {image.shape[2]}")


def network_scale(height: int, width: int, target_hw: tuple[int, int]) -> float:
    """Area-preserving resize factor ``sqrt(Ht*Wt / (H*W))``."""
    return math.sqrt(target_hw[0] * target_hw[1] / float(height * width))


@dataclass(frozen=True)
class Resized:
    """A resized image and the factors that map its pixels back.

    ``x_orig = x_net / sx`` and ``y_orig = y_net / sy``.
    """

    image: np.ndarray
    sx: float
    sy: float


def resize(image: np.ndarray, scale: float, min_side: int = 1) -> Resized:
    """Resize by ``scale`` (INTER_LINEAR), never below ``min_side`` on either side."""
    h, w = image.shape[:2]
    nh = max(int(round(h * scale)), min_side)
    nw = max(int(round(w * scale)), min_side)
    if (nh, nw) == (h, w):
        out = image
    else:
        out = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return Resized(out, nw / w, nh / h)


def normalize(image_bgr: np.ndarray, in_channels: int, mean_bgr=(104.0, 117.0, 123.0)) -> np.ndarray:
    """``uint8[H, W, 3]`` BGR -> ``float32[C, H, W]`` network input.

    ``C = 3``: mean-subtracted RGB.  ``C = 1``: luma of the mean-subtracted
    channels (= luma - 117.312), about [-117.3, 137.7].
    """
    x = image_bgr.astype(np.float32) - np.asarray(mean_bgr, dtype=np.float32)
    if in_channels == 1:
        b, g, r = x[..., 0], x[..., 1], x[..., 2]
        return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b)[None].astype(np.float32)
    if in_channels == 3:
        return np.ascontiguousarray(x[..., ::-1].transpose(2, 0, 1))
    raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
