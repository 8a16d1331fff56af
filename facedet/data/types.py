"""The one in-memory annotation record shared by every dataset reader and the evaluator."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ImageAnnotation:
    """Ground truth of one image.

    Attributes:
        file: image path relative to the dataset root (or absolute).
        boxes: ``float32[N, 4]`` xyxy float pixels of the original image
            (see :mod:`facedet.boxes` for the box contract).
        ignore: ``bool[N]``; True marks a face that must neither be required
            (a miss is not counted) nor penalised (a detection on it is not a
            false positive), e.g. WIDER ``invalid`` or too-small faces.
        width, height: image size in pixels when the annotation states it.
    """

    file: str
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    ignore: np.ndarray | None = None
    width: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        if self.ignore is None:
            self.ignore = np.zeros(len(self.boxes), dtype=bool)
        else:
            self.ignore = np.asarray(self.ignore, dtype=bool).reshape(-1)
        if len(self.ignore) != len(self.boxes):
            raise ValueError("ignore must have one entry per box")
