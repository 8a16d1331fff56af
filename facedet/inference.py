"""The detection pipeline: image in, face boxes in original pixels out.

Nothing here imports torch: the network runs in a backend
(:mod:`facedet.backends`), and only the torch backend loads torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facedet.arrays import namespace
from facedet.boxes import nms
from facedet.detector import ARCHS, DEFAULT_ARCH
from facedet.detector.postprocess import NMS_TOP_K, detect_boxes
from facedet.detector.priors import prior_boxes
from facedet.errors import FacedetError
from facedet.preprocess import network_scale, normalize, resize, to_bgr8
from facedet.weights import default_weights_path, is_quantized, read_metadata

if TYPE_CHECKING:  # pragma: no cover
    from facedet.detector import RNNPoolFace
    from facedet.graph import Graph

DEFAULT_THRESHOLD = 0.8  # F1-best of {0.5, 0.8} for the shipped weights (weights/README.md)
DEFAULT_NMS_THRESHOLD = 0.3
DEFAULT_MAX_FACES = 750
PYRAMID_UPSCALE = 1.5  # the pyramid's extra level above the base scale (Detector.pyramid_scales)


@dataclass
class Detections:
    """Faces found in one image.

    Attributes:
        boxes: ``float32[N, 4]`` xyxy in original-image pixels, clipped to the image.
        scores: ``float32[N]`` face probabilities, descending.
        width, height: size of the image the boxes refer to.
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    width: int = 0
    height: int = 0

    def __len__(self) -> int:
        return len(self.scores)

    def to_dict(self) -> list[dict]:
        """``[{"box": [x1, y1, x2, y2], "score": s}, ...]`` with plain floats."""
        return [{"box": [round(float(v), 2) for v in b], "score": round(float(s), 4)} for b, s in zip(self.boxes, self.scores)]


class Detector:
    """A network backend plus the pre- and post-processing the model was trained with.

    Build with :meth:`load` (a float weights file, a quantized model file, or
    the shipped default, on the backend asked for) or directly from a torch
    model (e.g. untrained, for tests): ``Detector(model)``.  With an integer
    ``program`` (``facedet quantize``) the network runs in the integer
    interpreter instead of torch; ``model`` then only supplies the
    architecture.  Everything around the network -- resize, normalisation,
    priors, decoding, NMS -- is the same code for every backend.
    """

    def __init__(
        self,
        model: "RNNPoolFace | None" = None,
        metadata: dict[str, str] | None = None,
        device: str = "cpu",
        program=None,
        *,
        backend=None,
        arch: str | None = None,
        structure: "Graph | None" = None,
    ) -> None:
        from facedet import backends

        if backend is None:
            if model is None:
                raise TypeError("Detector needs a model or a backend")
            backend = backends.IntBackend(program) if program is not None else backends.TorchBackend(model, device)
        if model is not None:
            arch, structure = model.spec.name, model.structure
        if arch is None or structure is None:
            raise TypeError("a Detector built from a backend needs arch and structure")
        self.backend = backend
        self._model = model
        self.metadata = metadata or {}
        self.device = device
        self.spec = ARCHS[arch]
        self.structure = structure
        self._min_side = structure.min_input_side()
        self._priors: dict[tuple[int, int], object] = {}

    @property
    def program(self):
        """The integer program (None unless the network runs in the integer interpreter)."""
        return getattr(self.backend, "program", None)

    @property
    def quantized(self) -> bool:
        """Whether the network runs as an integer program."""
        return self.program is not None

    @property
    def arch(self) -> str:
        return self.spec.name

    @property
    def model(self) -> "RNNPoolFace":
        """The torch model; for other backends an untrained one of the architecture (imports torch)."""
        if self._model is None:
            from facedet.detector import build_model

            self._model = build_model(self.arch)
        return self._model

    @classmethod
    def load(
        cls,
        weights: str | Path | None = None,
        arch: str | None = None,
        device: str = "cpu",
        quantized: bool = False,
        *,
        backend: str | None = None,
        threads: int | None = None,
        on_warning=None,
    ) -> "Detector":
        """Load a weights file (float or quantized, recognised from its header).

        Args:
            weights: the file; None: the shipped default -- the float weights,
                or the shipped integer model when ``quantized`` is set.
            arch: if given, the file must be for this architecture.
            quantized: ``--int8``: the file must be an integer model.
            backend: ``torch`` (None: the default), ``onnxruntime`` or ``auto``
                for float weights (:func:`facedet.backends.resolve_backend`);
                an integer model always runs in the integer interpreter.
            threads: threads of the backend (None: its default).
            on_warning: called with a one-line message for non-fatal problems.
        """
        from facedet import backends

        if weights is None:
            arch = arch or DEFAULT_ARCH
            if arch not in ARCHS:
                raise FacedetError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHS)}")
            path = default_weights_path(arch, quantized=quantized)
            if path is None:
                what = "quantized model is" if quantized else "weights are"
                hint = "make one with 'facedet quantize'" if quantized else "train one with 'facedet train'"
                raise FacedetError(f"no {what} installed for '{arch}'; pass --weights FILE ({hint})")
            weights = path
        meta = read_metadata(weights)
        kind = backends.resolve_backend(backend, is_quantized(meta))
        if kind == "int8":
            from facedet.quant.qfile import load_program

            if arch is not None and meta["arch"] != arch:
                raise FacedetError(f"{weights} holds a quantized '{meta['arch']}' model, but --arch is '{arch}'")
            program, meta = load_program(weights, meta)
            return cls(metadata=meta, backend=backends.IntBackend(program, threads), arch=program.arch, structure=backends.program_structure(program))
        if quantized:
            raise FacedetError(f"{weights} holds float weights; --int8 needs a quantized model (make one with 'facedet quantize')")
        if arch is not None and meta["arch"] != arch:
            raise FacedetError(f"{weights} holds '{meta['arch']}' weights, but --arch is '{arch}'")
        if kind == "onnxruntime" and device == "cpu":
            source = backends.onnx_model(weights, explicit=backend == "onnxruntime", on_warning=on_warning)
            if source is not None:
                net = backends.OnnxBackend(source, threads, cached=isinstance(source, Path))
                name, structure = backends.onnx_structure(net.metadata, str(weights))
                return cls(metadata=meta, backend=net, arch=name, structure=structure)
        from facedet.weights import load_weights

        model, meta = load_weights(weights, arch)
        return cls(model, meta, backend=backends.TorchBackend(model, device, threads, inference=True))

    @property
    def backend_name(self) -> str:
        """``torch``, ``onnxruntime`` or ``int8``."""
        return self.backend.name

    def forward_array(self, x: np.ndarray):
        """The network on a prepared input ``float32[1, C, h, w]``: ``(conf [P, 2], loc [P, 4])``
        as the backend gives them (tensors for torch, NumPy arrays otherwise)."""
        return self.backend.run(np.ascontiguousarray(x, dtype=np.float32))

    def forward(self, x):
        """The network on a prepared input ``Tensor[1, C, h, w]``: ``(conf Tensor[1, P, 2], loc Tensor[1, P, 4])``,
        run by the backend, as :meth:`detect` runs it."""
        import torch

        conf, loc = self.forward_array(x.detach().cpu().numpy())
        return torch.as_tensor(conf)[None].to(x.device), torch.as_tensor(loc)[None].to(x.device)

    def priors(self, height: int, width: int):
        """Priors ``[P, 4]`` cxcywh pixels for an input of ``height x width``, of the backend's array kind."""
        key = (height, width)
        if key not in self._priors:
            if len(self._priors) > 32:
                self._priors.clear()
            sizes = self.structure.head_sizes(height, width)
            if sizes is None:
                raise FacedetError(f"input {height}x{width} is too small for '{self.arch}'")
            self._priors[key] = self.backend.asarray(prior_boxes(sizes, self.spec.steps, self.spec.anchors))
        return self._priors[key]

    def prepare_array(self, image: np.ndarray, scale: float | None = None) -> tuple[np.ndarray, float, float]:
        """Image -> (network input ``float32[1, C, h, w]``, sx, sy)."""
        image = to_bgr8(image)
        h, w = image.shape[:2]
        if scale is None:
            scale = network_scale(h, w, self.spec.input_size)
        if not (scale > 0 and np.isfinite(scale)):
            raise FacedetError(f"scale must be a positive number, got {scale}")
        r = resize(image, scale, self._min_side)
        return normalize(r.image, self.spec.in_channels, self.spec.mean_bgr)[None], r.sx, r.sy

    def prepare(self, image: np.ndarray, scale: float | None = None):
        """Image -> (network input ``Tensor[1, C, h, w]`` on the detector's device, sx, sy)."""
        import torch

        x, sx, sy = self.prepare_array(image, scale)
        return torch.from_numpy(x).to(self.device), sx, sy

    def pyramid_scales(self, height: int, width: int, levels: int = 3, upscale: float | None = PYRAMID_UPSCALE) -> list[float]:
        """Scales of the detection pyramid, largest first.

        ``upscale`` x the area-preserving scale, if the image has the pixels for
        it (that scale is at most 1: the image is never enlarged for this level);
        then the area-preserving scale and ``levels - 1`` halvings of it.  A
        halving is used only if the image is still at least twice the model's
        minimum input side there.  ``m4``'s largest anchor is 48 px, so faces
        much larger than that at the base scale are found one or two octaves
        down; the upscaled level gives the many faces of 25-50 px at the base
        scale a second look at 1.5x (weights/README.md measures the effect).
        """
        base = network_scale(height, width, self.spec.input_size)
        scales = [base]
        while len(scales) < levels and min(height, width) * scales[-1] / 2 >= 2 * self._min_side:
            scales.append(scales[-1] / 2)
        if upscale and upscale * base <= 1.0 + 1e-9:
            scales.insert(0, upscale * base)
        return scales

    def detect(
        self,
        image: np.ndarray,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        nms_threshold: float = DEFAULT_NMS_THRESHOLD,
        max_faces: int = DEFAULT_MAX_FACES,
        scale: float | None = None,
        pyramid: bool = False,
        upscale: float | None = PYRAMID_UPSCALE,
        top_k: int = NMS_TOP_K,
    ) -> Detections:
        """Detect faces in one image.

        Args:
            image: ``uint8[H, W, 3]`` BGR (grey, BGRA, 16-bit are accepted too).
            threshold: minimum face score (exclusive).
            nms_threshold: NMS IoU threshold.
            max_faces: at most this many boxes.
            scale: resize factor before the network; None = the area-preserving
                rule that gives the image the model's nominal pixel budget.
            pyramid: also run at 1.5x that scale (when the image has the
                pixels) and at half and quarter of it (see :meth:`pyramid_scales`),
                and merge all boxes with one NMS; takes about 3.5x the time of
                the base scale alone (``scripts/bench_speed.py``), and finds more
                faces (the upscaled level) and faces larger than the anchors (the
                halvings).  Ignored when ``scale`` is given.
            upscale: the pyramid's level above the base scale (None: no such
                level, about half the time, fewer faces found).
            top_k: at most this many best-scoring boxes per scale enter NMS.
        Returns:
            :class:`Detections` in original-image pixels.
        """
        h, w = image.shape[:2]
        scales = self.pyramid_scales(h, w, upscale=upscale) if (pyramid and scale is None) else [scale]
        return self.detect_scales(image, scales, threshold=threshold, nms_threshold=nms_threshold, max_faces=max_faces, top_k=top_k)

    def detect_scales(
        self,
        image: np.ndarray,
        scales: list[float | None],
        *,
        threshold: float = DEFAULT_THRESHOLD,
        nms_threshold: float = DEFAULT_NMS_THRESHOLD,
        max_faces: int = DEFAULT_MAX_FACES,
        top_k: int = NMS_TOP_K,
    ) -> Detections:
        """Detect at each of ``scales`` and merge, as :meth:`detect` does for its pyramid.

        Each scale (None: the area-preserving one) is post-processed on its own;
        with more than one scale all boxes then go through one more NMS and the
        ``max_faces`` cap.  Boxes are clipped to the image last.
        """
        h, w = image.shape[:2]
        image = to_bgr8(image)
        all_boxes, all_scores = [], []
        for s in scales:
            x, sx, sy = self.prepare_array(image, s)
            conf, loc = self.forward_array(x)
            priors = self.priors(x.shape[2], x.shape[3])
            boxes, scores = detect_boxes(conf, loc, priors, threshold=threshold, nms_threshold=nms_threshold, max_faces=max_faces, variances=self.spec.variances, top_k=top_k)
            all_boxes.append(boxes / self.backend.asarray(np.array([sx, sy, sx, sy], np.float32)))
            all_scores.append(scores)
        xp = namespace(all_boxes[0])
        boxes, scores = xp.concatenate(all_boxes), xp.concatenate(all_scores)
        if len(scales) > 1 and len(scores):
            keep = nms(boxes, scores, nms_threshold)[:max_faces]
            boxes, scores = boxes[keep], scores[keep]
        boxes, scores = _numpy(boxes), _numpy(scores)
        boxes = boxes.astype(np.float32).reshape(-1, 4)
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, w)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, h)
        return Detections(boxes, scores.astype(np.float32), w, h)


def _numpy(a) -> np.ndarray:
    return a.cpu().numpy() if hasattr(a, "cpu") else np.asarray(a)
