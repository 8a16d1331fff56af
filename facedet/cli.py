"""The ``facedet`` command line: a thin typer layer over library functions."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import List, Optional

import typer

from facedet import __version__
from facedet.cli_common import (
    EXIT_ERROR,
    EXIT_PARTIAL,
    EXIT_USAGE,
    OneLineErrors,
    atomic_write_text,
    backend_option,
    check_output_file,
    check_score_threshold,
    check_unit_interval,
    error,
    force_option,
    handle_errors,
    nms_threshold_option,
    pyramid_option,
    threads_option,
    threshold_option,
    warn,
)
from facedet.detector import ARCHS, DEFAULT_ARCH
from facedet.errors import FacedetError, UsageError
from facedet.imageio import DEFAULT_MAX_PIXELS, MAX_PIXELS_HELP
from facedet.inference import DEFAULT_MAX_FACES

app = typer.Typer(
    name="facedet",
    help="RNNPool face detection: detect, train, evaluate, profile.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
    epilog="Exit status: 0 success; 1 error; 2 usage error (a wrong command line, nothing done); 3 some inputs failed (each reported, the rest done); 130 interrupted.",
)

ARCH_HELP = "Model architecture: " + "; ".join(f"{s.name} = {s.description}" for s in ARCHS.values())


def _check_arch(arch: Optional[str]) -> Optional[str]:
    """Validate an --arch value with a one-line error (not a usage panel)."""
    if arch is not None and arch not in ARCHS:
        raise UsageError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHS)}")
    return arch


@functools.lru_cache(maxsize=None)
def _min_side(arch: str) -> int:
    """The smallest input side the architecture accepts (every layer keeps a non-empty map)."""
    from facedet.detector import build_model

    return build_model(arch).min_input_side()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"facedet {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit.")) -> None:
    """RNNPool face detection: detect, train, evaluate, profile."""
    import warnings

    from facedet.runtime import tune_allocator

    # library warnings (say, native kernels that were not built) as one line like every other message
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: warn(str(message))
    tune_allocator()


def _load_detector(weights: Optional[Path], arch: Optional[str], int8: bool = False, backend: str = "auto", threads: Optional[int] = None):
    from facedet.inference import Detector

    return Detector.load(weights, arch, quantized=int8, backend=backend, threads=threads, on_warning=warn)


INT8_HELP = "Run the shipped integer model (rnnpool_face_m4_int8.safetensors) instead of the float weights; a quantized --weights file is recognised without it."


@app.command()
@handle_errors
def detect(
    paths: List[Path] = typer.Argument(..., help="Image files, folders, or video files.", show_default=False),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="Weights file (.safetensors), float or quantized. Default: the shipped weights."),
    int8: bool = typer.Option(False, "--int8", help=INT8_HELP),
    arch: Optional[str] = typer.Option(None, "--arch", help="Architecture (m4, qvga, quant, c); must match the weights. Default: read from the weights file."),
    threshold: float = threshold_option(),
    nms_threshold: float = nms_threshold_option(),
    max_faces: int = typer.Option(DEFAULT_MAX_FACES, "--max-faces", min=1, help="At most this many faces per image."),
    pyramid: bool = pyramid_option(),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write results as JSON to FILE, or '-' for stdout.", metavar="FILE|-"),
    csv_out: Optional[str] = typer.Option(None, "--csv", help="Write one CSV row per face to FILE, or '-' for stdout.", metavar="FILE|-"),
    wider_txt: Optional[Path] = typer.Option(None, "--wider-txt", help="Write official WIDER FACE per-image .txt files into DIR.", metavar="DIR"),
    save: Optional[Path] = typer.Option(None, "--save", help="Write annotated images (JPEG, PNG, BMP, TIFF, WebP keep their format, others become .png) and videos (<name>_faces.mp4) into DIR.", metavar="DIR"),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Search folders recursively."),
    force: bool = force_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the per-image summary."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=1, help=MAX_PIXELS_HELP, metavar="N"),
    backend: str = backend_option(),
    threads: int = threads_option(),
) -> None:
    """Detect faces in images, folders and video files.

    Exit status: 0 all inputs processed, 1 nothing could be done, 2 usage error,
    3 some inputs failed (each is reported and skipped; the rest is written).
    """
    from facedet.detect import DetectOptions, run_detect, summary_lines
    from facedet.outputs import records_to_csv, records_to_json

    check_score_threshold("--threshold", threshold)
    check_unit_interval("--nms-threshold", nms_threshold)
    detector = _load_detector(weights, _check_arch(arch), int8, backend, threads)
    opts = DetectOptions(threshold, nms_threshold, max_faces, json_out, csv_out, wider_txt, save, recursive, force, pyramid, max_pixels)
    report = run_detect(paths, detector, opts, on_error=lambda f, msg: error(msg if str(f) in msg else f"{f}: {msg}"), on_warning=warn)
    if json_out == "-":
        typer.echo(records_to_json(report.records), nl=False)
    elif csv_out == "-":
        typer.echo(records_to_csv(report.records), nl=False)
    elif not quiet:
        for line in summary_lines(report.records):
            typer.echo(line)
    if report.failures:
        n, total = len(report.failures), len(report.failures) + report.processed
        error(f"{n} of {total} input{'s' if total != 1 else ''} failed")
        raise typer.Exit(EXIT_ERROR if report.processed == 0 else EXIT_PARTIAL)


@app.command()
@handle_errors
def webcam(
    camera: int = typer.Option(0, "--camera", "-c", min=0, help="Camera index."),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="Weights file, float or quantized. Default: the shipped weights."),
    int8: bool = typer.Option(False, "--int8", help=INT8_HELP),
    arch: Optional[str] = typer.Option(None, "--arch", help="Architecture (m4, qvga, quant, c); must match the weights."),
    threshold: float = threshold_option(),
    nms_threshold: float = nms_threshold_option(),
    pyramid: bool = pyramid_option(),
    backend: str = backend_option(),
    threads: int = threads_option(),
) -> None:
    """Live detection from a camera, with boxes and FPS drawn. Press q to quit."""
    from facedet.webcam import close_windows, display_error, has_display, open_camera, opencv_window, run_live

    check_score_threshold("--threshold", threshold)
    check_unit_interval("--nms-threshold", nms_threshold)
    no_window = "; use 'facedet detect' on a video file instead"
    if not has_display():
        raise FacedetError("no display available (DISPLAY/WAYLAND_DISPLAY is not set)" + no_window)
    detector = _load_detector(weights, _check_arch(arch), int8, backend, threads)
    capture = open_camera(camera)
    problem = display_error()
    if problem is not None:
        capture.release()
        raise FacedetError(problem + no_window)
    try:
        frames = run_live(capture, detector, opencv_window(), threshold=threshold, nms_threshold=nms_threshold, pyramid=pyramid)
    finally:
        close_windows()
    typer.echo(f"{frames} frames processed")


@app.command()
@handle_errors
def profile(
    arch: Optional[str] = typer.Option(None, "--arch", help=ARCH_HELP + f". Default: {DEFAULT_ARCH}, or the architecture of --weights."),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="A weights file (float or quantized): profile its architecture; a quantized file also reports its parameter bytes."),
    height: Optional[int] = typer.Option(None, "--height", help="Input height, at least the architecture's smallest input side (a smaller one is refused, naming it). Default: the model's nominal size."),
    width: Optional[int] = typer.Option(None, "--width", help="Input width, with the same minimum as --height. Default: the model's nominal size."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the profile as JSON to FILE, or '-' for stdout.", metavar="FILE|-"),
    force: bool = force_option("Overwrite an existing JSON file."),
) -> None:
    """Parameters, MACs, priors, per-layer activation memory and the firmware's streamed memory plan."""
    from facedet.profile import format_profile
    from facedet.profile import profile as run_profile

    _check_arch(arch)
    if json_out not in (None, "-"):
        check_output_file(json_out, force)
    program = None
    if weights is not None:
        from facedet.weights import is_quantized, read_metadata

        meta = read_metadata(weights)
        if arch is not None and meta["arch"] != arch:
            raise FacedetError(f"{weights} holds '{meta['arch']}' weights, but --arch is '{arch}'")
        arch = meta["arch"]
        if is_quantized(meta):
            from facedet.quant.qfile import load_program

            program, _ = load_program(weights, meta)
    arch = _check_arch(arch) or DEFAULT_ARCH
    for name, side in (("--height", height), ("--width", width)):
        if side is not None and side < _min_side(arch):
            raise UsageError(f"{name} must be at least {_min_side(arch)} for '{arch}' (its smallest input side), got {side}")
    result = run_profile(arch, height, width, program=program)
    if json_out == "-":
        typer.echo(json.dumps(result, indent=2))
        return
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(result, indent=2) + "\n")
    typer.echo(format_profile(result))


@app.command()
@handle_errors
def quantize(
    calib: List[Path] = typer.Option(..., "--calib", help="Calibration image or folder (searched recursively); repeat for several. Use training photos, never the photos you evaluate on.", show_default=False),
    out: Path = typer.Option(..., "--out", "-o", help="Quantized model file to write (.safetensors).", show_default=False),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="Float weights to quantize. Default: the shipped weights."),
    max_images: Optional[int] = typer.Option(None, "--max-images", min=1, help="Use at most N calibration images, evenly spread over the sorted list."),
    method: str = typer.Option("percentile", "--calib-method", help="Range of each inner tensor: percentile (0.01%..99.99%; the head outputs keep their full range) or minmax (every calibration value fits)."),
    requant: str = typer.Option("multiplier", "--requant", help="Requantization: multiplier (per-channel int32 multiplier and shift) or pow2 (shifts only, power-of-two scales)."),
    force: bool = force_option("Overwrite an existing output file."),
) -> None:
    """Turn float weights into an integer program (int8 activations, int16 RNNPool), calibrated on images.

    The file works everywhere float weights do: detect, webcam, evaluate and profile take it through --weights.
    """
    from facedet.cli_common import progress, warn
    from facedet.quant.calibrate import CALIB_METHODS
    from facedet.quant.pipeline import format_layers, quantize_weights
    from facedet.quant.quantize import REQUANT_MODES

    if method not in CALIB_METHODS:
        raise UsageError(f"--calib-method must be one of {', '.join(CALIB_METHODS)}, got {method!r}")
    if requant not in REQUANT_MODES:
        raise UsageError(f"--requant must be one of {', '.join(REQUANT_MODES)}, got {requant!r}")
    report = quantize_weights(
        weights, calib, out, max_images=max_images, force=force, method=method, requant=requant,
        on_skip=lambda f, msg: warn(f"skipped {msg if str(f) in msg else f'{f}: {msg}'}"),
        progress=lambda it, total, desc: progress(it, total=total, desc=desc, unit="image"),
    )
    for line in format_layers(report):
        typer.echo(line)
    for w in report.warnings:
        warn(w)
    skipped = f", {len(report.skipped)} skipped" if report.skipped else ""
    errors = ", ".join(f"{k} {m:.4f}" for k, (m, _) in report.errors.items())
    typer.echo(f"calibrated on {report.images} images ({report.inputs} pyramid inputs{skipped}); mean |error| against float on them: {errors}")
    typer.echo(f"wrote {report.out}")


@app.command("export-onnx")
@handle_errors
def export_onnx(
    out: Path = typer.Option(..., "--out", "-o", help="ONNX file to write.", show_default=False),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="Float weights to export. Default: the shipped weights."),
    height: Optional[int] = typer.Option(None, "--height", help="Fixed input height (with --width). Default: the model's nominal size."),
    width: Optional[int] = typer.Option(None, "--width", help="Fixed input width (with --height)."),
    dynamic: bool = typer.Option(False, "--dynamic", help="Any input size (and batch): symbolic height, width and batch. OpenCV 4.x reads only fixed sizes; OpenCV 5 and onnxruntime read both."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (11 or newer; 17 is read by onnxruntime >= 1.16 and OpenCV >= 4.8)."),
    force: bool = force_option("Overwrite an existing output file."),
) -> None:
    """Write the float model as an ONNX graph of standard operators (RNNPool unrolled), for onnxruntime or OpenCV's DNN module.

    Input: the normalised image float32[N, C, H, W] (as facedet prepares it); outputs: conf [N, P, 2]
    logits and loc [N, P, 4] box offsets, as the torch model's.  With onnxruntime installed the file
    is checked against torch (max difference 1e-4) before it is written.
    """
    from facedet.onnx_export import export_onnx as run_export

    report = run_export(weights, out, height=height, width=width, dynamic=dynamic, opset=opset, force=force)
    shape = "any size (dynamic)" if report.height is None else f"{report.height}x{report.width}"
    typer.echo(f"wrote {report.out}: {report.arch}, input {shape}, opset {report.opset}")
    if report.max_abs_diff is None:
        typer.echo("not checked against torch (onnxruntime is not installed)")
    else:
        d = report.max_abs_diff
        typer.echo(f"onnxruntime vs torch: max |difference| conf {d['conf']:.2g}, loc {d['loc']:.2g}")


@app.command("export-firmware")
@handle_errors
def export_firmware(
    out: Path = typer.Option(..., "--out", "-o", help="Bundle folder to write.", show_default=False),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="Quantized model (facedet quantize). Default: the shipped integer model."),
    ram_kib: int = typer.Option(128, "--ram-kib", min=1, help="RAM budget in KiB: the linker script's RAM region and the MPU limit; export fails if the plan does not fit."),
    threshold: float = threshold_option("Score threshold compiled into the firmware (a run may override it): a face is reported when its score is above X; X in [0, 1)."),
    nms_threshold: float = nms_threshold_option("NMS IoU threshold compiled into the firmware (a run may override it), in [0, 1]."),
    max_faces: int = typer.Option(64, "--max-faces", min=1, max=4096, help="Faces the result struct holds."),
    build: bool = typer.Option(True, "--build/--no-build", help="Also build the Cortex-M4 firmware and run it once under QEMU to measure its stack and sections (needs the toolchain)."),
    force: bool = force_option("Replace an existing bundle in --out."),
) -> None:
    """Write a C99 bundle that runs the integer program on a Cortex-M4 (weights, kernels, schedule, one arena, Makefile, linker script, memory report)."""
    from facedet.firmware.export import export_firmware as run_export
    from facedet.firmware.run import measure_bundle

    check_score_threshold("--threshold", threshold)
    check_unit_interval("--nms-threshold", nms_threshold)
    report = run_export(weights, out, ram_kib=ram_kib, force=force, max_faces=max_faces, score_threshold=threshold, nms_threshold=nms_threshold)
    plan = report.plan
    typer.echo(f"wrote {out}: {report.arch} at {report.height}x{report.width}, {len(plan.stages)} stages")
    typer.echo(f"arena {plan.arena_bytes:,} B (peak at {plan.peak_stage.name}), result {report.result_bytes:,} B, RAM budget {report.ram_budget:,} B")
    if build:
        from facedet.firmware import toolchain

        try:
            toolchain.check("m4")
        except FacedetError as exc:
            from facedet.cli_common import warn

            warn(f"not built: {exc}; memory_report.json gets its measured sizes at the first 'facedet firmware run'")
            return
        mem = measure_bundle(out)
        typer.echo(
            f"m4 build: RAM used {mem['ram_bytes']:,} B of {report.ram_budget:,} (stack high-water {mem['stack_bytes']:,} B), "
            f"flash {mem['flash_bytes']:,} B; see {out / 'memory_report.md'}"
        )


firmware_app = typer.Typer(help="Run an exported firmware bundle.", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@firmware_app.command("run")
@handle_errors
def firmware_run(
    bundle: Path = typer.Argument(..., help="Bundle folder written by facedet export-firmware.", show_default=False),
    images: List[Path] = typer.Argument(..., help="Images or folders.", show_default=False),
    target: str = typer.Option("m4", "--target", help="m4: the Cortex-M4 build under QEMU (mps2-an386, RAM limited by the MPU); host: the plain-C build on this machine."),
    check: bool = typer.Option(False, "--check", help="Also run the Python integer interpreter on the same frame and report bit_exact per image; any mismatch fails the command."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write results as JSON to FILE, or '-' for stdout.", metavar="FILE|-"),
    threshold: Optional[float] = typer.Option(None, "--threshold", "-t", help="Report a face when its score is above X (strictly); X in [0, 1). Default: the one compiled into the bundle.", metavar="X"),
    nms_threshold: Optional[float] = typer.Option(None, "--nms-threshold", help="NMS IoU threshold (default: the bundle's)."),
    timeout: float = typer.Option(120.0, "--timeout", min=1.0, help="Seconds one image may take before the run is stopped."),
    force: bool = force_option("Overwrite an existing JSON file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the per-image summary."),
) -> None:
    """Run images through the firmware: the faces it decoded (detect's JSON), executed instructions, wall time, and with --check bit-exactness.

    Exit status: 0 all images ran, 1 nothing ran or an image differs from the interpreter (--check),
    2 usage error, 3 some inputs failed (each is reported and skipped).
    """
    from facedet.cli_common import progress
    from facedet.firmware.run import run_firmware
    from facedet.outputs import records_to_json

    if threshold is not None:
        check_score_threshold("--threshold", threshold)
    if nms_threshold is not None:
        check_unit_interval("--nms-threshold", nms_threshold)
    if json_out not in (None, "-"):
        check_output_file(json_out, force)
    report = run_firmware(
        bundle, images, target=target, check=check, score_threshold=threshold, nms_threshold=nms_threshold, timeout=timeout,
        on_error=lambda f, msg: error(msg if str(f) in msg else f"{f}: {msg}"),
        progress=lambda it, total, desc: progress(it, total=total, desc=desc, unit="image"),
    )
    if json_out == "-":
        typer.echo(records_to_json(report.records), nl=False)
    else:
        if json_out is not None:
            atomic_write_text(json_out, records_to_json(report.records))
        if not quiet:
            for line in _firmware_lines(report.records):
                typer.echo(line)
            if report.memory:
                m = report.memory
                typer.echo(f"RAM used {m['ram_bytes']:,} B (arena {m['arena_bytes']:,}, stack {m['stack_bytes']:,}), flash {m['flash_bytes']:,} B")
    if report.mismatches:
        error(f"{report.mismatches} of {len(report.records)} images differ from the Python integer interpreter")
        raise typer.Exit(EXIT_ERROR)
    if report.failures:
        n, total = len(report.failures), len(report.failures) + len(report.records)
        error(f"{n} of {total} input{'s' if total != 1 else ''} failed")
        raise typer.Exit(EXIT_ERROR if not report.records else EXIT_PARTIAL)


def _firmware_lines(records: list[dict]) -> list[str]:
    from facedet.detect import summary_lines

    out = []
    for rec in records:
        extra = [f"{rec['instructions']:,} instructions" if rec.get("instructions") else None, f"{rec['wall_s']:.2f} s",
                 f"stack {rec['stack_bytes']:,} B" if rec.get("stack_bytes") else None]
        if "bit_exact" in rec:
            extra.append("bit-exact" if rec["bit_exact"] else f"NOT bit-exact ({rec['mismatched_values']} values differ)")
        lines = summary_lines([rec])
        lines[0] += "  [" + ", ".join(e for e in extra if e) + "]"
        out.append("\n".join(lines))
    return out


def _register_subcommands() -> None:
    from facedet.evaluation.cli import app as evaluate_app
    from facedet.training.cli import train_command

    app.command("train")(train_command)
    app.add_typer(evaluate_app, name="evaluate", help="Score detections: official WIDER FACE protocol, or AP on any annotated folder.")
    app.add_typer(firmware_app, name="firmware", help="Run an exported firmware bundle (QEMU Cortex-M4 or host build).")


_register_subcommands()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        error("interrupted")
        raise SystemExit(130)


__all__ = ["app", "main", "EXIT_ERROR", "EXIT_USAGE", "EXIT_PARTIAL"]
