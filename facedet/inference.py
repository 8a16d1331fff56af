"""The detection pipeline: image in, face boxes in original pixels out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from facedet.boxes import nms
from facedet.detector import DEFAULT_ARCH, RNNPoolFace, build_model
from facedet.detector.postprocess import NMS_TOP_K, detect_boxes
from facedet.errors import FacedetError
from facedet.preprocess import network_scale, normalize, resize, to_bgr8
from facedet.weights import default_weights_path, is_quantized, load_weights, read_metadata

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
    """A model plus the pre- and post-processing it was trained with.

    Build with :meth:`load` (a float weights file, a quantized model file, or
    the shipped default) or directly from a model (e.g. untrained, for tests).
    With an integer ``program`` (``facedet quantize``) the network runs in the
    integer interpreter instead of torch; ``model`` then only supplies the
    architecture (priors, strides, minimum input), and everything around the
    network -- resize, normalisation, decoding, NMS -- is the same code.
    """

    def __init__(self, model: RNNPoolFace, metadata: dict[str, str] | None = None, device: str = "cpu", program=None) -> None:
        self.model = model.to(device).eval()
        self.metadata = metadata or {}
        self.device = torch.device(device)
        self.spec = model.spec
        self.program = program
        self._min_side = model.min_input_side()
        self._priors: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def quantized(self) -> bool:
        """Whether the network runs as an integer program."""
        return self.program is not None

    @property
    def arch(self) -> str:
        return self.spec.name

    @classmethod
    def load(cls, weights: str | Path | None = None, arch: str | None = None, device: str = "cpu", quantized: bool = False) -> "Detector":
        """Load a weights file (float or quantized, recognised from its header).

        With ``weights`` None, the shipped default: the float weights, or the
        shipped integer model when ``quantized`` is set.
        """
        if weights is None:
            arch = arch or DEFAULT_ARCH
            build_model(arch)  # validates the name first
            path = default_weights_path(arch, quantized=quantized)
            if path is None:
                what = "quantized model is" if quantized else "weights are"
                hint = "make one with 'facedet quantize'" if quantized else "train one with 'facedet train'"
                raise FacedetError(f"no {what} installed for '{arch}'; pass --weights FILE ({hint})")
            weights = path
        meta = read_metadata(weights)
        if is_quantized(meta):
            from facedet.quant.qfile import load_program

            if arch is not None and meta["arch"] != arch:
                raise FacedetError(f"{weights} holds a quantized '{meta['arch']}' model, but --arch is '{arch}'")
            program, meta = load_program(weights, meta)
            return cls(build_model(meta["arch"]), meta, device, program=program)
        if quantized:
            raise FacedetError(f"{weights} holds float weights; --int8 needs a quantized model (make one with 'facedet quantize')")
        model, meta = load_weights(weights, arch)
        return cls(model, meta, device)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network on a prepared input ``[1, C, h, w]``: ``(conf [1, P, 2], loc [1, P, 4])``."""
        if self.program is None:
            return self.model(x)
        from facedet.quant import interpreter

        qin = self.program.qparams[self.program.input_name]
        frame = interpreter.quantize_frame(x[0].cpu().numpy(), qin.scale, qin.zero_point)
        conf, loc = interpreter.dequantize_outputs(self.program, interpreter.run(self.program, frame))
        return torch.from_numpy(conf)[None].to(self.device), torch.from_numpy(loc)[None].to(self.device)

    def priors(self, height: int, width: int) -> torch.Tensor:
        key = (height, width)
        if key not in self._priors:
            if len(self._priors) > 32:
                self._priors.clear()
            self._priors[key] = self.model.priors(height, width).to(self.device)
        return self._priors[key]

    def prepare(self, image: np.ndarray, scale: float | None = None):
        """Image -> (network input ``Tensor[1, C, h, w]``, sx, sy)."""
        image = to_bgr8(image)
        h, w = image.shape[:2]
        if scale is None:
            scale = network_scale(h, w, self.spec.input_size)
        if not (scale > 0 and np.isfinite(scale)):
            raise FacedetError(f"scale must be a positive number, got {scale}")
        r = resize(image, scale, self._min_side)
        x = torch.from_numpy(normalize(r.image, self.spec.in_channels, self.spec.mean_bgr))[None]
        return x.to(self.device), r.sx, r.sy

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

    @torch.inference_mode()
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

    @torch.inference_mode()
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
            x, sx, sy = self.prepare(image, s)
            conf, loc = self.forward(x)
            priors = self.priors(x.shape[2], x.shape[3])
            boxes, scores = detect_boxes(conf[0], loc[0], priors, threshold=threshold, nms_threshold=nms_threshold, max_faces=max_faces, variances=self.spec.variances, top_k=top_k)
            all_boxes.append(boxes / torch.tensor([sx, sy, sx, sy], dtype=boxes.dtype, device=boxes.device))
            all_scores.append(scores)
        boxes, scores = torch.cat(all_boxes), torch.cat(all_scores)
        if len(scales) > 1 and len(scores):
            keep = nms(boxes, scores, nms_threshold)[:max_faces]
            boxes, scores = boxes[keep], scores[keep]
        boxes = boxes.cpu().numpy().astype(np.float32).reshape(-1, 4)
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, w)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, h)
        return Detections(boxes, scores.cpu().numpy().astype(np.float32), w, h)
