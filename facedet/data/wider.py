"""WIDER FACE ground truth in its official layout (docs/training.md, "--data wider").

Layout under the WIDER root::

    WIDER_train/images/<event>/<name>.jpg
    WIDER_val/images/<event>/<name>.jpg
    wider_face_split/wider_face_train_bbx_gt.txt
    wider_face_split/wider_face_val_bbx_gt.txt

The ``bbx_gt`` file repeats, per image:

1. the image path relative to ``WIDER_<split>/images`` (e.g. ``0--Parade/0_Parade_marchingband_1_5.jpg``),
2. the face count ``n``,
3. ``n`` lines ``x y w h blur expression illumination invalid occlusion pose``
   (integer pixels, top-left corner plus size); when ``n`` is 0 one dummy line
   (all zeros) follows instead.

facedet converts ``x y w h`` to continuous corners ``[x, y, x + w, y + h]`` (no
"+1", see :mod:`facedet.boxes`).  Boxes with ``w <= 0`` or ``h <= 0`` are
always dropped.  Boxes flagged ``invalid`` are dropped by default -- the
RNNPool reference training code kept them; ``invalid="ignore"``
keeps them as ignored boxes instead (neither positive nor negative in training,
neither required nor penalised in evaluation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facedet.data.types import ImageAnnotation
from facedet.errors import FacedetError
from facedet.imageio import IMAGE_SUFFIXES

__all__ = ["SPLITS", "parse_wider_gt", "read_wider_gt", "load_wider"]

SPLITS = ("train", "val")
_INVALID_MODES = ("drop", "ignore", "keep")


def parse_wider_gt(text: str, source: str = "<bbx_gt>", invalid: str = "drop") -> list[ImageAnnotation]:
    """Parse the text of a ``wider_face_*_bbx_gt.txt`` file.

    Args:
        text: the file contents.
        source: file name for error messages.
        invalid: what to do with boxes flagged ``invalid``: ``drop`` (default),
            ``ignore`` (keep, marked ignored) or ``keep`` (as ordinary faces, the
            reference's behaviour).
    Returns:
        one :class:`ImageAnnotation` per record, in file order, ``file`` being
        the path as written (relative to ``WIDER_<split>/images``).  Images
        with no face (or none left) are included with zero boxes.
    Raises:
        FacedetError: ``source:LINE: problem`` for a malformed record.
    """
    if invalid not in _INVALID_MODES:
        raise ValueError(f"invalid must be one of {_INVALID_MODES}, got {invalid!r}")
    lines = text.splitlines()
    out: list[ImageAnnotation] = []
    i = 0
    n_lines = len(lines)
    while i < n_lines:
        name = lines[i].strip()
        if not name:  # tolerate blank lines between records and at the end
            i += 1
            continue
        name_line = i + 1
        if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            raise FacedetError(f"{source}:{name_line}: expected an image path, got {name[:60]!r}")
        i += 1
        if i >= n_lines:
            raise FacedetError(f"{source}:{name_line}: image {name!r} has no face count line")
        count_text = lines[i].strip()
        try:
            count = int(count_text)
        except ValueError:
            raise FacedetError(f"{source}:{i + 1}: expected the face count of {name!r}, got {count_text[:60]!r}") from None
        if count < 0:
            raise FacedetError(f"{source}:{i + 1}: negative face count {count}")
        i += 1
        rows = max(count, 1)  # a zero-face record is followed by one dummy line
        if i + rows > n_lines:
            raise FacedetError(f"{source}:{n_lines}: file ends inside the record of {name!r} ({count} faces announced)")
        boxes, ignore = [], []
        for k in range(rows):
            line_no = i + k + 1
            fields = lines[i + k].split()
            if len(fields) != 10:
                raise FacedetError(f"{source}:{line_no}: expected 10 fields 'x y w h blur expression illumination invalid occlusion pose', got {len(fields)}")
            try:
                vals = [float(v) for v in fields]
            except ValueError:
                raise FacedetError(f"{source}:{line_no}: non-numeric field in {lines[i + k].strip()[:80]!r}") from None
            if not all(np.isfinite(vals)):
                raise FacedetError(f"{source}:{line_no}: non-finite number")
            if count == 0:
                continue  # the dummy line
            x, y, w, h = vals[:4]
            is_invalid = vals[7] != 0
            if w <= 0 or h <= 0:
                continue
            if is_invalid and invalid == "drop":
                continue
            boxes.append((x, y, x + w, y + h))
            ignore.append(bool(is_invalid and invalid == "ignore"))
        i += rows
        out.append(ImageAnnotation(file=name, boxes=np.asarray(boxes, np.float32).reshape(-1, 4), ignore=np.asarray(ignore, bool)))
    return out


def read_wider_gt(path: str | Path, invalid: str = "drop") -> list[ImageAnnotation]:
    """Read a ``wider_face_*_bbx_gt.txt`` file (see :func:`parse_wider_gt`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise FacedetError(f"{path}: WIDER FACE annotation file not found") from None
    except UnicodeDecodeError:
        raise FacedetError(f"{path}: not a text file") from None
    return parse_wider_gt(text, str(path), invalid)


def load_wider(root: str | Path, split: str = "train", invalid: str = "drop") -> list[ImageAnnotation]:
    """WIDER FACE annotations of one split, with ``file`` relative to ``root``.

    Args:
        root: the folder holding ``WIDER_<split>/`` and ``wider_face_split/``.
        split: ``train`` or ``val``.
    Returns:
        records whose ``file`` is ``WIDER_<split>/images/<event>/<name>.jpg``.
    Raises:
        FacedetError: missing folders or annotation file, or a malformed line.
    """
    if split not in SPLITS:
        raise FacedetError(f"unknown WIDER FACE split {split!r}; choose one of: {', '.join(SPLITS)}")
    root = Path(root)
    if not root.is_dir():
        raise FacedetError(f"WIDER FACE root {root} is not a folder")
    images = root / f"WIDER_{split}" / "images"
    gt = root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"
    if not gt.is_file():
        raise FacedetError(f"{gt} not found (expected the official layout: {root}/wider_face_split/wider_face_{split}_bbx_gt.txt)")
    if not images.is_dir():
        raise FacedetError(f"{images} not found (expected the official layout: {root}/WIDER_{split}/images/<event>/*.jpg)")
    records = read_wider_gt(gt, invalid)
    prefix = f"WIDER_{split}/images/"
    for r in records:
        r.file = prefix + r.file.replace("\\", "/")
    return records
