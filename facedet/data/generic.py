"""The facedet generic annotation format (JSON), reader and writer.

::

    {"format": "facedet-generic", "version": 1,
     "images": [{"file": "images/train/000123.jpg", "width": 640, "height": 480,
                 "faces": [{"box": [x1, y1, x2, y2]},
                           {"box": [x1, y1, x2, y2], "ignore": true}]}]}

* ``file``: image path relative to the data-set root (forward slashes);
  unique within the file.
* ``width``/``height``: optional positive integers.
* ``box``: float pixels in facedet's continuous ``xyxy`` contract
  (``x2 >= x1``, ``y2 >= y1``; see :mod:`facedet.boxes`).
* ``ignore``: optional boolean, default false (a face that is neither required
  nor penalised).
* ``"faces": []`` is a negative image (no face).

Unknown keys are ignored, so the format can grow without breaking readers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

import numpy as np

from facedet.data.types import ImageAnnotation
from facedet.errors import FacedetError

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "read_generic", "parse_generic", "write_generic", "to_generic_dict"]

FORMAT_NAME = "facedet-generic"
FORMAT_VERSION = 1


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_generic(data, source: str = "<json>") -> list[ImageAnnotation]:
    """Validate a decoded generic-format document.

    Args:
        data: the decoded JSON value.
        source: file name used in error messages.
    Returns:
        one :class:`ImageAnnotation` per image entry, in file order.
    Raises:
        FacedetError: ``source: images[i].faces[j].box: problem`` style
            messages for every structural problem.
    """
    if not isinstance(data, dict):
        raise FacedetError(f"{source}: top level must be a JSON object")
    if data.get("format") != FORMAT_NAME:
        raise FacedetError(f"{source}: 'format' must be {FORMAT_NAME!r}, got {data.get('format')!r}")
    if data.get("version") != FORMAT_VERSION:
        raise FacedetError(f"{source}: unsupported 'version' {data.get('version')!r} (this facedet reads version {FORMAT_VERSION})")
    images = data.get("images")
    if not isinstance(images, list):
        raise FacedetError(f"{source}: 'images' must be a list")
    out: list[ImageAnnotation] = []
    seen: dict[str, int] = {}
    for i, im in enumerate(images):
        where = f"{source}: images[{i}]"
        if not isinstance(im, dict):
            raise FacedetError(f"{where}: must be an object")
        file = im.get("file")
        if not isinstance(file, str) or not file:
            raise FacedetError(f"{where}: 'file' must be a non-empty string")
        if file in seen:
            raise FacedetError(f"{where}: 'file' {file!r} already listed at images[{seen[file]}]")
        seen[file] = i
        size = []
        for key in ("width", "height"):
            v = im.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
                raise FacedetError(f"{where}: '{key}' must be a positive integer, got {v!r}")
            size.append(v)
        faces = im.get("faces")
        if not isinstance(faces, list):
            raise FacedetError(f"{where}: 'faces' must be a list (use [] for an image without faces)")
        boxes = np.zeros((len(faces), 4), np.float32)
        ignore = np.zeros(len(faces), bool)
        for j, face in enumerate(faces):
            fw = f"{where}.faces[{j}]"
            if not isinstance(face, dict):
                raise FacedetError(f"{fw}: must be an object")
            box = face.get("box")
            if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
                raise FacedetError(f"{fw}.box: must be a list of 4 finite numbers [x1, y1, x2, y2]")
            if box[2] < box[0] or box[3] < box[1]:
                raise FacedetError(f"{fw}.box: x2 < x1 or y2 < y1 (boxes are [x1, y1, x2, y2])")
            ig = face.get("ignore", False)
            if not isinstance(ig, bool):
                raise FacedetError(f"{fw}.ignore: must be true or false")
            boxes[j] = box
            ignore[j] = ig
        out.append(ImageAnnotation(file=file, boxes=boxes, ignore=ignore, width=size[0], height=size[1]))
    return out


def read_generic(path: str | Path) -> list[ImageAnnotation]:
    """Read a generic-format JSON file.

    Raises:
        FacedetError: missing file, invalid JSON (with line and column), or a
            structural problem (with the entry index).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FacedetError(f"{path}: annotation file not found") from None
    except UnicodeDecodeError:
        raise FacedetError(f"{path}: not a UTF-8 text file") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FacedetError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg})") from None
    return parse_generic(data, str(path))


def _num(v) -> float | int:
    """Shortest decimal that round-trips the float32 value (ints stay ints)."""
    f = float(np.format_float_positional(np.float32(v), unique=True, trim="-"))
    return int(f) if f.is_integer() and abs(f) < 2**53 else f


def to_generic_dict(annotations: Iterable[ImageAnnotation]) -> dict:
    """The generic-format document of ``annotations`` (see :func:`write_generic`)."""
    images = []
    for ann in annotations:
        entry: dict = {"file": str(ann.file).replace("\\", "/")}
        if ann.width is not None:
            entry["width"] = int(ann.width)
        if ann.height is not None:
            entry["height"] = int(ann.height)
        faces = []
        for box, ig in zip(ann.boxes, ann.ignore):
            face: dict = {"box": [_num(v) for v in box]}
            if ig:
                face["ignore"] = True
            faces.append(face)
        entry["faces"] = faces
        images.append(entry)
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "images": images}


def write_generic(path: str | Path, annotations: Iterable[ImageAnnotation]) -> None:
    """Write ``annotations`` as a generic-format JSON file (atomically).

    One image per line, so diffs of hand-edited sets stay readable; reading the
    file back gives the same records (boxes as float32).
    """
    from facedet.cli_common import atomic_write_text

    doc = to_generic_dict(annotations)
    lines = [json.dumps(im, separators=(", ", ": ")) for im in doc["images"]]
    body = ",\n  ".join(lines)
    text = f'{{"format": "{FORMAT_NAME}", "version": {FORMAT_VERSION},\n "images": [\n  {body}\n ]}}\n' if lines else f'{{"format": "{FORMAT_NAME}", "version": {FORMAT_VERSION}, "images": []}}\n'
    atomic_write_text(path, text)
