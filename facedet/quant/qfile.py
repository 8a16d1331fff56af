"""The quantized model file: an integer program in one safetensors file.

Format ``facedet-quantized``, version 1:

* tensors: every integer array of the program (int8 weights, int32 biases and
  requantization multipliers/shifts, int16 RNN weights, ...), keyed
  ``<op name>/<field>``;
* metadata (``str -> str``):

  ======================  ==================================================
  ``format``              ``facedet-quantized``
  ``format_version``      ``1``
  ``arch``                architecture, e.g. ``m4`` (priors come from it)
  ``input_size``          nominal input ``HxW``
  ``in_channels``         ``1`` or ``3``
  ``normalization``       as in the float weights file
  ``program``             JSON: the integer program (:mod:`facedet.quant.program`)
  ``quantization``        JSON: how it was made (source weights and their
                          SHA-256, calibration images, method, per-layer summary)
  ``checksum``            SHA-256 over the program JSON and every tensor
                          (name, dtype, shape, bytes)
  ``facedet_version``     package version that wrote the file
  ======================  ==================================================

Reading needs numpy and safetensors only (no torch).  A tampered body or
header, an unknown format version or a malformed program is a one-line
:class:`~facedet.errors.FacedetError`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from facedet import __version__
from facedet.errors import FacedetError, short_error
from facedet.fileutil import atomic_path
from facedet.quant.program import Program

QUANT_FORMAT = "facedet-quantized"
QUANT_FORMAT_VERSION = "1"


def checksum(program_json: str, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the program JSON text and every tensor (sorted by name)."""
    h = hashlib.sha256(program_json.encode("utf-8"))
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"\0{key}\0{a.dtype.str}\0{list(a.shape)}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_program(path: str | Path, program: Program, base_metadata: dict[str, str], quantization: dict[str, Any]) -> Path:
    """Write ``program`` atomically.

    Args:
        path: output file.
        program: the integer program.
        base_metadata: the float weights file's ``arch``, ``input_size``,
            ``in_channels`` and ``normalization`` entries.
        quantization: JSON-ready description of how the program was made.
    """
    from safetensors.numpy import save_file

    from facedet.weights import _default_permissions

    program_dict, arrays = program.to_json_and_arrays()
    program_json = json.dumps(program_dict, separators=(",", ":"))
    meta = {
        "format": QUANT_FORMAT,
        "format_version": QUANT_FORMAT_VERSION,
        "arch": base_metadata["arch"],
        "input_size": base_metadata["input_size"],
        "in_channels": base_metadata["in_channels"],
        "normalization": base_metadata["normalization"],
        "program": program_json,
        "quantization": json.dumps(quantization, separators=(",", ":")),
        "checksum": checksum(program_json, arrays),
        "facedet_version": __version__,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata=meta)
        _default_permissions(tmp)
    return path


def load_program(path: str | Path, meta: dict[str, str] | None = None) -> tuple[Program, dict[str, str]]:
    """Read a quantized model file: ``(program, metadata)``, with every check of the module docstring."""
    from safetensors.numpy import load_file

    path = Path(path)
    if meta is None:
        from facedet.weights import read_metadata

        meta = read_metadata(path)
    if meta.get("format") != QUANT_FORMAT:
        raise FacedetError(f"{path} is not a quantized facedet model (format {meta.get('format')!r})")
    if meta.get("format_version") != QUANT_FORMAT_VERSION:
        raise FacedetError(f"{path} has quantized format version {meta.get('format_version')!r}; this facedet reads version {QUANT_FORMAT_VERSION}")
    try:
        arrays = load_file(str(path))
    except Exception as exc:
        raise FacedetError(f"{path} is truncated or corrupt ({short_error(exc)})") from None
    program_json = meta.get("program", "")
    if checksum(program_json, arrays) != meta.get("checksum"):
        raise FacedetError(f"{path} fails its checksum: the file was modified or damaged")
    try:
        program = Program.from_json_and_arrays(json.loads(program_json), arrays)
    except (ValueError, KeyError, TypeError) as exc:
        raise FacedetError(f"{path}: malformed integer program ({short_error(exc)})") from None
    if program.arch != meta.get("arch"):
        raise FacedetError(f"{path}: program is for '{program.arch}' but the header says '{meta.get('arch')}'")
    return program, meta
