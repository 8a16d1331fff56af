#!/usr/bin/env python3
"""Per-image detect time by backend and thread count, on an idle machine and under load.

What ``--threads`` defaults to is chosen from this table (docs/onnx.md,
"Threads").  For each backend (torch, onnxruntime when installed, the integer
interpreter) and each thread count, ``Detector.detect`` (default pyramid) runs
on one photo in a fresh process; "loaded" repeats it while ``--load`` other
processes spin on the CPU (what a laptop running other programs, or a CI
machine running tests in parallel, looks like).  Medians over ``--frames``.

Usage: python3 scripts/bench_threads.py [--image PHOTO] [--frames 20] [--threads 1 2] [--load 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time, statistics
from facedet.imageio import read_image
from facedet.inference import Detector
from facedet.runtime import tune_allocator
backend, threads, image, frames = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
tune_allocator()
det = Detector.load(None, quantized=backend == "int8", backend="auto" if backend == "int8" else backend, threads=threads)
img = read_image(image)
for _ in range(3):
    det.detect(img, pyramid=True)
times = []
for _ in range(frames):
    t = time.perf_counter(); det.detect(img, pyramid=True); times.append(time.perf_counter() - t)
print(json.dumps(statistics.median(times)))
"""


def measure(backend: str, threads: int, image: str, frames: int) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, backend, str(threads), image, str(frames)], capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        sys.exit(f"{backend} x{threads} failed: {out.stderr.strip()[-300:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, default=REPO / "tests" / "data" / "astronaut.jpg")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--load", type=int, default=1, help="spinning processes for the 'loaded' column")
    args = ap.parse_args()
    backends = ["torch"] + (["onnxruntime"] if importlib.util.find_spec("onnxruntime") else []) + ["int8"]
    image = str(args.image.resolve())
    rows = {}
    for loaded in (False, True):
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load if loaded else 0)]
        try:
            for b in backends:
                for t in args.threads:
                    rows[(b, t, loaded)] = measure(b, t, image, args.frames)
        finally:
            for p in spinners:
                p.kill()
                p.wait()
    print(f"detect (pyramid) per image, median ms; {os.cpu_count()} CPUs; loaded = {args.load} spinning process(es)")
    print(f"{'backend':<12} {'threads':>7} {'idle ms':>9} {'loaded ms':>10}")
    for b in backends:
        for t in args.threads:
            print(f"{b:<12} {t:>7} {1e3 * rows[(b, t, False)]:>9.1f} {1e3 * rows[(b, t, True)]:>10.1f}")


if __name__ == "__main__":
    main()
