#!/usr/bin/env python3
"""Inference speed of a facedet model on this CPU, float and integer.

Measures, after warm-up, the median and 90th-percentile latency of
(1) the network forward pass alone on a fixed-size input and
(2) the whole ``Detector.detect`` call (resize, normalise, forward, decode,
NMS) on a real photo, at the single area-preserving scale and with the image
pyramid that ``facedet detect`` runs by default (its levels are printed),
(3) the same forward pass and single-scale ``detect`` with the integer program
(the shipped quantized file, or ``--quantized FILE``) in the numpy
interpreter, with its ratio to the float forward measured in the same run,
plus the process's peak resident memory.

    python scripts/bench_speed.py                 # m4 at 320x240, 2 threads, 100 frames
    python scripts/bench_speed.py --arch quant --height 480 --width 640
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facedet.detector import build_model  # noqa: E402
from facedet.imageio import read_image  # noqa: E402
from facedet.inference import Detector  # noqa: E402
from facedet.runtime import tune_allocator  # noqa: E402
from facedet.weights import default_weights_path  # noqa: E402


def timed(fn, frames: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(frames):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="m4")
    ap.add_argument("--height", type=int, default=None, help="forward-pass input height (default: the model's nominal)")
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--frames", type=int, default=100, help="timed frames (>= 50)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--image", type=Path, default=ROOT / "tests" / "data" / "astronaut.jpg")
    ap.add_argument("--weights", type=Path, default=None, help="default: the shipped weights, else untrained")
    ap.add_argument("--default-allocator", action="store_true", help="skip facedet.runtime.tune_allocator() (what the CLI does)")
    ap.add_argument("--quantized", type=Path, default=None, help="integer model to time (default: the shipped one for --arch, if any)")
    args = ap.parse_args()
    if args.frames < 50:
        ap.error("--frames must be at least 50")
    torch.set_num_threads(args.threads)
    tuned = False if args.default_allocator else tune_allocator()

    weights = args.weights or default_weights_path(args.arch)
    if weights is not None:
        det = Detector.load(weights, args.arch)
        source = str(weights.name)
    else:
        torch.manual_seed(0)
        det = Detector(build_model(args.arch))
        source = "untrained (no weights installed)"
    spec = det.spec
    h = args.height or spec.input_size[0]
    w = args.width or spec.input_size[1]
    x = torch.randn(1, spec.in_channels, h, w)

    with torch.inference_mode():
        fwd = timed(lambda: det.model(x), args.frames, args.warmup)
    image = read_image(args.image)
    e2e = timed(lambda: det.detect(image), args.frames, args.warmup)
    pyr = timed(lambda: det.detect(image, pyramid=True), args.frames, args.warmup)
    octaves = timed(lambda: det.detect(image, pyramid=True, upscale=None), args.frames, args.warmup)
    qpath = args.quantized or default_weights_path(args.arch, quantized=True)
    if qpath is not None:
        qdet = Detector.load(qpath)
        with torch.inference_mode():
            qfwd = timed(lambda: qdet.forward(x), args.frames, args.warmup)
        qe2e = timed(lambda: qdet.detect(image), args.frames, args.warmup)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    def q90(v):
        return sorted(v)[int(0.9 * (len(v) - 1))]

    print(f"facedet speed: arch {args.arch}, weights {source}, torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, allocator {'tuned' if tuned else 'default'}")
    print(f"{'stage':<40} {'median ms':>10} {'p90 ms':>8} {'FPS':>7}")
    print(f"{f'forward {h}x{w}x{spec.in_channels}':<40} {statistics.median(fwd):>10.2f} {q90(fwd):>8.2f} {1000 / statistics.median(fwd):>7.1f}")
    ih, iw = image.shape[:2]
    print(f"{f'detect() on {args.image.name} ({iw}x{ih})':<40} {statistics.median(e2e):>10.2f} {q90(e2e):>8.2f} {1000 / statistics.median(e2e):>7.1f}")
    print(f"{'detect(pyramid=True), the CLI default':<40} {statistics.median(pyr):>10.2f} {q90(pyr):>8.2f} {1000 / statistics.median(pyr):>7.1f}")
    print(f"{'  the same without the 1.5x level':<40} {statistics.median(octaves):>10.2f} {q90(octaves):>8.2f} {1000 / statistics.median(octaves):>7.1f}")
    if qpath is not None:
        ratio = statistics.median(qfwd) / statistics.median(fwd)
        print(f"{f'integer forward {h}x{w}x{spec.in_channels}':<40} {statistics.median(qfwd):>10.2f} {q90(qfwd):>8.2f} {1000 / statistics.median(qfwd):>7.1f}   {ratio:.2f}x the float forward ({qpath.name})")
        print(f"{'integer detect(), single scale':<40} {statistics.median(qe2e):>10.2f} {q90(qe2e):>8.2f} {1000 / statistics.median(qe2e):>7.1f}")
    print("pyramid levels: " + ", ".join(f"{round(ih * s)}x{round(iw * s)}" for s in det.pyramid_scales(ih, iw)))
    print(f"frames timed: {args.frames} after {args.warmup} warm-up; peak RSS {rss_mb:.0f} MiB")


if __name__ == "__main__":
    main()
