"""SCUT-HEAD (Part B) in its official PASCAL VOC layout (docs/training.md, "--data scut").

Layout under the SCUT-HEAD Part B root::

    Annotations/PartB_00001.xml          one VOC XML file per image
    ImageSets/Main/trainval.txt          image ids, one per line
    ImageSets/Main/test.txt              (train.txt / val.txt also accepted)
    JPEGImages/PartB_00001.jpg

Boxes are read with :func:`facedet.data.voc.read_voc_xml` (VOC 1-based
inclusive pixel indices -> continuous corners; ``<difficult>1</difficult>``
-> ignored).  Zero-size boxes are dropped.  Every object counts as a head,
whatever its ``<name>``.
"""

from __future__ import annotations

from pathlib import Path

from facedet.data.types import ImageAnnotation
from facedet.data.voc import read_voc_xml
from facedet.errors import FacedetError

__all__ = ["SPLITS", "load_scut"]

SPLITS = ("trainval", "test", "train", "val")


def load_scut(root: str | Path, split: str = "trainval") -> list[ImageAnnotation]:
    """SCUT-HEAD annotations of one split, with ``file`` relative to ``root``.

    Args:
        root: the Part B folder (holding ``Annotations/``, ``ImageSets/``, ``JPEGImages/``).
        split: an image-set name under ``ImageSets/Main`` (``trainval``, ``test``, ...).
    Returns:
        records whose ``file`` is ``JPEGImages/<id>.jpg``, in list order.
    Raises:
        FacedetError: missing folders, list or XML file, or a malformed XML file.
    """
    root = Path(root)
    if not root.is_dir():
        raise FacedetError(f"SCUT-HEAD root {root} is not a folder")
    lst = root / "ImageSets" / "Main" / f"{split}.txt"
    if not lst.is_file():
        raise FacedetError(f"{lst} not found (expected the official layout: {root}/ImageSets/Main/{{trainval,test}}.txt)")
    for sub in ("Annotations", "JPEGImages"):
        if not (root / sub).is_dir():
            raise FacedetError(f"{root / sub} not found (expected the official SCUT-HEAD layout)")
    out: list[ImageAnnotation] = []
    for line_no, line in enumerate(lst.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 1:
            raise FacedetError(f"{lst}:{line_no}: expected one image id per line, got {line.strip()[:60]!r}")
        image_id = fields[0]
        xml = root / "Annotations" / f"{image_id}.xml"
        if not xml.is_file():
            raise FacedetError(f"{lst}:{line_no}: annotation {xml} not found")
        ann = read_voc_xml(xml)
        keep = (ann.boxes[:, 2] > ann.boxes[:, 0]) & (ann.boxes[:, 3] > ann.boxes[:, 1])
        name = ann.file if ann.file and Path(ann.file).suffix else f"{image_id}.jpg"
        out.append(ImageAnnotation(file=f"JPEGImages/{Path(name).name}", boxes=ann.boxes[keep], ignore=ann.ignore[keep], width=ann.width, height=ann.height))
    if not out:
        raise FacedetError(f"{lst} lists no image")
    return out

