"""Drawing detections onto images."""

from __future__ import annotations

import cv2
import numpy as np

BOX_COLOR = (0, 220, 0)  # BGR
TEXT_COLOR = (0, 0, 0)


def draw_detections(image: np.ndarray, boxes: np.ndarray, scores: np.ndarray, label: str | None = None) -> np.ndarray:
    """Return a copy of ``image`` (BGR uint8) with boxes and scores drawn.

    Args:
        boxes: ``float[N, 4]`` xyxy pixels of ``image``.
        scores: ``float[N]``.
        label: optional text for the top-left corner (e.g. FPS).
    """
    out = image.copy()
    h, w = out.shape[:2]
    thick = max(1, int(round(min(h, w) / 300)))
    font_scale = max(0.35, min(h, w) / 900)
    for (x1, y1, x2, y2), s in zip(np.asarray(boxes), np.asarray(scores)):
        p1 = (int(round(x1)), int(round(y1)))
        p2 = (int(round(x2)), int(round(y2)))
        cv2.rectangle(out, p1, p2, BOX_COLOR, thick, cv2.LINE_AA)
        text = f"{s:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        ty = p1[1] - 2 if p1[1] - th - base - 2 >= 0 else p1[1] + th + base + 2
        cv2.rectangle(out, (p1[0], ty - th - base), (p1[0] + tw + 2, ty + 1), BOX_COLOR, -1)
        cv2.putText(out, text, (p1[0] + 1, ty - base + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, TEXT_COLOR, 1, cv2.LINE_AA)
    if label:
        cv2.putText(out, label, (8, int(24 * font_scale / 0.5)), cv2.FONT_HERSHEY_SIMPLEX, font_scale * 1.2, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, label, (8, int(24 * font_scale / 0.5)), cv2.FONT_HERSHEY_SIMPLEX, font_scale * 1.2, (255, 255, 255), 1, cv2.LINE_AA)
    return out
