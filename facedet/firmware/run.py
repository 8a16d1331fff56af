"""``facedet firmware run``: images through the exported firmware (QEMU Cortex-M4 or host build).

Each image gets ``facedet detect``'s preprocessing (resize, mean subtraction,
luma) and is fitted into the firmware's fixed input:

* when ``detect``'s area-preserving resize already gives exactly that size (the
  photo has the firmware's aspect ratio, e.g. 640x480 for 320x240), that resize
  is used, so the firmware sees exactly what ``facedet detect --single-scale``
  feeds the network;
* otherwise the image is scaled to fit inside it (aspect kept) and placed at
  the top-left, the rest filled with the mean colour (real 0, the frame's zero
  point): a letterbox.

The faces the firmware decoded are mapped back to the image's pixels and
clipped, as ``detect`` does.  With ``check`` the Python integer interpreter
runs on the same frame and every raw output value is compared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from facedet.errors import FacedetError


@dataclass
class Bundle:
    """What ``bundle.json`` records about an exported firmware."""

    path: Path
    arch: str
    height: int
    width: int
    channels: int
    priors: int
    max_faces: int
    score_threshold: float
    nms_threshold: float
    meta: dict = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path) -> "Bundle":
        path = Path(path)
        info = path / "bundle.json"
        if not path.is_dir():
            raise FacedetError(f"{path}: no such firmware bundle directory")
        if not info.is_file():
            raise FacedetError(f"{path} is not a facedet firmware bundle (no bundle.json; make one with 'facedet export-firmware')")
        try:
            meta = json.loads(info.read_text())
            h, w, c = meta["input"]
            return cls(path, meta["arch"], int(h), int(w), int(c), int(meta["priors"]), int(meta["max_faces"]),
                       float(meta["score_threshold"]), float(meta["nms_threshold"]), meta)
        except (ValueError, KeyError, TypeError) as exc:
            raise FacedetError(f"{info} is malformed ({exc})") from None

    def result_size(self) -> int:
        from facedet.firmware.export import result_bytes

        return result_bytes(self.priors, self.max_faces)

    def parse_result(self, raw: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """facedet_result_t bytes -> ``(conf int8 [P, 2], loc int8 [P, 4], faces float32 [N, 5])``."""
        p = self.priors
        if len(raw) != self.result_size():
            raise FacedetError(f"firmware result has {len(raw)} bytes, expected {self.result_size()}")
        conf = np.frombuffer(raw, np.int8, 2 * p).reshape(p, 2)
        loc = np.frombuffer(raw, np.int8, 4 * p, 2 * p).reshape(p, 4)
        n = int(np.frombuffer(raw, np.int32, 1, 6 * p)[0])
        if not 0 <= n <= self.max_faces:
            raise FacedetError(f"firmware reported {n} faces (at most {self.max_faces})")
        faces = np.frombuffer(raw, np.float32, 5 * n, 6 * p + 4).reshape(n, 5)
        return conf, loc, faces


def fit_frame(image: np.ndarray, bundle: Bundle, spec) -> tuple[np.ndarray, float, float, str]:
    """Image -> (float network input ``[C, H, W]`` of the firmware's size, sx, sy, "resize"|"letterbox")."""
    from facedet.preprocess import network_scale, normalize, resize, to_bgr8

    image = to_bgr8(image)
    h, w = image.shape[:2]
    H, W = bundle.height, bundle.width
    s = network_scale(h, w, (H, W))
    if (max(int(round(h * s)), 1), max(int(round(w * s)), 1)) == (H, W):
        r, mode = resize(image, s), "resize"
    else:
        r, mode = resize(image, min(H / h, W / w)), "letterbox"
    x = normalize(r.image, spec.in_channels, spec.mean_bgr)
    nh, nw = x.shape[1:]
    if (nh, nw) != (H, W):
        canvas = np.zeros((x.shape[0], H, W), np.float32)
        canvas[:, : min(nh, H), : min(nw, W)] = x[:, :H, :W]
        x = canvas
    return x, r.sx, r.sy, mode


@dataclass
class FirmwareReport:
    records: list[dict] = field(default_factory=list)
    failures: list[tuple[Path, str]] = field(default_factory=list)
    mismatches: int = 0
    memory: dict | None = None


def run_firmware(
    bundle_dir: Path,
    images: list[Path],
    *,
    target: str = "m4",
    check: bool = False,
    score_threshold: float | None = None,
    nms_threshold: float | None = None,
    timeout: float = 120.0,
    on_error: Callable[[Path, str], None] | None = None,
    progress: Callable | None = None,
) -> FirmwareReport:
    """Build the bundle if needed, run every image through it, optionally check it against the interpreter."""
    from facedet.detector import build_model
    from facedet.firmware import runner
    from facedet.firmware.report import update_memory_report
    from facedet.imageio import collect_inputs, is_video, iter_images
    from facedet.quant import interpreter
    from facedet.quant.qfile import load_program

    if target not in ("m4", "host"):
        raise FacedetError(f"--target must be m4 or host, got {target!r}")
    bundle = Bundle.open(bundle_dir)
    files = [f for f in collect_inputs(list(images)) if not is_video(f)]
    if not files:
        raise FacedetError("no images given")
    program = None
    if check:
        program, _ = load_program(bundle.path / "model.safetensors")
    spec = build_model(bundle.arch).spec
    qin = _input_qparams(bundle)
    exe = runner.build(bundle.path, target)
    report = FirmwareReport()
    stack = 0
    progress = progress or (lambda it, **kw: it)

    def failed(f: Path, message: str) -> None:
        report.failures.append((f, message))
        if on_error:
            on_error(f, message)

    for f, image in iter_images(progress(files, total=len(files), desc=f"firmware ({target})"), failed):
        x, sx, sy, mode = fit_frame(image, bundle, spec)
        frame = interpreter.quantize_frame(x, qin[0], qin[1])
        run = runner.run(
            bundle.path, target, frame.tobytes(),
            score_threshold=bundle.score_threshold if score_threshold is None else score_threshold,
            nms_threshold=bundle.nms_threshold if nms_threshold is None else nms_threshold,
            max_faces=bundle.max_faces, timeout=timeout,
        )
        if run.status != 0:
            raise FacedetError(f"{f}: facedet_run returned {run.status}")
        conf, loc, faces = bundle.parse_result(run.result)
        h, w = image.shape[:2]
        boxes = faces[:, :4].astype(np.float64) / np.array([sx, sy, sx, sy])
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, w)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, h)
        rec = {
            "image": str(f), "width": w, "height": h,
            "faces": [{"box": [round(float(v), 2) for v in b], "score": round(float(s), 4)} for b, s in zip(boxes, faces[:, 4])],
            "fit": mode, "instructions": run.instructions, "wall_s": round(run.wall_s, 3),
        }
        if target == "m4":
            rec["stack_bytes"] = run.stack_bytes
            stack = max(stack, run.stack_bytes or 0)
            rec["stages"] = _stage_instructions(run.marks)
        if check:
            qconf, qloc = _raw_outputs(program, interpreter.run(program, frame))
            rec["bit_exact"] = bool(np.array_equal(qconf, conf) and np.array_equal(qloc, loc))
            if not rec["bit_exact"]:
                report.mismatches += 1
                rec["mismatched_values"] = int((qconf != conf).sum() + (qloc != loc).sum())
        report.records.append(rec)
    if target == "m4" and report.records:
        report.memory = update_memory_report(bundle.path, runner.section_sizes(exe), stack)
    return report


def measure_bundle(bundle_dir: Path, timeout: float = 120.0) -> dict:
    """Build the m4 firmware, run it once on a mid-grey frame, and fill in memory_report.json.

    Returns the updated report (``ram_bytes``, ``stack_bytes``, ``flash_bytes``, ...).
    """
    from facedet.firmware import runner
    from facedet.firmware.report import update_memory_report

    bundle = Bundle.open(bundle_dir)
    elf = runner.build(bundle.path, "m4")
    frame = np.full(bundle.height * bundle.width * bundle.channels, _input_qparams(bundle)[1], np.int8)
    run = runner.run(bundle.path, "m4", frame.tobytes(), score_threshold=bundle.score_threshold,
                     nms_threshold=bundle.nms_threshold, max_faces=bundle.max_faces, timeout=timeout)
    if run.status != 0:
        raise FacedetError(f"facedet_run returned {run.status} on the measuring frame")
    return update_memory_report(bundle.path, runner.section_sizes(elf), run.stack_bytes or 0)


def _input_qparams(bundle: Bundle) -> tuple[float, int]:
    qp = bundle.meta["qparams"]["input"]
    return float(qp["scale"]), int(qp["zero_point"])


def _raw_outputs(program, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The interpreter's head outputs in the firmware's layout: conf [P, 2], loc [P, 4]."""
    conf = np.concatenate([outputs[c].reshape(-1, 2) for c, _ in program.heads])
    loc = np.concatenate([outputs[l].reshape(-1, 4) for _, l in program.heads])
    return conf, loc


def _stage_instructions(marks: list[tuple[int, int]]) -> list[int]:
    """Instructions per stage from the cumulative marks (stage i runs from mark i to mark i+1)."""
    counts = [c for _, c in sorted(marks)]
    return [b - a for a, b in zip(counts, counts[1:])]
