"""``facedet webcam``: live detection from a camera with boxes and FPS drawn."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Callable, Protocol

import cv2
import numpy as np

from facedet.draw import draw_detections
from facedet.errors import FacedetError
from facedet.inference import DEFAULT_NMS_THRESHOLD, DEFAULT_THRESHOLD, Detector

WINDOW = "facedet (q to quit)"


class Capture(Protocol):
    def read(self) -> tuple[bool, np.ndarray]: ...
    def release(self) -> None: ...


def has_display() -> bool:
    """Whether a display is configured (always on Windows/macOS; X11/Wayland on Linux)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


# Opens and closes one window in a child process.  OpenCV's Qt backend calls abort()
# when it cannot reach the display (a stale DISPLAY after ssh, a stopped X server),
# which would kill facedet itself with SIGABRT; the child takes that hit instead.
PROBE_CODE = "import cv2; cv2.namedWindow('facedet-probe'); cv2.waitKey(1); cv2.destroyAllWindows()"
PROBE_TIMEOUT = 30.0


def display_error(timeout: float = PROBE_TIMEOUT) -> str | None:
    """Why no OpenCV window can be opened here, or None when one can.

    On Linux the display named by ``DISPLAY`` / ``WAYLAND_DISPLAY`` is probed
    by opening a window in a child process (see :data:`PROBE_CODE`); elsewhere
    windows are always available.
    """
    if not sys.platform.startswith("linux"):
        return None
    if not has_display():
        return "no display available (DISPLAY/WAYLAND_DISPLAY is not set)"
    name = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    try:
        res = subprocess.run([sys.executable, "-c", PROBE_CODE], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"the display {name} did not answer within {timeout:g} s"
    if res.returncode == 0:
        return None
    lines = [ln.strip() for ln in res.stderr.splitlines() if ln.strip()]
    detail = next((ln for ln in lines if "display" in ln.lower() or "plugin" in ln.lower()), lines[-1] if lines else f"exit status {res.returncode}")
    return f"cannot open a window on display {name} ({detail[:160]})"


def open_camera(index: int) -> Capture:
    log = cv2.utils.logging
    level = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)  # OpenCV prints several backend warnings for a missing camera
    try:
        cap = cv2.VideoCapture(index)
    finally:
        log.setLogLevel(level)
    if not cap.isOpened():
        cap.release()
        raise FacedetError(f"no camera found at index {index} (try --camera 0, 1, ...)")
    return cap


def run_live(
    capture: Capture,
    detector: Detector,
    show: Callable[[np.ndarray], bool],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    nms_threshold: float = DEFAULT_NMS_THRESHOLD,
    max_frames: int | None = None,
    pyramid: bool = True,
) -> int:
    """Read frames until the camera stops, ``show`` returns False (``q``), or ``max_frames``.

    ``show`` receives each annotated frame.  The FPS shown is an exponential
    moving average of the end-to-end rate (capture + detection + drawing).
    Returns the number of frames processed.
    """
    frames = 0
    fps = None
    last = time.perf_counter()
    try:
        while max_frames is None or frames < max_frames:
            ok, frame = capture.read()
            if not ok or frame is None:
                if frames == 0:
                    raise FacedetError("the camera returned no frames")
                break
            det = detector.detect(frame, threshold=threshold, nms_threshold=nms_threshold, pyramid=pyramid)
            now = time.perf_counter()
            inst = 1.0 / max(now - last, 1e-6)
            last = now
            fps = inst if fps is None else 0.9 * fps + 0.1 * inst
            label = f"{fps:.1f} FPS  {len(det)} face{'s' if len(det) != 1 else ''}"
            frames += 1
            if not show(draw_detections(frame, det.boxes, det.scores, label)):
                break
    finally:
        capture.release()
    return frames


def opencv_window() -> Callable[[np.ndarray], bool]:
    """A ``show`` callback drawing into an OpenCV window; False once ``q``/Esc is pressed."""

    def show(image: np.ndarray) -> bool:
        try:
            cv2.imshow(WINDOW, image)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as exc:
            raise FacedetError(f"cannot open a window ({' '.join(str(exc).split())[:120]})") from None
        return key not in (ord("q"), ord("Q"), 27)

    return show


def close_windows() -> None:
    try:
        cv2.destroyAllWindows()
    except cv2.error:
        pass
