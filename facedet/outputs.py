"""Machine-readable outputs: JSON, CSV and the official WIDER FACE per-image text."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np


def format_wider_txt(image_name: str, boxes: np.ndarray, scores: np.ndarray) -> str:
    """The official WIDER FACE prediction file for one image.

    Line 1 is the image name, line 2 the number of boxes, then one line per box
    ``x y w h score`` with ``w = x2 - x1`` and ``h = y2 - y1`` (facedet's
    xyxy contract; the evaluator adds its own +1).

    Args:
        image_name: e.g. ``0_Parade_marchingband_1_20`` (written as given).
        boxes: ``float[N, 4]`` xyxy pixels.
        scores: ``float[N]``.
    """
    lines = [image_name, str(len(scores))]
    for (x1, y1, x2, y2), s in zip(np.asarray(boxes, dtype=np.float64), np.asarray(scores, dtype=np.float64)):
        lines.append(f"{x1:.1f} {y1:.1f} {x2 - x1:.1f} {y2 - y1:.1f} {s:.3f}")
    return "\n".join(lines) + "\n"


def records_to_json(records: list[dict]) -> str:
    """The ``--json`` document: a list with one object per image (see README)."""
    return json.dumps(records, indent=2) + "\n"


CSV_HEADER = ["image", "frame", "width", "height", "face", "x1", "y1", "x2", "y2", "score"]


def records_to_csv(records: list[dict]) -> str:
    """One row per face (images without faces get no row); columns :data:`CSV_HEADER`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for rec in records:
        for i, face in enumerate(rec["faces"]):
            writer.writerow([rec["image"], rec.get("frame", ""), rec["width"], rec["height"], i, *face["box"], face["score"]])
    return buf.getvalue()


def wider_txt_path(out_dir: Path, image_path: Path, root: Path | None) -> Path:
    """Where the WIDER text for ``image_path`` goes: ``out_dir/<event>/<stem>.txt``.

    The event folder is the image's parent folder name relative to ``root`` (the
    folder given on the command line), or the parent's name for single files.
    """
    if root is not None:
        try:
            rel = image_path.relative_to(root)
            return out_dir / rel.with_suffix(".txt")
        except ValueError:
            pass
    return out_dir / image_path.parent.name / (image_path.stem + ".txt")
