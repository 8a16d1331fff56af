"""What runs the network: torch, ONNX Runtime, or the integer interpreter.

A backend maps a prepared input ``float32[1, C, h, w]`` (NumPy) to the raw
outputs ``(conf [P, 2], loc [P, 4])`` of the one image; everything around it
(resizing, priors, decoding, NMS) is :class:`facedet.inference.Detector`'s and
the same for all backends.

* ``torch`` -- the torch model.  Its outputs stay torch tensors, and so does
  the post-processing after it (what facedet always did).
* ``onnxruntime`` -- the float model exported to ONNX
  (:mod:`facedet.onnx_export`); needs onnxruntime (``pip install
  'facedet[onnx]'``), and does not import torch once the export exists.
  ``facedet detect`` exports the weights once into a cache keyed by their
  SHA-256 (:func:`onnx_model_path`) and reads the cached file afterwards.
* ``int8`` -- an integer program (``facedet quantize``) in the NumPy
  interpreter (:mod:`facedet.quant.interpreter`); no torch either.

Only the ``torch`` backend and a first ONNX export import torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from facedet.errors import FacedetError, UsageError

BACKENDS = ("auto", "torch", "onnxruntime")
ONNX_INSTALL_HINT = "pip install 'facedet[onnx]'"
CACHE_ENV = "FACEDET_CACHE_DIR"


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401  (the backend imports it next anyway)
    except ImportError:
        return False
    return True


def resolve_backend(backend: str | None, quantized: bool) -> str:
    """The backend a float or quantized model runs on for ``--backend`` (``auto``: the fastest installed).

    ``auto`` is ``onnxruntime`` when it is installed (it starts without
    importing torch; once loaded, torch with the native kernels is faster per
    image, docs/onnx.md), else ``torch``; None (the library's default) is ``torch``.  An integer model
    always runs in the interpreter (``int8``).
    """
    if backend is None:
        backend = "auto" if quantized else "torch"
    if backend not in BACKENDS:
        raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if quantized:
        if backend != "auto":
            raise UsageError(f"--backend {backend} runs float weights; an integer model runs in the integer interpreter (leave --backend out)")
        return "int8"
    if backend == "auto":
        return "onnxruntime" if onnxruntime_available() else "torch"
    if backend == "onnxruntime" and not onnxruntime_available():
        raise FacedetError(f"--backend onnxruntime needs onnxruntime, which is not installed: {ONNX_INSTALL_HINT}")
    return backend


# --------------------------------------------------------------------------- backends


class TorchBackend:
    """The torch model; outputs are tensors on its device.

    With ``inference`` the network runs as :func:`facedet.detector.fast.inference_model`
    (batch norm folded, the fused native kernels): the same outputs to float
    rounding, faster; its folded weights are a copy taken here, so a model that
    is still being trained runs as itself (``inference=False``).
    """

    name = "torch"

    def __init__(self, model, device: str = "cpu", threads: int | None = None, inference: bool = False) -> None:
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        self.model = model.to(device).eval()
        if inference:
            from facedet.detector.fast import inference_model

            self.model = inference_model(self.model)
        self.device = torch.device(device)

    def run(self, x: np.ndarray):
        import torch

        with torch.inference_mode():
            conf, loc = self.model(torch.from_numpy(x).to(self.device))
        return conf[0], loc[0]

    def asarray(self, a: np.ndarray):
        import torch

        return torch.from_numpy(a).to(self.device)


class NumpyOutputs:
    """Mixin of the backends whose outputs are NumPy arrays."""

    def asarray(self, a: np.ndarray) -> np.ndarray:
        return a


class IntBackend(NumpyOutputs):
    """An integer program in the NumPy interpreter."""

    name = "int8"

    def __init__(self, program, threads: int | None = None) -> None:
        from facedet.quant import interpreter
        from facedet.runtime import limit_blas_threads

        if threads is not None:
            interpreter.set_threads(threads)
            limit_blas_threads(threads)  # its products run in NumPy's BLAS
        self.program = program
        self._qin = program.qparams[program.input_name]

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from facedet.quant import interpreter

        frame = interpreter.quantize_frame(x[0], self._qin.scale, self._qin.zero_point)
        return interpreter.dequantize_outputs(self.program, interpreter.run(self.program, frame))


class OnnxBackend(NumpyOutputs):
    """An exported model (file path or bytes) in an ONNX Runtime session on the CPU.

    With ``cached`` (a file of the export cache, :func:`onnx_model`) the session
    reads a copy in ONNX Runtime's own format with the graph optimizations
    already applied, written next to the export once per onnxruntime version:
    that halves the session's start-up (about 35 -> 17 ms for ``m4``).
    """

    name = "onnxruntime"

    def __init__(self, model: str | Path | bytes, threads: int | None = None, *, cached: bool = False) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise FacedetError(f"the onnxruntime backend needs onnxruntime, which is not installed: {ONNX_INSTALL_HINT}") from None
        from facedet.onnx_export import INPUT_NAME, OUTPUT_NAMES

        self.session = None
        if cached and not isinstance(model, bytes):
            prepared = _ort_format_copy(ort, Path(model))
            if prepared is not None:
                try:
                    self.session = ort.InferenceSession(str(prepared), sess_options=_session_options(ort, threads, ort_format=True), providers=["CPUExecutionProvider"])
                except Exception:  # a damaged or foreign copy: drop it, read the export itself
                    prepared.unlink(missing_ok=True)
        if self.session is None:
            source = model if isinstance(model, bytes) else str(model)
            try:
                self.session = ort.InferenceSession(source, sess_options=_session_options(ort, threads), providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own exception types
                where = "" if isinstance(model, bytes) else f"{model}: "
                raise FacedetError(f"{where}onnxruntime cannot load the model ({' '.join(str(exc).split())[:200]})") from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self._input, self._outputs = INPUT_NAME, list(OUTPUT_NAMES)

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        conf, loc = self.session.run(self._outputs, {self._input: x})
        return conf[0], loc[0]


def _session_options(ort, threads: int | None, *, ort_format: bool = False, level=None):
    opts = ort.SessionOptions()
    opts.graph_optimization_level = level if level is not None else ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.inter_op_num_threads = 1
    if threads is not None:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3  # errors only
    if ort_format:
        opts.add_session_config_entry("session.load_model_format", "ORT")
    return opts


def _ort_format_copy(ort, path: Path) -> Path | None:
    """``path`` in ONNX Runtime's format, optimized (extended level: no layout specific to this CPU); None if it cannot be written."""
    from facedet.fileutil import atomic_path

    target = path.with_name(f"{path.stem}-onnxruntime{ort.__version__}.ort")
    if target.is_file():
        return target
    try:
        with atomic_path(target) as tmp:
            opts = _session_options(ort, 1, level=ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
            opts.optimized_model_filepath = str(tmp)
            opts.add_session_config_entry("session.save_model_format", "ORT")
            ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception:  # read-only cache, or an onnxruntime that cannot write its format: use the export itself
        return None
    return target if target.is_file() else None


# --------------------------------------------------------------------------- the ONNX cache


def cache_dir() -> Path:
    """Where exported models are kept: ``$FACEDET_CACHE_DIR``, else ``$XDG_CACHE_HOME/facedet``, else ``~/.cache/facedet``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facedet"


def onnx_model(weights: str | Path, *, explicit: bool = True, on_warning=None) -> Path | bytes | None:
    """The ONNX model of a float weights file, exported on first use.

    The cache file is named by the SHA-256 of the weights' bytes and the
    exporter's version (``<sha256>-v<N>.onnx`` under ``cache_dir()/onnx``), so
    edited or replaced weights get a new export and a stale one is never
    read.  The first call exports (this imports torch and needs the ``onnx``
    package); later calls only hash the weights.  When the cache cannot be
    written the model is exported on every run and returned as bytes
    (``on_warning`` is told why).

    Returns None instead of failing when the export needs the ``onnx`` package,
    it is not installed and ``explicit`` is false (``--backend auto`` then uses torch).
    """
    import importlib.util

    from facedet.fileutil import atomic_path, sha256_file
    from facedet.onnx_export import DEFAULT_OPSET, INSTALL_HINT, META_VERSION, export_model

    digest = sha256_file(weights)
    path = cache_dir() / "onnx" / f"{digest}-v{META_VERSION}.onnx"
    if path.is_file():
        return path
    if importlib.util.find_spec("onnx") is None:
        if not explicit:
            return None
        raise FacedetError(f"--backend onnxruntime exports the weights to ONNX once, which needs the onnx package: {INSTALL_HINT}")
    model, _ = export_model(weights, height=None, width=None, opset=DEFAULT_OPSET, batch=1)
    data = model.SerializeToString()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        if on_warning is not None:
            on_warning(f"cannot cache the ONNX export in {path.parent} ({exc.strerror or exc}); exporting again on every run")
        return data
    return path


def onnx_structure(metadata: dict[str, str], source: str):
    """``(arch, structure graph)`` from an exported file's metadata."""
    from facedet.detector import ARCHS
    from facedet.graph import Graph
    from facedet.onnx_export import META_FORMAT

    if metadata.get("format") != META_FORMAT or metadata.get("arch") not in ARCHS:
        raise FacedetError(f"{source} is not an ONNX model written by facedet export-onnx")
    try:
        return metadata["arch"], Graph.from_structure(json.loads(metadata["structure"]))
    except (KeyError, ValueError) as exc:
        raise FacedetError(f"{source}: its facedet metadata is damaged ({exc})") from None


def program_structure(program):
    """The structure graph of an integer program: its ops are the float graph's, one for one."""
    from facedet.graph import Graph, op_structure

    ops = [op_structure(op) for op in program.ops]
    return Graph.from_structure({"input": program.input_name, "in_channels": program.in_channels, "ops": ops, "heads": [list(h) for h in program.heads]})
