"""``facedet evaluate``: the WIDER FACE protocol and generic annotated folders.

Mounted by :mod:`facedet.cli` as ``app.add_typer(eval_app, name="evaluate")``.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from facedet.cli_common import (
    EXIT_PARTIAL,
    atomic_write_text,
    backend_option,
    check_output_dir,
    check_output_file,
    check_score_threshold,
    check_unit_interval,
    error,
    force_option,
    handle_errors,
    nms_threshold_option,
    threads_option,
    threshold_option,
    warn,
)
from facedet.errors import FacedetError, UsageError
from facedet.evaluation.runner import DEFAULT_MODE, EVAL_THRESHOLD
from facedet.imageio import DEFAULT_MAX_PIXELS, MAX_PIXELS_HELP

app = typer.Typer(
    help="Evaluate a face detector: the official WIDER FACE protocol, or any VOC / generic-JSON annotated folder.",
    no_args_is_help=True,
)


class Split(str, Enum):
    val = "val"
    test = "test"
    train = "train"


class Mode(str, Enum):
    single = "single"
    multiscale = "multiscale"
    pyramid = "pyramid"


def _load_detector(weights: Optional[Path], arch: Optional[str], int8: bool = False, backend: str = "auto", threads: Optional[int] = None):
    """Indirection so tests can substitute a detector."""
    from facedet.inference import Detector

    return Detector.load(weights, arch, quantized=int8, backend=backend, threads=threads, on_warning=warn)


def _check_reports(json_out: Optional[str], plot: Optional[Path], force: bool) -> None:
    """Validate report destinations before any work starts."""
    if json_out is not None and json_out != "-":
        check_output_file(Path(json_out), force)
    if plot is not None:
        if plot.suffix.lower() != ".png":
            raise UsageError(f"--plot {plot}: expected a .png file name")
        check_output_file(plot, force)


def _emit(doc: dict, summary: list[str], json_out: Optional[str]) -> None:
    """JSON to a file or stdout; the human summary to stdout (stderr when stdout carries JSON)."""
    text = json.dumps(doc, indent=1) + "\n"
    if json_out == "-":
        for line in summary:
            typer.echo(line, err=True)
        typer.echo(text, nl=False)
        return
    for line in summary:
        typer.echo(line)
    if json_out is not None:
        atomic_write_text(Path(json_out), text)


def _warn_missing(n: int, total: int) -> None:
    warn(f"{n} of {total} images have no prediction file; they count as images without detections")


def _run_detector(detector, items, max_pixels: int, **kw):
    """:func:`run_detector` with facedet's reader; an unreadable image is reported (one line) and skipped."""
    from functools import partial

    from facedet.evaluation.runner import run_detector
    from facedet.imageio import read_image

    preds, stats = run_detector(
        detector, items, loader=partial(read_image, max_pixels=max_pixels), on_error=lambda f, msg: error(msg if str(f) in msg else f"{f}: {msg}"), **kw
    )
    if stats.failed and not stats.processed and not stats.skipped:
        raise FacedetError(f"none of the {len(stats.failed)} images could be read")
    return preds, stats


def _exit_if_failed(stats) -> None:
    """The "some inputs failed" exit status, after everything else was written."""
    if stats is not None and stats.failed:
        n = len(stats.failed)
        error(f"{n} of {n + stats.processed + stats.skipped} images failed")
        raise typer.Exit(EXIT_PARTIAL)


WEIGHTS_HELP = "Weights file, float or quantized (facedet quantize). Default: the shipped weights."
INT8_HELP = "Run the shipped integer model instead of the float weights."
ARCH_HELP = "Architecture; must match the weights. Default: read from the weights file."
MODE_HELP = (
    "pyramid: what facedet detect runs by default (so AP scores what users get); "
    "single: the area-preserving single scale (detect --single-scale, the paper's test); "
    "multiscale: the S3FD shrink/enlarge + flip + box-voting protocol."
)
EVAL_THRESHOLD_HELP = "The detector keeps detections scoring above X, in [0, 1); low, because AP needs the low-score tail."
FORCE_HELP = "Recompute existing prediction files and overwrite report files."


@app.command("wider")
@handle_errors
def wider(
    pred_dir: Optional[Path] = typer.Option(None, "--pred-dir", help="Score existing predictions: DIR/<event>/<image>.txt in the official format.", metavar="DIR"),
    gt_dir: Optional[Path] = typer.Option(None, "--gt-dir", help="Official eval_tools ground truth: wider_face_val.mat and wider_{easy,medium,hard}_val.mat.", metavar="DIR"),
    wider_root: Optional[Path] = typer.Option(None, "--wider-root", help="Run our detector on <DIR>/WIDER_<split>/images/<event>/*.jpg (needs --out).", metavar="DIR"),
    split: Split = typer.Option(Split.val, "--split", help="WIDER split to run on with --wider-root."),
    mode: Mode = typer.Option(Mode(DEFAULT_MODE), "--mode", help=MODE_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Where --wider-root writes DIR/<event>/<image>.txt (resumable).", metavar="DIR"),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help=WEIGHTS_HELP),
    int8: bool = typer.Option(False, "--int8", help=INT8_HELP),
    arch: Optional[str] = typer.Option(None, "--arch", help=ARCH_HELP),
    eval_threshold: float = typer.Option(EVAL_THRESHOLD, "--eval-threshold", help=EVAL_THRESHOLD_HELP, metavar="X"),
    nms_threshold: float = nms_threshold_option(),
    workers: int = typer.Option(2, "--workers", min=0, help="Image-decoding threads (0: none)."),
    force: bool = force_option(FORCE_HELP),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write APs and PR curves as JSON to FILE, or '-' for stdout.", metavar="FILE|-"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the PR curves to a PNG file.", metavar="FILE.png"),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=1, help=MAX_PIXELS_HELP, metavar="N"),
    backend: str = backend_option(),
    threads: int = threads_option(),
) -> None:
    """WIDER FACE: score predictions (--pred-dir) or run the detector first (--wider-root --out).

    AP equals the official MATLAB eval_tools / its Python port (IoU 0.5, +1-pixel
    convention, scores normalised over the set, 1000 thresholds).
    """
    from facedet.evaluation.wider import evaluate_wider

    check_score_threshold("--eval-threshold", eval_threshold)
    check_unit_interval("--nms-threshold", nms_threshold)
    if wider_root is not None and pred_dir is not None:
        raise UsageError("give either --pred-dir (score existing predictions) or --wider-root (run the detector), not both")
    if wider_root is None and pred_dir is None:
        raise UsageError("nothing to evaluate: give --pred-dir DIR or --wider-root DIR --out DIR")
    if wider_root is not None and out is None:
        raise UsageError("--wider-root needs --out DIR for the prediction files")
    if gt_dir is None and (json_out is not None or plot is not None or pred_dir is not None):
        raise UsageError("scoring needs --gt-dir DIR (the official eval_tools ground truth)")
    _check_reports(json_out, plot, force)

    stats = None
    if wider_root is not None:
        from facedet.evaluation.runner import wider_items

        items = wider_items(wider_root, split.value, out)
        check_output_dir(out)
        detector = _load_detector(weights, arch, int8, backend, threads)
        _, stats = _run_detector(detector, items, max_pixels, mode=mode.value, threshold=eval_threshold, nms_threshold=nms_threshold, force=force, workers=workers)
        msg = f"detected {stats.processed} images ({stats.images_per_second:.2f} img/s), skipped {stats.skipped} with existing predictions -> {out}"
        typer.echo(msg, err=json_out == "-")
        pred_dir = out
        if gt_dir is None:
            _exit_if_failed(stats)
            return

    result = evaluate_wider(pred_dir, gt_dir, on_missing=_warn_missing)
    summary = [f"{s:<6} AP {result.ap[s]:.4f}  ({result.faces[s]} faces)" for s in ("easy", "medium", "hard")]
    if plot is not None:
        from facedet.evaluation.plots import plot_wider_result

        plot_wider_result(result, plot)
    _emit(result.to_json(), summary, json_out)
    _exit_if_failed(stats)


@app.command("folder")
@handle_errors
def folder(
    images: Path = typer.Option(..., "--images", help="Image root; annotation file names are relative to it.", metavar="DIR", show_default=False),
    annotations: Path = typer.Option(..., "--annotations", help="Generic-format JSON file, or a folder of PASCAL VOC XML files.", metavar="FILE|DIR", show_default=False),
    pred_dir: Optional[Path] = typer.Option(None, "--pred-dir", help="Score existing predictions DIR/<image minus suffix>.txt (official WIDER per-image format) instead of running the detector.", metavar="DIR"),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write our detector's predictions there (resumable).", metavar="DIR"),
    mode: Mode = typer.Option(Mode(DEFAULT_MODE), "--mode", help=MODE_HELP),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help=WEIGHTS_HELP),
    int8: bool = typer.Option(False, "--int8", help=INT8_HELP),
    arch: Optional[str] = typer.Option(None, "--arch", help=ARCH_HELP),
    eval_threshold: float = typer.Option(EVAL_THRESHOLD, "--eval-threshold", help=EVAL_THRESHOLD_HELP, metavar="X"),
    nms_threshold: float = nms_threshold_option(),
    threshold: float = threshold_option("Operating point of precision / recall / F1: the detections scoring above X, as facedet detect -t X reports them; X in [0, 1)."),
    classes: Optional[List[str]] = typer.Option(None, "--class", help="VOC: keep only objects of this class (repeatable). Default: all objects."),
    voc_one_based: bool = typer.Option(True, "--voc-one-based/--voc-zero-based", help="VOC coordinates are 1-based inclusive pixel indices (standard) or 0-based corners."),
    workers: int = typer.Option(2, "--workers", min=0, help="Image-decoding threads (0: none)."),
    force: bool = force_option(FORCE_HELP),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the metrics and PR curve as JSON to FILE, or '-' for stdout.", metavar="FILE|-"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the PR curve (IoU 0.5) to a PNG file.", metavar="FILE.png"),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=1, help=MAX_PIXELS_HELP, metavar="N"),
    backend: str = backend_option(),
    threads: int = threads_option(),
) -> None:
    """Any VOC-XML or generic-JSON annotated folder: AP@0.5, AP@[0.5:0.95], precision/recall at --threshold.

    Images without annotations count as negatives.  An image that cannot be read
    is reported, left out of the metrics, and makes the exit status "some inputs failed".
    """
    from facedet.evaluation.folder import (
        evaluate_folder,
        load_folder_annotations,
        prediction_path,
        read_folder_predictions,
    )

    check_score_threshold("--eval-threshold", eval_threshold)
    check_unit_interval("--nms-threshold", nms_threshold)
    check_score_threshold("--threshold", threshold)
    if pred_dir is not None and out is not None:
        raise UsageError("give either --pred-dir (score existing predictions) or --out (run the detector and keep its files), not both")
    _check_reports(json_out, plot, force)
    anns, unannotated = load_folder_annotations(images, annotations, classes=classes or None, voc_one_based=voc_one_based)
    if not anns:
        raise FacedetError(f"{annotations}: no images to evaluate")
    _refuse_overwriting([json_out, plot], [annotations, *(images / a.file for a in anns)])
    if unannotated:
        warn(f"{unannotated} images under {images} have no annotation file; they count as negatives")

    stats = None
    if pred_dir is not None:
        preds, missing = read_folder_predictions(pred_dir, anns)
        if missing:
            _warn_missing(missing, len(anns))
    else:
        from facedet.evaluation.runner import RunItem

        if out is not None:
            check_output_dir(out)
        items = [RunItem(a.file, images / a.file, prediction_path(out, a.file) if out is not None else None, Path(a.file).stem) for a in anns]
        if out is not None:
            _check_unique_predictions(items)
        detector = _load_detector(weights, arch, int8, backend, threads)
        preds, stats = _run_detector(detector, items, max_pixels, mode=mode.value, threshold=eval_threshold, nms_threshold=nms_threshold, force=force, workers=workers)
        typer.echo(f"detected {stats.processed} images ({stats.images_per_second:.2f} img/s), skipped {stats.skipped} with existing predictions", err=True)
        missing = 0
        if out is not None:  # skipped (resumed) images are read back from their files
            preds, missing = read_folder_predictions(out, anns)
        if stats.failed:
            failed = {Path(f) for f, _ in stats.failed}
            anns = [a for a in anns if images / a.file not in failed]
            preds = {k: v for k, v in preds.items() if images / k not in failed}
            missing = sum(1 for a in anns if a.file not in preds) if out is not None else 0
            warn(f"{len(failed)} images could not be read; the metrics are over the other {len(anns)}")
    result = evaluate_folder(anns, preds, threshold=threshold, missing=missing, unannotated=unannotated)

    def f(x):
        return "n/a" if x != x else f"{x:.4f}"

    summary = [
        f"AP@0.5 {f(result.ap50)}  AP@[0.5:0.95] {f(result.ap50_95)}",
        f"at score > {threshold:g}: precision {f(result.precision)}  recall {f(result.recall)}  F1 {f(result.f1)}  (TP {result.tp}, FP {result.fp})",
        f"{result.images} images ({result.negatives} without faces), {result.faces} faces ({result.ignored_faces} ignored)",
    ]
    if result.faces == 0:
        warn("no (non-ignored) face in the annotations: AP is undefined")
    if plot is not None:
        from facedet.evaluation.plots import plot_folder_result

        plot_folder_result(result, plot)
    _emit(result.to_json(), summary, json_out)
    _exit_if_failed(stats)


def _refuse_overwriting(outputs, inputs) -> None:
    """Report files must not land on an input (the annotations, an image), nor on each other, --force or not."""
    sources = {Path(p).resolve() for p in inputs}
    seen: set[Path] = set()
    for p in (Path(o) for o in outputs if o is not None and str(o) != "-"):
        key = p.resolve()
        if key in sources:
            raise FacedetError(f"{p} is one of the inputs; choose another output path")
        if key in seen:
            raise FacedetError(f"two outputs of this run would be written to {p}; choose different output paths")
        seen.add(key)


def _check_unique_predictions(items) -> None:
    """Two images that differ only in their suffix (a.jpg, a.png) would share one prediction file."""
    seen: dict[Path, Path] = {}
    for it in items:
        if it.out in seen:
            raise FacedetError(f"{seen[it.out]} and {it.image} would share the prediction file {it.out}; rename one of them")
        seen[it.out] = it.image
