"""Reading images, listing inputs, and reading video frames -- with one-line errors.

:func:`read_image` is the one place facedet decodes an image file (``detect``,
``evaluate``, the training and calibration readers all use it).  It

* applies the EXIF orientation, so pixels and boxes are in the orientation an
  image viewer shows (a portrait phone photo is upright);
* refuses images over a pixel limit (:data:`DEFAULT_MAX_PIXELS`, 250
  megapixels, ``--max-pixels`` raises it), reading the size from the file
  header before anything is decoded, so a PNG of a few dozen bytes that
  claims 50000x50000 pixels costs nothing;
* accepts a JPEG followed by other data (zero padding, the video of a phone
  "motion photo") and calls it truncated only when its data stops before the
  end-of-image marker.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from facedet.errors import FacedetError
from facedet.preprocess import to_bgr8

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".jp2", ".exr", ".hdr", ".pic", ".sr", ".ras"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}

DEFAULT_MAX_PIXELS = 250_000_000
"""Largest image (width x height) :func:`read_image` decodes by default: 250 megapixels, above
the largest phone and camera photos (200 MP sensors, 16320x12240) and far below OpenCV's own
limit of 2^30; 750 MB as 8-bit BGR, plus the detector's working memory."""

MAX_PIXELS_HELP = (
    "Skip (and report) images of more than N pixels; raise it for larger images, which take about 3 bytes "
    "a pixel of memory. OpenCV itself stops at 2^30 unless the environment "
    "variable OPENCV_IO_MAX_IMAGE_PIXELS is raised too."
)

# Keep 16-bit and grey data as they are (to_bgr8 converts them) and let OpenCV apply
# the EXIF orientation; IMREAD_UNCHANGED would ignore the orientation.  Alpha is
# dropped, as to_bgr8 would drop it.
_DECODE_FLAGS = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH


def is_video(path: Path | str) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def read_image(path: Path | str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read any image OpenCV can decode as ``uint8[H, W, 3]`` BGR, upright.

    The EXIF orientation is applied (``H, W`` are those a viewer shows).  Grey,
    BGRA and 16-bit files are converted (see :func:`facedet.preprocess.to_bgr8`).

    Args:
        path: the image file.
        max_pixels: refuse images with more than this many pixels (None: no
            limit of facedet's own; OpenCV still refuses more than 2^30 unless
            the environment variable ``OPENCV_IO_MAX_IMAGE_PIXELS`` raises it).
    Raises:
        FacedetError: a missing, empty, unreadable, truncated or too large file.
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
    except MemoryError:
        raise FacedetError(f"{path}: file too large to read into memory") from None
    if data.size == 0:
        raise FacedetError(f"{path}: empty file")
    size = None
    if _is_jpeg(data):
        size, complete = _jpeg_layout(data)
        if complete is False:
            raise FacedetError(f"{path}: truncated JPEG (no end-of-image marker)")
    else:
        size = header_size(data)
    if size is not None:
        _check_pixels(path, size[0], size[1], max_pixels)
    try:
        image = cv2.imdecode(data, _DECODE_FLAGS)
    except cv2.error as exc:
        raise FacedetError(f"{path}: {_opencv_reason(exc)}") from None
    if image is None:
        raise FacedetError(f"{path}: not an image OpenCV can decode")
    _check_pixels(path, image.shape[1], image.shape[0], max_pixels)  # formats without a header reader
    try:
        return to_bgr8(image)
    except FacedetError as exc:
        raise FacedetError(f"{path}: {exc}") from None


def _check_pixels(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise FacedetError(f"{path}: {width}x{height} pixels is over the limit of {max_pixels:,} pixels (--max-pixels raises it)")


def _opencv_reason(exc: cv2.error) -> str:
    text = str(exc)
    if "CV_IO_MAX_IMAGE_PIXELS" in text or "CV_IO_MAX_IMAGE_WIDTH" in text or "CV_IO_MAX_IMAGE_HEIGHT" in text:
        return "larger than OpenCV decodes (2^30 pixels; the environment variable OPENCV_IO_MAX_IMAGE_PIXELS raises it)"
    lines = [line for line in text.splitlines() if "error:" in line]
    return "OpenCV cannot decode it (" + (lines[-1].split("error:", 1)[1].strip() if lines else type(exc).__name__)[:160] + ")"


# --------------------------------------------------------------------------- image headers


def _is_jpeg(data: np.ndarray) -> bool:
    return data.size >= 3 and data[0] == 0xFF and data[1] == 0xD8 and data[2] == 0xFF


# start-of-frame markers (they carry the image size): C0-CF except DHT (C4), JPG (C8), DAC (CC)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_layout(data: np.ndarray) -> tuple[tuple[int, int] | None, bool | None]:
    """``((width, height) or None, complete)`` of a JPEG, from its marker structure.

    ``complete`` is True when the end-of-image marker that closes the image
    is found (whatever follows it: padding, an appended video), False when
    the data ends first (a truncated file), None when the structure cannot be
    followed (then the decoder decides).
    """
    buf = data.tobytes()
    n = len(buf)
    size = None
    markers: np.ndarray | None = None  # positions of FF that start a marker inside entropy-coded data
    pos = 2
    while True:
        if pos >= n:
            return size, False
        if buf[pos] != 0xFF:
            return size, None  # garbage where a marker belongs
        while pos < n and buf[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            return size, False
        code = buf[pos]
        pos += 1
        if code == 0xD9:  # EOI
            return size, True
        if code == 0x01 or 0xD0 <= code <= 0xD8:  # TEM, RSTn, SOI: no length
            continue
        if pos + 2 > n:
            return size, False
        length = int.from_bytes(buf[pos : pos + 2], "big")
        if length < 2:
            return size, None
        if code in _SOF and size is None and pos + 7 <= n:
            h = int.from_bytes(buf[pos + 3 : pos + 5], "big")
            w = int.from_bytes(buf[pos + 5 : pos + 7], "big")
            size = (w, h) if w and h else None
        pos += length
        if code == 0xDA:  # SOS: entropy-coded data runs to the next marker (not FF00 stuffing, not RSTn)
            if markers is None:
                nxt = data[1:]
                markers = np.flatnonzero((data[:-1] == 0xFF) & (nxt != 0x00) & (nxt != 0xFF) & ((nxt < 0xD0) | (nxt > 0xD7)))
            k = int(np.searchsorted(markers, pos))
            if k >= len(markers):
                return size, False
            pos = int(markers[k])


def _u16(b: bytes, at: int, order: str) -> int:
    return int.from_bytes(b[at : at + 2], order)  # type: ignore[arg-type]


def _u32(b: bytes, at: int, order: str) -> int:
    return int.from_bytes(b[at : at + 4], order)  # type: ignore[arg-type]


def header_size(data: np.ndarray | bytes) -> tuple[int, int] | None:
    """``(width, height)`` read from an image file's header, without decoding it.

    Knows JPEG, PNG, GIF, BMP, TIFF, WebP, PNM/PAM/PFM, Sun raster, Radiance HDR and
    JPEG 2000; None for other formats or a header it cannot read (the decoder
    then finds out).
    """
    arr = data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    if _is_jpeg(arr):
        return _jpeg_layout(arr)[0]
    try:
        size = _header_size(arr[:65536].tobytes(), arr)
    except (IndexError, ValueError):
        return None
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return size


def _header_size(b: bytes, arr: np.ndarray) -> tuple[int, int] | None:
    if b.startswith(b"\x89PNG\r\n\x1a\n") and b[12:16] == b"IHDR":
        return _u32(b, 16, "big"), _u32(b, 20, "big")
    if b[:6] in (b"GIF87a", b"GIF89a"):
        return _u16(b, 6, "little"), _u16(b, 8, "little")
    if b[:2] == b"BM" and len(b) >= 26:
        if _u32(b, 14, "little") == 12:  # BITMAPCOREHEADER
            return _u16(b, 18, "little"), _u16(b, 20, "little")
        return abs(int.from_bytes(b[18:22], "little", signed=True)), abs(int.from_bytes(b[22:26], "little", signed=True))
    if b[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_size(arr)
    if b[:4] == b"RIFF" and b[8:12] == b"WEBP":
        kind = b[12:16]
        if kind == b"VP8 " and b[23:26] == b"\x9d\x01\x2a":
            return _u16(b, 26, "little") & 0x3FFF, _u16(b, 28, "little") & 0x3FFF
        if kind == b"VP8L" and b[20] == 0x2F:
            bits = _u32(b, 21, "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if kind == b"VP8X":
            return int.from_bytes(b[24:27], "little") + 1, int.from_bytes(b[27:30], "little") + 1
        return None
    if len(b) >= 2 and b[:1] == b"P" and b[1:2] in (b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"F", b"f"):  # PNM, PAM, PFM
        return _pnm_size(b)
    if b[:4] == b"\x59\xa6\x6a\x95":  # Sun raster
        return _u32(b, 4, "big"), _u32(b, 8, "big")
    if b.startswith((b"#?RADIANCE", b"#?RGBE")):
        m = re.search(rb"\n\n([-+])([XY]) (\d+) ([-+])([XY]) (\d+)", b)
        if m is None:
            return None
        first, second = int(m.group(3)), int(m.group(6))
        return (second, first) if m.group(2) == b"Y" else (first, second)
    if b[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n":  # JP2: the ihdr box holds height, width
        i = b.find(b"ihdr")
        return (_u32(b, i + 8, "big"), _u32(b, i + 4, "big")) if i > 0 else None
    if b[:4] == b"\xff\x4f\xff\x51":  # JPEG 2000 codestream: the SIZ segment
        return _u32(b, 8, "big") - _u32(b, 16, "big"), _u32(b, 12, "big") - _u32(b, 20, "big")
    return None


def _tiff_size(arr: np.ndarray) -> tuple[int, int] | None:
    """Width and length of the first image of a (classic) TIFF, from its first IFD."""
    order = "little" if arr[0] == 0x49 else "big"
    ifd = _u32(arr[4:8].tobytes(), 0, order)
    count = _u16(arr[ifd : ifd + 2].tobytes(), 0, order)
    entries = arr[ifd + 2 : ifd + 2 + 12 * count].tobytes()
    found: dict[int, int] = {}
    for e in range(0, len(entries) - 11, 12):
        tag, typ = _u16(entries, e, order), _u16(entries, e + 2, order)
        if tag in (256, 257):
            found[tag] = _u16(entries, e + 8, order) if typ == 3 else _u32(entries, e + 8, order)
    return (found[256], found[257]) if len(found) == 2 else None


def _pnm_size(b: bytes) -> tuple[int, int] | None:
    if b[1:2] == b"7":  # PAM
        w = re.search(rb"\nWIDTH\s+(\d+)", b)
        h = re.search(rb"\nHEIGHT\s+(\d+)", b)
        return (int(w.group(1)), int(h.group(1))) if w and h else None
    tokens = re.sub(rb"#[^\n]*", b" ", b[2:1024]).split()
    return (int(tokens[0]), int(tokens[1])) if len(tokens) >= 2 else None


# --------------------------------------------------------------------------- inputs and videos


def iter_images(files: Iterable[Path], on_error: Callable[[Path, str], None] | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Iterator[tuple[Path, np.ndarray]]:
    """``(path, image)`` for every file :func:`read_image` can read; the others go to ``on_error(path, message)`` and are skipped."""
    for f in files:
        try:
            image = read_image(f, max_pixels)
        except FacedetError as exc:
            if on_error is not None:
                on_error(f, str(exc))
            continue
        yield f, image


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
