"""``facedet quantize``: float weights + calibration images -> quantized model file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from facedet.errors import FacedetError

SATURATION_WARN = 0.005  # warn when more than this fraction of a layer's values saturate on the calibration set


@dataclass
class QuantizeReport:
    """What :func:`quantize_weights` did."""

    out: Path
    images: int = 0  # calibration images used
    inputs: int = 0  # network inputs observed (images x pyramid levels)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    layers: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: dict[str, tuple[float, float]] = field(default_factory=dict)  # OutputErrors.summary() on the calibration inputs


@dataclass
class OutputErrors:
    """|dequantized integer output - float output| of the head outputs, over many network inputs."""

    face: list[np.ndarray] = field(default_factory=list)
    background: list[np.ndarray] = field(default_factory=list)
    loc: list[np.ndarray] = field(default_factory=list)

    def add(self, conf_q: np.ndarray, loc_q: np.ndarray, conf_f: np.ndarray, loc_f: np.ndarray) -> None:
        """One input: ``conf [P, 2]`` and ``loc [P, 4]``, integer (dequantized) and float."""
        self.face.append(np.abs(conf_q[:, 1] - conf_f[:, 1]))
        self.background.append(np.abs(conf_q[:, 0] - conf_f[:, 0]))
        self.loc.append(np.abs(loc_q - loc_f).ravel())

    def summary(self) -> dict[str, tuple[float, float]]:
        """``{"face logit" | "background logit" | "box offsets": (mean, max)}``."""
        out = {}
        for name, parts in (("face logit", self.face), ("background logit", self.background), ("box offsets", self.loc)):
            v = np.concatenate(parts) if parts else np.zeros(1)
            out[name] = (float(v.mean()), float(v.max()))
        return out


def compare_with_float(det, program, images, saturation=None) -> OutputErrors:
    """Run the float model and the integer program on every pyramid input of ``images`` (BGR arrays)."""
    import torch

    from facedet.quant import interpreter

    qin = program.qparams[program.input_name]
    errors = OutputErrors()
    for image in images:
        for x in pyramid_inputs(det, image):
            frame = interpreter.quantize_frame(x[0].numpy(), qin.scale, qin.zero_point)
            cq, lq = interpreter.dequantize_outputs(program, interpreter.run(program, frame, saturation=saturation))
            with torch.inference_mode():
                cf, lf = det.model(x)
            errors.add(cq, lq, cf[0].numpy(), lf[0].numpy())
    return errors


def select_images(paths: list[Path], max_images: int | None) -> list[Path]:
    """Image files under ``paths`` (folders searched recursively), evenly thinned to ``max_images``."""
    from facedet.imageio import collect_inputs, is_video

    files = [f for f in collect_inputs(paths, recursive=True) if not is_video(f)]
    if not files:
        raise FacedetError(f"no calibration images found in {', '.join(str(p) for p in paths)}")
    if max_images is not None and len(files) > max_images:
        idx = np.linspace(0, len(files) - 1, max_images).round().astype(int)
        files = [files[i] for i in idx]
    return files


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def quantize_weights(
    weights: Path | None,
    calib: list[Path],
    out: Path,
    *,
    max_images: int | None = None,
    force: bool = False,
    method: str = "percentile",
    requant: str = "multiplier",
    on_skip: Callable[[Path, str], None] | None = None,
    progress: Callable | None = None,
) -> QuantizeReport:
    """Quantize float weights into an integer program and write it to ``out``.

    1. Fold batch norm (:meth:`facedet.detector.RNNPoolFace.lower`).
    2. Run the float graph over every calibration image at every scale of
       ``facedet detect``'s default pyramid, with ``detect``'s preprocessing,
       recording each op's value range.
    3. Choose every scale (:func:`facedet.quant.quantize.quantize_program`),
       with bias correction from the calibration means.
    4. Run the integer program over the same inputs: per-layer saturation and
       the error of the dequantized outputs against float.
    5. Write the file (:mod:`facedet.quant.qfile`).

    Unreadable images are reported through ``on_skip`` and skipped; if none is
    usable the call fails.  ``progress(iterable, total=, desc=)`` wraps the loops.
    """
    from facedet.cli_common import check_output_file
    from facedet.imageio import iter_images, read_image
    from facedet.inference import Detector
    from facedet.quant import interpreter
    from facedet.quant.calibrate import RangeObserver, observe_float
    from facedet.quant.qfile import save_program
    from facedet.quant.quantize import input_qparams, quantize_program
    from facedet.weights import default_weights_path, is_quantized, read_metadata

    progress = progress or (lambda it, **kw: it)
    if weights is None:
        weights = default_weights_path("m4")
        if weights is None:
            raise FacedetError("no float weights are installed; pass --weights FILE")
    weights = Path(weights)
    meta = read_metadata(weights)
    if is_quantized(meta):
        raise FacedetError(f"{weights} is already a quantized model; quantize the float weights it was made from")
    out = Path(out)
    if out.exists() and out.resolve() == weights.resolve():
        raise FacedetError(f"--out {out} is the input weights file")
    check_output_file(out, force)
    files = select_images(list(calib), max_images)

    det = Detector.load(weights)
    graph = det.model.lower()
    report = QuantizeReport(out)
    observer = RangeObserver()
    usable: list[Path] = []

    def skip(f: Path, message: str) -> None:
        report.skipped.append((f, message))
        if on_skip:
            on_skip(f, message)

    for f, image in iter_images(progress(files, total=len(files), desc="calibrate"), skip):
        usable.append(f)
        for x in pyramid_inputs(det, image):
            observe_float(graph, x, observer)
            report.inputs += 1
    if not usable:
        raise FacedetError(f"none of the {len(files)} calibration images could be read")
    report.images = len(usable)

    qin = input_qparams(det.spec.mean_bgr, det.spec.in_channels)
    ranges = observer.ranges(method, full_range=program_outputs(graph))
    try:
        program = quantize_program(graph, det.arch, qin, ranges, requant, observer.channel_means())
    except ValueError as exc:
        raise FacedetError(f"cannot quantize {weights}: {exc}") from None

    sat = interpreter.Saturation(program.qparams)
    checked = (read_image(f) for f in progress(usable, total=len(usable), desc="check"))
    report.errors = compare_with_float(det, program, checked, saturation=sat).summary()

    report.layers, report.warnings = layer_summary(program, ranges, sat)

    quantization = {
        "source": weights.name,
        "source_sha256": _sha256(weights),
        "calibration_images": report.images,
        "calibration_inputs": report.inputs,
        "skipped_images": len(report.skipped),
        "method": method,
        "requant": requant,
        "errors_against_float": {k: {"mean": m, "max": x} for k, (m, x) in report.errors.items()},
        "layers": report.layers,
    }
    save_program(out, program, meta, quantization)
    return report


def layer_summary(program, ranges: dict, sat) -> tuple[list[dict], list[str]]:
    """Per calibrated op: range, scale, zero point and saturated fraction; warnings for heavy saturation."""
    rows, warnings = [], []
    for op in program.ops:
        if op.name not in ranges:
            continue
        qp = program.qparams[op.name]
        frac = sat.fraction(op.name)
        rows.append({
            "name": op.name, "kind": op.kind, "lo": ranges[op.name].lo, "hi": ranges[op.name].hi,
            "scale": qp.scale, "zero_point": qp.zero_point, "saturated": frac,
        })
        if frac > SATURATION_WARN:
            warnings.append(f"{op.name}: {100 * frac:.2f}% of values saturate on the calibration set")
    return rows, warnings


def program_outputs(graph) -> set[str]:
    """The head output tensors and the tensors they are copied from (max-out input): calibrated to their full range."""
    outs = set(graph.outputs())
    return outs | {op.inputs[0] for op in graph.ops if op.output in outs}


def pyramid_inputs(det, image):
    """The network inputs ``facedet detect`` builds for ``image`` (default pyramid), one at a time."""
    from facedet.preprocess import to_bgr8

    image = to_bgr8(image)
    for s in det.pyramid_scales(*image.shape[:2]):
        yield det.prepare(image, s)[0]


def format_layers(report: QuantizeReport) -> list[str]:
    """The per-layer summary as table lines."""
    lines = [f"{'layer':<22} {'op':<13} {'range':>21} {'scale':>10} {'zp':>5} {'saturated':>10}"]
    for r in report.layers:
        rng = f"[{r['lo']:.3g}, {r['hi']:.3g}]"
        lines.append(f"{r['name']:<22} {r['kind']:<13} {rng:>21} {r['scale']:>10.4g} {r['zero_point']:>5} {100 * r['saturated']:>9.3f}%")
    return lines
