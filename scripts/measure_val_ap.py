#!/usr/bin/env python3
"""AP@0.5 of facedet and of the teachers on the held-out real validation photos.

The validation photos are whole source photos held out of training by
``scripts/build_offline_dataset.py`` (``data/offline/val.json``; labels from the
RetinaFace teacher, checked by eye, doubtful faces marked ``ignore``).  Each
detector runs at a low score threshold (0.01) so the whole precision-recall
curve is scored; AP@0.5 and AP@[0.5:0.95] use facedet's folder evaluator
(COCO-style 101-point AP, ignore-aware matching).

    python scripts/measure_val_ap.py                       # shipped weights
    python scripts/measure_val_ap.py --weights runs/x/best.safetensors --json ap.json
    python scripts/measure_val_ap.py --no-teachers --list-misses    # which faces no box finds

Rows: facedet with the default image pyramid (what ``facedet detect`` does),
the same pyramid without its 1.5x level (the pyramid before it was added),
facedet single-scale (the paper's area-preserving test), and the two teachers
at their native resolution.  The teacher's AP is not an upper bound in
principle, but its labels define the ground truth, so it scores close to 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from facedet.data.generic import read_generic  # noqa: E402
from facedet.evaluation.folder import evaluate_folder  # noqa: E402
from facedet.imageio import read_image  # noqa: E402
from facedet.inference import DEFAULT_THRESHOLD, PYRAMID_UPSCALE, Detector  # noqa: E402
from facedet.runtime import tune_allocator  # noqa: E402


def run(name, fn, annotations, root: Path, threshold: float):
    """(table row, predictions ``{file: (boxes [N, 4], scores [N])}``) of one detector."""
    preds = {}
    t0 = time.perf_counter()
    for a in annotations:
        boxes, scores = fn(read_image(root / a.file))
        preds[a.file] = (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32).reshape(-1))
    seconds = time.perf_counter() - t0
    res = evaluate_folder(annotations, preds, threshold=threshold)
    row = {"detector": name, "ap50": res.ap50, "ap50_95": res.ap50_95, "threshold": threshold, "precision": res.precision, "recall": res.recall, "seconds": seconds}
    return row, preds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "offline", help="dataset root holding val.json")
    ap.add_argument("--split", default="val")
    ap.add_argument("--weights", type=Path, default=None, help="default: the shipped weights")
    ap.add_argument("--no-teachers", action="store_true", help="skip the teacher rows")
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help=f"score threshold for the P and R columns (default: facedet detect's, {DEFAULT_THRESHOLD})")
    ap.add_argument("--json", type=Path, default=None, help="also write the table as JSON")
    ap.add_argument("--list-misses", action="store_true", help="also list the faces that no facedet box (pyramid, score > 0.01) overlaps with IoU >= 0.5")
    args = ap.parse_args()
    torch.set_num_threads(2)
    tune_allocator()

    annotations = read_generic(args.data / f"{args.split}.json")
    det = Detector.load(args.weights)
    faces = sum(int((~a.ignore).sum()) for a in annotations)
    pyramid_row, pyramid_preds = run("facedet (pyramid, default)", lambda im: _ours(det, im, True), annotations, args.data, args.threshold)
    rows = [
        pyramid_row,
        run("facedet (pyramid without 1.5x level)", lambda im: _ours(det, im, True, upscale=None), annotations, args.data, args.threshold)[0],
        run("facedet (single scale)", lambda im: _ours(det, im, False), annotations, args.data, args.threshold)[0],
    ]
    if not args.no_teachers:
        import teachers

        teachers.set_threads(2)
        rows.append(run("teacher: RetinaFace-MobileNet0.25", lambda im: teachers.detect_retinaface(im, score_threshold=0.01), annotations, args.data, args.threshold)[0])
        rows.append(run("second opinion: YuNet", lambda im: teachers.detect_yunet(im, score_threshold=0.01), annotations, args.data, args.threshold)[0])

    weights = args.weights or "shipped weights"
    print(f"held-out validation: {args.data / (args.split + '.json')}: {len(annotations)} photos, {faces} faces; facedet weights: {weights}")
    print(f"P and R: precision and recall (IoU >= 0.5) of the detections scoring above {args.threshold}")
    print(f"{'detector':<36} {'AP@0.5':>7} {'AP@[.5:.95]':>12} {'P':>6} {'R':>6} {'s/img':>6}")
    for r in rows:
        print(f"{r['detector']:<36} {r['ap50']:>7.3f} {r['ap50_95']:>12.3f} {r['precision']:>6.3f} {r['recall']:>6.3f} {r['seconds'] / len(annotations):>6.3f}")
    if args.list_misses:
        print("faces missed at every threshold (facedet pyramid, best IoU of any box):")
        for file, box, best in _misses(annotations, pyramid_preds):
            print(f"  {file}: face {[round(float(v)) for v in box]} best IoU {best:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"photos": len(annotations), "faces": faces, "rows": rows}, indent=2) + "\n")


def _misses(annotations, preds):
    """(file, face box, best IoU) for each non-ignored face that no predicted box matches at IoU 0.5."""
    from facedet.boxes import box_iou

    out = []
    for a in annotations:
        boxes = preds[a.file][0]
        for box, ign in zip(a.boxes, a.ignore):
            if ign:
                continue
            best = float(box_iou(torch.as_tensor(boxes, dtype=torch.float32), torch.as_tensor(box[None], dtype=torch.float32)).max()) if len(boxes) else 0.0
            if best < 0.5:
                out.append((a.file, box, best))
    return out


def _ours(det: Detector, image: np.ndarray, pyramid: bool, upscale: float | None = PYRAMID_UPSCALE):
    d = det.detect(image, threshold=0.01, pyramid=pyramid, upscale=upscale)
    return d.boxes, d.scores


if __name__ == "__main__":
    main()
