"""``facedet evaluate``: the WIDER FACE protocol and generic annotated folders.

Mounted by :mod:`facedet.cli` as ``app.add_typer(eval_app, name="evaluate")``.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from facedet.cli_common import atomic_write_text, check_output_dir, check_output_file, check_unit_interval, handle_errors, warn
from facedet.errors import FacedetError

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


def _load_detector(weights: Optional[Path], arch: Optional[str], int8: bool = False):
    """Indirection so tests can substitute a detector."""
    from facedet.inference import Detector

    return Detector.load(weights, arch, quantized=int8)


def _check_reports(json_out: Optional[str], plot: Optional[Path], force: bool) -> None:
    """Validate report destinations before any work starts."""
    if json_out is not None and json_out != "-":
        check_output_file(Path(json_out), force)
    if plot is not None:
        if plot.suffix.lower() != ".png":
            raise FacedetError(f"--plot {plot}: expected a .png file name")
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


WEIGHTS_HELP = "Weights file, float or quantized (facedet quantize). Default: the shipped weights."
INT8_HELP = "Run the shipped integer model instead of the float weights."
ARCH_HELP = "Architecture; must match the weights. Default: read from the weights file."


@app.command("wider")
@handle_errors
def wider(
    pred_dir: Optional[Path] = typer.Option(None, "--pred-dir", help="Score existing predictions: DIR/<event>/<image>.txt in the official format.", metavar="DIR"),
    gt_dir: Optional[Path] = typer.Option(None, "--gt-dir", help="Official eval_tools ground truth: wider_face_val.mat and wider_{easy,medium,hard}_val.mat.", metavar="DIR"),
    wider_root: Optional[Path] = typer.Option(None, "--wider-root", help="Run our detector on <DIR>/WIDER_<split>/images/<event>/*.jpg (needs --out).", metavar="DIR"),
    split: Split = typer.Option(Split.val, "--split", help="WIDER split to run on with --wider-root."),
    mode: Mode = typer.Option(Mode.single, "--mode", help="single: area-preserving single scale; multiscale: S3FD shrink/enlarge + flip + box voting; pyramid: what facedet detect runs."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where --wider-root writes DIR/<event>/<image>.txt (resumable).", metavar="DIR"),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help=WEIGHTS_HELP),
    int8: bool = typer.Option(False, "--int8", help=INT8_HELP),
    arch: Optional[str] = typer.Option(None, "--arch", help=ARCH_HELP),
    eval_threshold: float = typer.Option(0.01, "--eval-threshold", help="Lowest detection score written, in [0, 1]."),
    nms_threshold: float = typer.Option(0.3, "--nms-threshold", help="NMS IoU threshold, in [0, 1]."),
    workers: int = typer.Option(2, "--workers", min=0, help="Image-decoding threads (0: none)."),
    force: bool = typer.Option(False, "--force/--no-force", help="Recompute existing prediction files and overwrite report files."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write APs and PR curves as JSON to FILE, or '-' for stdout.", metavar="FILE|-"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the PR curves to a PNG file.", metavar="FILE.png"),
) -> None:
    """WIDER FACE: score predictions (--pred-dir) or run the detector first (--wider-root --out).

    AP equals the official MATLAB eval_tools / its Python port (IoU 0.5, +1-pixel
    convention, scores normalised over the set, 1000 thresholds).
    """
    from facedet.evaluation.wider import evaluate_wider

    check_unit_interval("--eval-threshold", eval_threshold)
    check_unit_interval("--nms-threshold", nms_threshold)
    if wider_root is not None and pred_dir is not None:
        raise FacedetError("give either --pred-dir (score existing predictions) or --wider-root (run the detector), not both")
    if wider_root is None and pred_dir is None:
        raise FacedetError("nothing to evaluate: give --pred-dir DIR or --wider-root DIR --out DIR")
    if wider_root is not None and out is None:
        raise FacedetError("--wider-root needs --out DIR for the prediction files")
    if gt_dir is None and (json_out is not None or plot is not None or pred_dir is not None):
        raise FacedetError("scoring needs --gt-dir DIR (the official eval_tools ground truth)")
    _check_reports(json_out, plot, force)

    if wider_root is not None:
        from facedet.evaluation.runner import run_detector, wider_items

        items = wider_items(wider_root, split.value, out)
        check_output_dir(out)
        detector = _load_detector(weights, arch, int8)
        _, stats = run_detector(detector, items, mode=mode.value, threshold=eval_threshold, nms_threshold=nms_threshold, force=force, workers=workers)
        msg = f"detected {stats.processed} images ({stats.images_per_second:.2f} img/s), skipped {stats.skipped} with existing predictions -> {out}"
        typer.echo(msg, err=json_out == "-")
        pred_dir = out
        if gt_dir is None:
            return

    result = evaluate_wider(pred_dir, gt_dir, on_missing=_warn_missing)
    summary = [f"{s:<6} AP {result.ap[s]:.4f}  ({result.faces[s]} faces)" for s in ("easy", "medium", "hard")]
    if plot is not None:
        from facedet.evaluation.plots import plot_wider_result

        plot_wider_result(result, plot)
    _emit(result.to_json(), summary, json_out)


@app.command("folder")
@handle_errors
def folder(
    images: Path = typer.Option(..., "--images", help="Image root; annotation file names are relative to it.", metavar="DIR", show_default=False),
    annotations: Path = typer.Option(..., "--annotations", help="Generic-format JSON file, or a folder of PASCAL VOC XML files.", metavar="FILE|DIR", show_default=False),
    pred_dir: Optional[Path] = typer.Option(None, "--pred-dir", help="Score existing predictions DIR/<image minus suffix>.txt (official WIDER per-image format) instead of running the detector.", metavar="DIR"),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write our detector's predictions there (resumable).", metavar="DIR"),
    mode: Mode = typer.Option(Mode.single, "--mode", help="single: area-preserving single scale; multiscale: S3FD protocol; pyramid: what facedet detect runs."),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help=WEIGHTS_HELP),
    int8: bool = typer.Option(False, "--int8", help=INT8_HELP),
    arch: Optional[str] = typer.Option(None, "--arch", help=ARCH_HELP),
    eval_threshold: float = typer.Option(0.01, "--eval-threshold", help="Lowest detection score kept, in [0, 1]."),
    nms_threshold: float = typer.Option(0.3, "--nms-threshold", help="NMS IoU threshold, in [0, 1]."),
    threshold: float = typer.Option(0.5, "--threshold", "-t", help="Operating score threshold for precision / recall / F1."),
    classes: Optional[List[str]] = typer.Option(None, "--class", help="VOC: keep only objects of this class (repeatable). Default: all objects."),
    voc_one_based: bool = typer.Option(True, "--voc-one-based/--voc-zero-based", help="VOC coordinates are 1-based inclusive pixel indices (standard) or 0-based corners."),
    workers: int = typer.Option(2, "--workers", min=0, help="Image-decoding threads (0: none)."),
    force: bool = typer.Option(False, "--force/--no-force", help="Recompute existing prediction files and overwrite report files."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the metrics and PR curve as JSON to FILE, or '-' for stdout.", metavar="FILE|-"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the PR curve (IoU 0.5) to a PNG file.", metavar="FILE.png"),
) -> None:
    """Any VOC-XML or generic-JSON annotated folder: AP@0.5, AP@[0.5:0.95], precision/recall at --threshold.

    Images without annotations count as negatives.
    """
    from facedet.evaluation.folder import evaluate_folder, load_folder_annotations, prediction_path, read_folder_predictions

    check_unit_interval("--eval-threshold", eval_threshold)
    check_unit_interval("--nms-threshold", nms_threshold)
    check_unit_interval("--threshold", threshold)
    if pred_dir is not None and out is not None:
        raise FacedetError("give either --pred-dir (score existing predictions) or --out (run the detector and keep its files), not both")
    _check_reports(json_out, plot, force)
    anns, unannotated = load_folder_annotations(images, annotations, classes=classes or None, voc_one_based=voc_one_based)
    if not anns:
        raise FacedetError(f"{annotations}: no images to evaluate")
    if unannotated:
        warn(f"{unannotated} images under {images} have no annotation file; they count as negatives")

    if pred_dir is not None:
        preds, missing = read_folder_predictions(pred_dir, anns)
        if missing:
            _warn_missing(missing, len(anns))
    else:
        from facedet.evaluation.runner import RunItem, run_detector

        if out is not None:
            check_output_dir(out)
        items = [RunItem(a.file, images / a.file, prediction_path(out, a.file) if out is not None else None, Path(a.file).stem) for a in anns]
        detector = _load_detector(weights, arch, int8)
        preds, stats = run_detector(detector, items, mode=mode.value, threshold=eval_threshold, nms_threshold=nms_threshold, force=force, workers=workers)
        typer.echo(f"detected {stats.processed} images ({stats.images_per_second:.2f} img/s), skipped {stats.skipped} with existing predictions", err=True)
        missing = 0
        if out is not None:  # skipped (resumed) images are read back from their files
            preds, missing = read_folder_predictions(out, anns)
    result = evaluate_folder(anns, preds, threshold=threshold, missing=missing, unannotated=unannotated)

    def f(x):
        return "n/a" if x != x else f"{x:.4f}"

    summary = [
        f"AP@0.5 {f(result.ap50)}  AP@[0.5:0.95] {f(result.ap50_95)}",
        f"at score >= {threshold:g}: precision {f(result.precision)}  recall {f(result.recall)}  F1 {f(result.f1)}  (TP {result.tp}, FP {result.fp})",
        f"{result.images} images ({result.negatives} without faces), {result.faces} faces ({result.ignored_faces} ignored)",
    ]
    if result.faces == 0:
        warn("no (non-ignored) face in the annotations: AP is undefined")
    if plot is not None:
        from facedet.evaluation.plots import plot_folder_result

        plot_folder_result(result, plot)
    _emit(result.to_json(), summary, json_out)
