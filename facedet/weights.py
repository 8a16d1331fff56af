"""The facedet weights file: safetensors tensors + string metadata.

Format (version 1), one ``.safetensors`` file:

* tensors: the model's ``state_dict()`` (parameters and batch-norm buffers),
  float32, keys exactly as :class:`facedet.detector.RNNPoolFace` names them;
* metadata (``str -> str``, stored in the safetensors header):

  ==================  =====================================================
  ``format``          ``facedet-weights``
  ``format_version``  ``1``
  ``arch``            registry name, e.g. ``m4``
  ``input_size``      nominal network input ``HxW``, e.g. ``240x320``
  ``in_channels``     ``1`` (luma) or ``3`` (RGB)
  ``normalization``   JSON: ``{"mean_bgr": [...], "scale": 1.0, "channels": "luma"|"rgb"}``
  ``facedet_version`` package version that wrote the file
  ``training``        JSON summary (data, epochs, metrics, command); free-form
  ==================  =====================================================

Loading never unpickles anything (safetensors holds raw tensors only), and any
problem -- missing file, truncation, corruption, wrong architecture, missing or
extra tensors -- is reported as a one-line :class:`FacedetError`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facedet import __version__
from facedet.detector import ARCHS
from facedet.errors import FacedetError, short_error
from facedet.fileutil import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    from facedet.detector import RNNPoolFace

FORMAT = "facedet-weights"
FORMAT_VERSION = "1"
from facedet.quant.qfile import QUANT_FORMAT  # noqa: E402  (an integer program's file)
# The shipped weights live in the repository's weights/ folder (a source checkout or an editable
# install reads them there); building a wheel copies them into the package as
# facedet/weights_data/<name> (setup.py), read through importlib.resources wherever the package is
# installed (pip install --user or --target, a virtualenv).
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
WEIGHTS_PACKAGE_DIR = "weights_data"
DEFAULT_WEIGHTS = {"m4": "rnnpool_face_m4.safetensors"}
DEFAULT_QUANTIZED = {"m4": "rnnpool_face_m4_int8.safetensors"}
_extracted = contextlib.ExitStack()  # weights copied out of a zipped package live until exit
atexit.register(_extracted.close)


def default_weights_path(arch: str = "m4", quantized: bool = False) -> Path | None:
    """Path of the shipped weights (or shipped integer model) for ``arch``, or None if none are installed."""
    name = (DEFAULT_QUANTIZED if quantized else DEFAULT_WEIGHTS).get(arch)
    if name is None:
        return None
    resource = resources.files("facedet") / WEIGHTS_PACKAGE_DIR / name
    if not resource.is_file():
        return WEIGHTS_DIR / name if (WEIGHTS_DIR / name).is_file() else None
    if isinstance(resource, Path):
        return resource
    return _extracted.enter_context(resources.as_file(resource))  # e.g. a zipped install: a temporary copy


def make_metadata(model: "RNNPoolFace", training: dict[str, Any] | None = None) -> dict[str, str]:
    """Metadata dict for ``model`` (see the module docstring)."""
    spec = model.spec
    norm = {"mean_bgr": list(spec.mean_bgr), "scale": 1.0, "channels": "luma" if spec.monochrome else "rgb"}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": spec.name,
        "input_size": f"{spec.input_size[0]}x{spec.input_size[1]}",
        "in_channels": str(spec.in_channels),
        "normalization": json.dumps(norm),
        "facedet_version": __version__,
        "training": json.dumps(training or {}),
    }


def save_weights(path: str | Path, model: "RNNPoolFace", training: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` atomically (temp file + rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=make_metadata(model, training))
        _default_permissions(tmp)  # safetensors creates files 0600
    return path


def _default_permissions(path: Path) -> None:
    """Give ``path`` the mode a plain ``open(path, "w")`` would (0666 minus the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def read_metadata(path: str | Path) -> dict[str, str]:
    """Read and validate the header of a weights file (float or quantized) without loading tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise FacedetError(f"weights file not found: {path}")
    if not path.is_file():
        raise FacedetError(f"weights path is not a file: {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for bad headers
        raise FacedetError(f"{path} is not a valid facedet weights file ({short_error(exc)})") from None
    if meta.get("format") == QUANT_FORMAT:
        if meta.get("arch") not in ARCHS:
            raise FacedetError(f"{path} is for unknown architecture {meta.get('arch')!r}")
        return meta
    if meta.get("format") != FORMAT:
        raise FacedetError(f"{path} is not a facedet weights file (no '{FORMAT}' header)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise FacedetError(f"{path} has weights format version {meta.get('format_version')!r}; this facedet reads version {FORMAT_VERSION}")
    if meta.get("arch") not in ARCHS:
        raise FacedetError(f"{path} is for unknown architecture {meta.get('arch')!r}")
    return meta


def load_weights(path: str | Path, arch: str | None = None) -> tuple["RNNPoolFace", dict[str, str]]:
    """Build the model named in the file and load its tensors.

    Args:
        path: a weights file.
        arch: if given, the file must be for this architecture.
    Returns:
        ``(model in eval mode, metadata)``.
    """
    import torch
    from safetensors.torch import load_file

    from facedet.detector import build_model

    path = Path(path)
    meta = read_metadata(path)
    if is_quantized(meta):
        raise FacedetError(f"{path} is a quantized (integer) model; this needs float weights (the file 'facedet quantize' started from)")
    if arch is not None and meta["arch"] != arch:
        raise FacedetError(f"{path} holds '{meta['arch']}' weights, but --arch is '{arch}'")
    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise FacedetError(f"{path} is truncated or corrupt ({short_error(exc)})") from None
    model = build_model(meta["arch"])
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise FacedetError(f"{path} does not match architecture '{meta['arch']}' ({detail})")
    for key, value in expected.items():
        if tensors[key].shape != value.shape:
            raise FacedetError(f"{path}: tensor {key} has shape {tuple(tensors[key].shape)}, expected {tuple(value.shape)} for '{meta['arch']}'")
        if not torch.isfinite(tensors[key].float()).all():
            raise FacedetError(f"{path}: tensor {key} contains NaN or infinity")
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return model, meta


def is_quantized(meta: dict[str, str]) -> bool:
    """Whether a header read by :func:`read_metadata` is an integer program's."""
    return meta.get("format") == QUANT_FORMAT


def training_summary(meta: dict[str, str]) -> dict[str, Any]:
    """The decoded ``training`` metadata (empty dict if absent or unreadable)."""
    try:
        value = json.loads(meta.get("training", "{}"))
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
