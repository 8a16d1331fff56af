"""Reading images, listing inputs, and reading video frames -- with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from facedet.errors import FacedetError
from facedet.preprocess import to_bgr8

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".jp2", ".exr", ".hdr", ".pic", ".sr", ".ras"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}


def is_video(path: Path | str) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def read_image(path: Path | str) -> np.ndarray:
    """Read any image OpenCV can decode as ``uint8[H, W, 3]`` BGR.

    Grey, BGRA and 16-bit files are converted (see :func:`facedet.preprocess.to_bgr8`).
    Raises FacedetError for a missing, empty, unreadable or truncated file.
    """
    path = Path(path)
    if not path.exists():
        raise FacedetError(f"{path}: no such file")
    if path.is_dir():
        raise FacedetError(f"{path}: is a directory")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise FacedetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data.size == 0:
        raise FacedetError(f"{path}: empty file")
    if _truncated_jpeg(data):
        raise FacedetError(f"{path}: truncated JPEG (no end-of-image marker)")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FacedetError(f"{path}: not an image OpenCV can decode")
    try:
        return to_bgr8(image)
    except FacedetError as exc:
        raise FacedetError(f"{path}: {exc}") from None


def _truncated_jpeg(data: np.ndarray) -> bool:
    """A JPEG whose data stops before the end-of-image marker (FF D9).

    OpenCV decodes such files silently (grey fill), so check explicitly.
    Trailing padding after the marker is tolerated.
    """
    if data.size < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return False
    tail = data[-1024:].tobytes()
    return b"\xff\xd9" not in tail


def collect_inputs(paths: list[Path], recursive: bool = False) -> list[Path]:
    """Expand files and folders into a sorted, de-duplicated list of media files.

    Explicit file arguments are kept whatever their suffix (so that a bad file
    is reported rather than silently skipped); folders contribute files with an
    image or video suffix.  Raises FacedetError for a missing path or a folder
    without any image.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise FacedetError(f"{p}: no such file or directory")
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(f for f in p.glob(pattern) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
            if not found:
                hint = "" if recursive else " (use --recursive to search subfolders)"
                raise FacedetError(f"{p}: no images or videos found{hint}")
            items = found
        else:
            items = [p]
        for f in items:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def iter_video(path: Path | str) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_index, uint8[H, W, 3] BGR)`` for every frame of a video file."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FacedetError(f"{path}: cannot open video")
    try:
        index = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield index, to_bgr8(frame)
            index += 1
        if index == 0:
            raise FacedetError(f"{path}: video has no readable frames")
    finally:
        cap.release()


def video_info(path: Path | str) -> tuple[float, int, int, int]:
    """``(fps, frame_count, width, height)`` of a video (fps defaults to 25 if unknown)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FacedetError(f"{path}: cannot open video")
    try:
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        return float(fps if fps > 0 else 25.0), n, w, h
    finally:
        cap.release()
