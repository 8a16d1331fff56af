"""PASCAL VOC XML annotation reader (SCUT-HEAD and users' own sets).

One XML file per image::

    <annotation>
      <filename>000123.jpg</filename>
      <size><width>640</width><height>480</height><depth>3</depth></size>
      <object>
        <name>person</name>
        <difficult>0</difficult>
        <bndbox><xmin>10</xmin><ymin>20</ymin><xmax>49</xmax><ymax>79</ymax></bndbox>
      </object>
    </annotation>

**Coordinates.**  VOC ``bndbox`` values are 1-based, inclusive pixel indices:
``xmin = 1`` is the first pixel column and a box ``xmin=10, xmax=49`` covers
40 columns.  In facedet's continuous contract pixel ``i`` (1-based) spans
``[i - 1, i]``, so the box becomes ``[xmin - 1, ymin - 1, xmax, ymax]`` (width
``xmax - xmin + 1``).  Pass ``one_based=False`` for files written by tools that
store 0-based continuous corners; then the values are taken as they are.

``<difficult>1</difficult>`` marks the box as ignored.  Fractional coordinates
are accepted.  Objects whose class is not in ``classes`` (when given) are
dropped entirely.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterable

import numpy as np

from facedet.data.types import ImageAnnotation
from facedet.errors import FacedetError

__all__ = ["read_voc_xml", "read_voc_dir"]


def _text(elem: ET.Element | None) -> str | None:
    if elem is None or elem.text is None:
        return None
    return elem.text.strip()


def _number(elem: ET.Element, tag: str, where: str) -> float:
    t = _text(elem.find(tag))
    if t is None or t == "":
        raise FacedetError(f"{where}: missing <{tag}>")
    try:
        v = float(t)
    except ValueError:
        raise FacedetError(f"{where}: <{tag}> {t!r} is not a number") from None
    if not np.isfinite(v):
        raise FacedetError(f"{where}: <{tag}> {t!r} is not finite")
    return v


def read_voc_xml(path: str | Path, *, classes: Iterable[str] | None = None, one_based: bool = True) -> ImageAnnotation:
    """Read one VOC XML file.

    Args:
        path: the ``.xml`` file.
        classes: keep only objects whose ``<name>`` is one of these (exact,
            case-sensitive); None keeps every object.
        one_based: convert VOC's 1-based inclusive pixel indices to continuous
            corners (see the module docstring).
    Returns:
        :class:`ImageAnnotation` with ``file`` = ``<filename>`` (or the XML
        stem when absent), ``boxes`` ``float32[N, 4]`` xyxy and ``ignore``
        from ``<difficult>``; ``width``/``height`` from ``<size>`` when > 0.
    Raises:
        FacedetError: unreadable XML (with its line), or a malformed object
            (naming the file, the line when known, and the object index).
    """
    path = Path(path)
    wanted = None if classes is None else set(classes)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else "?"
        raise FacedetError(f"{path}:{line}: malformed XML ({exc})") from None
    except FileNotFoundError:
        raise FacedetError(f"{path}: annotation file not found") from None
    if root.tag != "annotation":
        raise FacedetError(f"{path}: root element is <{root.tag}>, expected <annotation>")
    filename = _text(root.find("filename")) or (path.stem)
    width = height = None
    size = root.find("size")
    if size is not None:
        try:
            w = int(float(_text(size.find("width")) or 0))
            h = int(float(_text(size.find("height")) or 0))
        except ValueError:
            raise FacedetError(f"{path}: <size> width/height are not numbers") from None
        width, height = (w, h) if w > 0 and h > 0 else (None, None)
    boxes, ignore = [], []
    for k, obj in enumerate(root.iter("object")):
        name = _text(obj.find("name")) or ""
        if wanted is not None and name not in wanted:
            continue
        where = f"{path}: object {k + 1}"
        bb = obj.find("bndbox")
        if bb is None:
            raise FacedetError(f"{where}: missing <bndbox>")
        x1, y1, x2, y2 = (_number(bb, t, where) for t in ("xmin", "ymin", "xmax", "ymax"))
        if one_based:
            x1, y1 = x1 - 1, y1 - 1
        if x2 < x1 or y2 < y1:
            raise FacedetError(f"{where}: xmax/ymax smaller than xmin/ymin")
        diff = _text(obj.find("difficult"))
        if diff in (None, "", "0"):
            ignore.append(False)
        elif diff == "1":
            ignore.append(True)
        else:
            raise FacedetError(f"{where}: <difficult> {diff!r} is not 0 or 1")
        boxes.append((x1, y1, x2, y2))
    return ImageAnnotation(
        file=filename,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        ignore=np.asarray(ignore, bool),
        width=width,
        height=height,
    )


def read_voc_dir(directory: str | Path, *, classes: Iterable[str] | None = None, one_based: bool = True) -> list[ImageAnnotation]:
    """Read every ``*.xml`` under ``directory`` (recursively, sorted by path).

    ``file`` of each record is ``<filename>`` from the XML (VOC stores the bare
    image name), or the XML stem when the XML has none.

    Raises:
        FacedetError: the folder is missing or holds no XML file, or a file is
            malformed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FacedetError(f"{directory}: annotation folder not found")
    files = sorted(directory.rglob("*.xml"))
    if not files:
        raise FacedetError(f"{directory}: no .xml annotation files found")
    return [read_voc_xml(f, classes=classes, one_based=one_based) for f in files]
