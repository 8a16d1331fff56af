#!/usr/bin/env python3
"""AP of facedet on the held-out validation photos for several pyramid level sets.

Each level set is a list of multiples of the area-preserving base scale, run
through ``Detector.detect_scales`` at score threshold 0.01: the same per-level
post-processing and merging (one NMS at 0.3, at most 750 boxes) as
``Detector.detect(pyramid=True)``.  Levels that
would shrink the image below twice the model's minimum input side are skipped,
as in ``Detector.pyramid_scales``; upscaled levels are always run here.

    python scripts/measure_pyramid_levels.py                       # shipped weights
    python scripts/measure_pyramid_levels.py --weights runs/x/best.safetensors

This is how the default pyramid's 1.5x level was chosen (weights/README.md):
the rows are measured on the same photos that report the final AP, so the
chosen row's AP is optimistic.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facedet.data.generic import read_generic  # noqa: E402
from facedet.evaluation.folder import evaluate_folder  # noqa: E402
from facedet.imageio import read_image  # noqa: E402
from facedet.inference import Detector  # noqa: E402
from facedet.preprocess import network_scale  # noqa: E402
from facedet.runtime import tune_allocator  # noqa: E402

LEVEL_SETS = [
    (1.0,),
    (1.0, 0.5, 0.25),
    (1.5, 1.0, 0.5, 0.25),
    (2.0, 1.0, 0.5, 0.25),
    (1.41, 1.0, 0.71, 0.5, 0.35, 0.25),
    (1.0, 0.71, 0.5, 0.35, 0.25),
]


def detect_levels(det: Detector, image: np.ndarray, multiples) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    base = network_scale(h, w, det.spec.input_size)
    scales = [base * m for m in multiples if m >= 1 or min(h, w) * base * m >= 2 * det.model.min_input_side()]
    d = det.detect_scales(image, scales, threshold=0.01)
    return d.boxes, d.scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "offline", help="dataset root holding val.json")
    ap.add_argument("--weights", type=Path, default=None, help="default: the shipped weights")
    ap.add_argument("--threshold", type=float, default=0.8, help="score threshold for the P and R columns (default 0.8)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    tune_allocator()
    annotations = read_generic(args.data / "val.json")
    images = {a.file: read_image(args.data / a.file) for a in annotations}
    det = Detector.load(args.weights)
    print(f"held-out validation: {len(annotations)} photos, {sum(int((~a.ignore).sum()) for a in annotations)} faces; weights: {args.weights or 'shipped weights'}")
    print(f"{'levels (x base scale)':<36} {'AP@0.5':>7} {'AP@[.5:.95]':>12} {'P':>6} {'R':>6}   (P, R above {args.threshold})")
    for levels in LEVEL_SETS:
        preds = {f: detect_levels(det, im, levels) for f, im in images.items()}
        res = evaluate_folder(annotations, preds, threshold=args.threshold)
        print(f"{', '.join(f'{m:g}' for m in levels):<36} {res.ap50:>7.3f} {res.ap50_95:>12.3f} {res.precision:>6.3f} {res.recall:>6.3f}")


if __name__ == "__main__":
    main()
