"""``facedet detect``: run the detector over files, folders and videos and write outputs."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from facedet.cli_common import atomic_write_text, check_output_dir, check_output_file, progress
from facedet.draw import draw_detections
from facedet.errors import FacedetError
from facedet.fileutil import atomic_path
from facedet.imageio import DEFAULT_MAX_PIXELS, collect_inputs, is_video, iter_video, read_image, video_info
from facedet.inference import DEFAULT_MAX_FACES, DEFAULT_NMS_THRESHOLD, DEFAULT_THRESHOLD, Detector, Detections
from facedet.outputs import format_wider_txt, records_to_csv, records_to_json


@dataclass
class DetectOptions:
    """What to detect and where to write it (see ``facedet detect --help``)."""

    threshold: float = DEFAULT_THRESHOLD
    nms_threshold: float = DEFAULT_NMS_THRESHOLD
    max_faces: int = DEFAULT_MAX_FACES
    json_path: str | Path | None = None  # a file, or "-" for stdout
    csv_path: str | Path | None = None  # a file, or "-" for stdout
    wider_dir: Path | None = None
    save_dir: Path | None = None
    recursive: bool = False
    force: bool = False
    pyramid: bool = True
    max_pixels: int | None = DEFAULT_MAX_PIXELS  # larger images are reported and skipped


@dataclass
class DetectReport:
    """Outcome of a batch: one record per image/frame, and the inputs that failed."""

    records: list[dict] = field(default_factory=list)
    failures: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    processed: int = 0


def _record(name: str, det: Detections, frame: int | None = None) -> dict:
    rec: dict = {"image": name}
    if frame is not None:
        rec["frame"] = frame
    rec.update(width=det.width, height=det.height, faces=det.to_dict())
    return rec


SAVE_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}  # other inputs are saved as .png


def _output_names(inputs: list[Path], args: list[Path]) -> dict[Path, Path]:
    """Relative output name for each input: its path under the folder argument
    it came from, or its file name.

    Outputs replace the suffix (``x.png`` and ``x.ppm`` both give ``x.txt``;
    ``clip.mp4`` and ``clip.avi`` both give ``clip_faces.mp4``), so names must
    differ without it: a clash (ignoring case, for case-insensitive file
    systems) gets a ``_1``, ``_2`` suffix, in input order.
    """
    folders = [a for a in args if a.is_dir()]
    names: dict[Path, Path] = {}
    used: set[str] = set()
    for f in inputs:
        rel = Path(f.name)
        for d in folders:
            try:
                rel = Path(d.name or "input") / f.relative_to(d)
                break
            except ValueError:
                continue
        candidate, i = rel, 0
        while _stem_key(candidate) in used:
            i += 1
            candidate = rel.with_name(f"{rel.stem}_{i}{rel.suffix}")
        used.add(_stem_key(candidate))
        names[f] = candidate
    return names


def _stem_key(rel: Path) -> str:
    return rel.with_suffix("").as_posix().casefold()


def save_path(save_dir: Path, rel: Path, video: bool) -> Path:
    """Where ``--save`` writes the annotated copy of the input named ``rel``."""
    if video:
        return save_dir / rel.with_name(rel.stem + "_faces.mp4")
    suffix = rel.suffix.lower()
    return save_dir / rel.with_suffix(suffix if suffix in SAVE_IMAGE_SUFFIXES else ".png")


def _planned_outputs(inputs: list[Path], names: dict[Path, Path], opts: DetectOptions) -> list[Path]:
    """Every file the run will write (a video's per-frame WIDER files excepted: their folder)."""
    out: list[Path] = [Path(p) for p in (opts.json_path, opts.csv_path) if p is not None and str(p) != "-"]
    for f in inputs:
        rel = names[f]
        if opts.save_dir is not None:
            out.append(save_path(opts.save_dir, rel, is_video(f)))
        if opts.wider_dir is not None:
            out.append(opts.wider_dir / (rel.parent / rel.stem if is_video(f) else rel.with_suffix(".txt")))
    return out


def _check_outputs(inputs: list[Path], planned: list[Path], opts: DetectOptions) -> None:
    """Refuse a run whose outputs collide with each other or with one of its inputs."""
    if opts.json_path is not None and opts.csv_path is not None and str(opts.json_path) == str(opts.csv_path) == "-":
        raise FacedetError("--json - and --csv - cannot both write to stdout; send one of them to a file")
    sources = {f.resolve(): f for f in inputs}
    seen: dict[Path, Path] = {}
    for p in planned:
        key = p.resolve()
        if key in sources:
            raise FacedetError(f"{p} is one of the inputs ({sources[key]}); choose another output path")
        if key in seen:
            raise FacedetError(f"two outputs of this run would be written to {p}; choose different output paths")
        seen[key] = p


def run_detect(
    paths: list[Path],
    detector: Detector,
    opts: DetectOptions,
    on_error: Callable[[Path, str], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> DetectReport:
    """Detect faces in every input and write the requested outputs.

    All output paths are checked before any work starts: an existing file is
    an error unless ``opts.force``; outputs that would collide with each other
    or overwrite one of the inputs are an error even with it.  A bad input
    file is reported through ``on_error`` and skipped; the others are
    processed.  Warnings (a video with fewer frames than its header
    announces) go to ``on_warning`` and into the report.
    """
    inputs = collect_inputs(paths, opts.recursive)
    names = _output_names(inputs, [Path(p) for p in paths])
    planned = _planned_outputs(inputs, names, opts)
    _check_outputs(inputs, planned, opts)
    for p in (opts.json_path, opts.csv_path):
        if p is not None and str(p) != "-":
            check_output_file(p, opts.force)
    for d in (opts.save_dir, opts.wider_dir):
        if d is not None:
            check_output_dir(d)
    if not opts.force:
        clash = [p for p in planned if p.exists()]
        if clash:
            more = f" and {len(clash) - 1} more" if len(clash) > 1 else ""
            raise FacedetError(f"{clash[0]}{more} already exist(s) (use --force to overwrite)")

    report = DetectReport()

    def warn(message: str) -> None:
        report.warnings.append(message)
        if on_warning is not None:
            on_warning(message)

    kw = dict(threshold=opts.threshold, nms_threshold=opts.nms_threshold, max_faces=opts.max_faces, pyramid=opts.pyramid)
    for f in progress(inputs, desc="detect", unit="file"):
        try:
            if is_video(f):
                report.records += _detect_video(f, names[f], detector, opts, kw, warn)
            else:
                image = read_image(f, opts.max_pixels)
                det = detector.detect(image, **kw)
                report.records.append(_record(str(f), det))
                _write_image_outputs(f, names[f], image, det, opts)
            report.processed += 1
        except FacedetError as exc:
            msg = str(exc)
            report.failures.append((f, msg))
            if on_error is not None:
                on_error(f, msg)

    # "-" (stdout) is the caller's to print, from report.records
    if opts.json_path is not None and str(opts.json_path) != "-":
        atomic_write_text(opts.json_path, records_to_json(report.records))
    if opts.csv_path is not None and str(opts.csv_path) != "-":
        atomic_write_text(opts.csv_path, records_to_csv(report.records))
    return report


def _write_image_outputs(f: Path, rel: Path, image: np.ndarray, det: Detections, opts: DetectOptions) -> None:
    if opts.save_dir is not None:
        target = save_path(opts.save_dir, rel, video=False)
        target.parent.mkdir(parents=True, exist_ok=True)
        annotated = draw_detections(image, det.boxes, det.scores)
        ok, buf = cv2.imencode(target.suffix, annotated)
        if not ok:
            raise FacedetError(f"{target}: cannot encode annotated image")
        with atomic_path(target) as tmp:
            buf.tofile(str(tmp))
    if opts.wider_dir is not None:
        target = opts.wider_dir / rel.with_suffix(".txt")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, format_wider_txt(f.stem, det.boxes, det.scores))


def _detect_video(f: Path, rel: Path, detector: Detector, opts: DetectOptions, kw: dict, warn: Callable[[str], None]) -> list[dict]:
    fps, count, width, height = video_info(f)
    target = None
    if opts.save_dir is not None:
        target = save_path(opts.save_dir, rel, video=True)
        target.parent.mkdir(parents=True, exist_ok=True)
    records = []
    with atomic_path(target) if target is not None else nullcontext() as tmp:
        writer = None
        if tmp is not None:
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            if not writer.isOpened():
                raise FacedetError(f"{target}: cannot open a video writer")
        try:
            for i, frame in progress(iter_video(f), total=count or None, desc=f.name, unit="frame", disable=count <= 1):
                det = detector.detect(frame, **kw)
                records.append(_record(str(f), det, frame=i))
                if writer is not None:
                    if frame.shape[1] != width or frame.shape[0] != height:
                        frame = cv2.resize(frame, (width, height))
                    writer.write(draw_detections(frame, det.boxes, det.scores))
                if opts.wider_dir is not None:
                    t = opts.wider_dir / rel.parent / rel.stem / f"{rel.stem}_{i:06d}.txt"
                    t.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_text(t, format_wider_txt(f"{rel.stem}_{i:06d}", det.boxes, det.scores))
        finally:
            if writer is not None:
                writer.release()
    if 0 < len(records) < count:
        warn(f"{f}: only {len(records)} of the {count} frames its header announces could be read (truncated or damaged video)")
    return records


def summary_lines(records: list[dict]) -> list[str]:
    """Human-readable result: one line per image/frame, one indented line per face."""
    lines = []
    for rec in records:
        where = rec["image"] + (f" [frame {rec['frame']}]" if "frame" in rec else "")
        n = len(rec["faces"])
        lines.append(f"{where}: {n} face{'s' if n != 1 else ''} ({rec['width']}x{rec['height']})")
        for face in rec["faces"]:
            x1, y1, x2, y2 = face["box"]
            lines.append(f"  {x1:8.1f} {y1:8.1f} {x2:8.1f} {y2:8.1f}  score {face['score']:.3f}")
    return lines
