#!/usr/bin/env python3
"""How close the integer program is to the float model (docs/quantization.md §8).

Two parts:

1. **Design choices** (``--variants``): calibrates once on training photos,
   builds the integer program with each requantization scheme and
   calibration method, and prints the error of the dequantized head outputs
   against float on the held-out validation photos (never used for
   calibration): mean and max ``|error|`` of the face logit, the background
   logit and the box offsets, over every prior of every pyramid level.
2. **A quantized file** (``--quantized FILE``, default the shipped
   ``weights/rnnpool_face_m4_int8.safetensors``): the same error figures, and
   AP@0.5 and AP@[.5:.95] of float and integer detection on the validation
   photos, with the image pyramid (``facedet detect``'s default) and at a
   single scale.

    python scripts/measure_quant.py                        # part 2 for the shipped file
    python scripts/measure_quant.py --variants --max-images 200
    python scripts/measure_quant.py --quantized q.safetensors --weights runs/x/best.safetensors
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facedet.data.generic import read_generic  # noqa: E402
from facedet.evaluation.folder import evaluate_folder  # noqa: E402
from facedet.imageio import read_image  # noqa: E402
from facedet.inference import Detector  # noqa: E402
from facedet.quant.calibrate import CALIB_METHODS, RangeObserver, observe_float  # noqa: E402
from facedet.quant.pipeline import compare_with_float, program_outputs, pyramid_inputs, select_images  # noqa: E402
from facedet.quant.quantize import REQUANT_MODES, input_qparams, quantize_program  # noqa: E402
from facedet.runtime import tune_allocator  # noqa: E402
from facedet.weights import default_weights_path  # noqa: E402


def ap_rows(det: Detector, annotations, root: Path) -> list[tuple[str, float, float]]:
    rows = []
    for name, pyramid in (("pyramid", True), ("single scale", False)):
        preds = {}
        for a in annotations:
            d = det.detect(read_image(root / a.file), threshold=0.01, pyramid=pyramid)
            preds[a.file] = (d.boxes, d.scores)
        res = evaluate_folder(annotations, preds, threshold=0.5)
        rows.append((name, res.ap50, res.ap50_95))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None, help="float weights (default: the shipped ones)")
    ap.add_argument("--quantized", type=Path, default=None, help="quantized file for part 2 (default: the shipped one)")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "offline", help="dataset root with val.json and images/")
    ap.add_argument("--variants", action="store_true", help="part 1: compare requantization schemes and calibration methods")
    ap.add_argument("--calib", type=Path, default=None, help="calibration folder for --variants (default: DATA/images/train)")
    ap.add_argument("--max-images", type=int, default=200, help="calibration images for --variants")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tune_allocator()

    annotations = read_generic(args.data / "val.json")
    val_images = [read_image(args.data / a.file) for a in annotations]
    float_det = Detector.load(args.weights)
    print(f"validation photos: {len(annotations)} ({args.data / 'val.json'}); float weights: {args.weights or default_weights_path('m4')}")

    if args.variants:
        calib = select_images([args.calib or args.data / "images" / "train"], args.max_images)
        graph = float_det.model.lower()
        obs = RangeObserver()
        t = time.perf_counter()
        for f in calib:
            for x in pyramid_inputs(float_det, read_image(f)):
                observe_float(graph, x, obs)
        print(f"calibrated on {len(calib)} training photos in {time.perf_counter() - t:.0f} s")
        qin = input_qparams(float_det.spec.mean_bgr, float_det.spec.in_channels)
        outputs = program_outputs(graph)
        print(f"{'requant':<11} {'calibration':<11} {'bias corr.':<10} {'face logit mean/max':>20} {'background mean/max':>20} {'box offsets mean/max':>21}")
        for requant in REQUANT_MODES:
            for method in CALIB_METHODS:
                for corr in (False, True):
                    program = quantize_program(graph, float_det.arch, qin, obs.ranges(method, outputs), requant, obs.channel_means() if corr else None)
                    e = compare_with_float(float_det, program, val_images).summary()
                    cells = "".join(f" {e[k][0]:>11.4f}/{e[k][1]:<8.3f}" for k in ("face logit", "background logit", "box offsets"))
                    print(f"{requant:<11} {method:<11} {'yes' if corr else 'no':<10}{cells}")
        return

    qpath = args.quantized or default_weights_path("m4", quantized=True)
    if qpath is None:
        sys.exit("no quantized file: pass --quantized FILE")
    qdet = Detector.load(qpath)
    print(f"quantized file: {qpath}")
    e = compare_with_float(float_det, qdet.program, val_images).summary()
    for k, (mean, mx) in e.items():
        print(f"  |{k} error| against float: mean {mean:.4f}, max {mx:.3f}")
    print(f"{'detector':<24} {'mode':<13} {'AP@0.5':>7} {'AP@[.5:.95]':>12}")
    for label, det in (("float", float_det), ("integer", qdet)):
        for mode, ap50, ap5095 in ap_rows(det, annotations, args.data):
            print(f"{label:<24} {mode:<13} {ap50:>7.3f} {ap5095:>12.3f}")


if __name__ == "__main__":
    main()
