"""RNNPool-Face: one model class, configured by an :class:`ArchSpec`.

The backbone is a flat list of layers (``features``); detection heads tap the
outputs of chosen layers (``sources``).  This flat, named structure is what
batch-norm folding, quantization and C export walk layer by layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from facedet.detector.layers import ConvBNAct, DetectionHead, InvertedResidual
from facedet.detector.priors import make_priors
from facedet.rnnpool import RNNPoolLayer


@dataclass(frozen=True)
class Conv:
    """Layer spec: ConvBNAct ``cin -> cout``, 3x3 unless ``kernel`` says otherwise."""

    cin: int
    cout: int
    stride: int = 1
    kernel: int = 3


@dataclass(frozen=True)
class Pool:
    """Layer spec: RNNPoolLayer on ``cin`` channels with hidden sizes ``h1, h2``."""

    cin: int
    hidden1: int
    hidden2: int
    patch: int = 8
    stride: int = 4


@dataclass(frozen=True)
class MB:
    """Layer spec: InvertedResidual ``cin -> cout`` with stride and expansion ``t``."""

    cin: int
    cout: int
    stride: int = 1
    t: float = 2


@dataclass(frozen=True)
class Head:
    """Head spec: taps the output of ``features[source]``."""

    source: int
    channels: int
    l2norm: float | None = None
    kernel: int = 3
    maxout: bool = False
    tower: int | None = None


@dataclass(frozen=True)
class ArchSpec:
    """Everything that defines one model of the family.

    Attributes:
        name: registry name (``m4``, ``qvga``, ``quant``, ``c``).
        description: one line for ``--help`` and the profile.
        input_size: default network input ``(height, width)``; inference resizes
            each image to this pixel *area* (aspect ratio preserved).
        in_channels: 1 (monochrome luma) or 3 (RGB).
        layers: backbone layer specs, in order.
        heads: head specs, in prior order.
        steps: prior stride (pixels) per head.
        anchors: square anchor side (pixels) per head.
    """

    name: str
    description: str
    input_size: tuple[int, int]
    in_channels: int
    layers: tuple
    heads: tuple
    steps: tuple[int, ...]
    anchors: tuple[int, ...]
    variances: tuple[float, float] = (0.1, 0.2)
    mean_bgr: tuple[float, float, float] = (104.0, 117.0, 123.0)
    extra: dict = field(default_factory=dict)

    @property
    def monochrome(self) -> bool:
        return self.in_channels == 1


def _stack(cin: int, cout: int, n: int, stride: int, t: float) -> list[MB]:
    """``n`` bottlenecks: the first changes channels/stride, the rest repeat."""
    return [MB(cin, cout, stride, t)] + [MB(cout, cout, 1, t) for _ in range(n - 1)]


_M4 = ArchSpec(
    name="m4",
    description="RNNPool-Face-M4: 320x240 monochrome, 56K parameters (fits a Cortex-M4)",
    input_size=(240, 320),
    in_channels=1,
    layers=(Conv(1, 4, 2), Pool(4, 16, 16), MB(64, 32), MB(32, 32), MB(32, 64, 2), MB(64, 64)),
    heads=(Head(2, 32, 10, maxout=True), Head(3, 32, 8), Head(4, 64, 5), Head(5, 64)),
    steps=(8, 8, 16, 16),
    anchors=(8, 16, 32, 48),
)

_QVGA = ArchSpec(
    name="qvga",
    description="RNNPool-Face-QVGA: 320x240 monochrome, 14 bottlenecks",
    input_size=(240, 320),
    in_channels=1,
    layers=(Conv(1, 4, 2), Pool(4, 16, 16), *_stack(64, 32, 4, 1, 2), *_stack(32, 32, 4, 1, 2), *_stack(32, 96, 3, 2, 2), *_stack(96, 128, 3, 1, 2)),
    heads=(Head(5, 32, 10, maxout=True), Head(9, 32, 8), Head(12, 96, 5), Head(15, 128)),
    steps=(8, 8, 16, 16),
    anchors=(8, 16, 32, 48),
)

_QUANT = ArchSpec(
    name="quant",
    description="RNNPool-Face-Quant: 640x480 RGB, 71K parameters",
    input_size=(480, 640),
    in_channels=3,
    layers=(Conv(3, 4, 2), Conv(4, 4, 1), Pool(4, 8, 8), *_stack(32, 16, 4, 1, 2), *_stack(16, 24, 4, 2, 2), *_stack(24, 32, 2, 2, 2), MB(32, 64, 2), MB(64, 96, 2)),
    heads=(Head(1, 4, 10, maxout=True, tower=8), Head(6, 16, 8), Head(10, 24, 5), Head(12, 32), Head(13, 64), Head(14, 96)),
    steps=(4, 8, 16, 32, 64, 128),
    anchors=(16, 32, 64, 128, 256, 512),
)

_C = ArchSpec(
    name="c",
    description="RNNPool-Face-C: 640x480 RGB, 1.5M parameters",
    input_size=(480, 640),
    in_channels=3,
    layers=(Pool(3, 16, 16), MB(64, 24, 1, 1), MB(24, 24, 1, 6), *_stack(24, 32, 3, 2, 6), *_stack(32, 64, 4, 2, 6), *_stack(64, 96, 3, 2, 6), *_stack(96, 160, 2, 2, 6), MB(160, 320, 2, 6)),
    heads=(Head(2, 24, 10, kernel=5, maxout=True), Head(5, 32, 8, kernel=5), Head(9, 64, 5, kernel=5), Head(12, 96, kernel=1), Head(14, 160, kernel=1), Head(15, 320)),
    steps=(4, 8, 16, 32, 64, 128),
    anchors=(16, 32, 64, 128, 256, 512),
)

ARCHS: dict[str, ArchSpec] = {spec.name: spec for spec in (_M4, _QVGA, _QUANT, _C)}
DEFAULT_ARCH = "m4"


def _build_layer(spec) -> nn.Module:
    if isinstance(spec, Conv):
        return ConvBNAct(spec.cin, spec.cout, spec.kernel, spec.stride)
    if isinstance(spec, Pool):
        return RNNPoolLayer(spec.cin, spec.hidden1, spec.hidden2, spec.patch, spec.stride)
    if isinstance(spec, MB):
        return InvertedResidual(spec.cin, spec.cout, spec.stride, spec.t)
    raise TypeError(f"unknown layer spec {spec!r}")


class RNNPoolFace(nn.Module):
    """An S3FD-style single-shot face detector with an RNNPool stem.

    ``forward`` maps a normalised image batch ``[B, C, H, W]`` to raw outputs
    ``conf [B, P, 2]`` (background, face logits; max-out already applied) and
    ``loc [B, P, 4]`` (SSD offsets), with priors in head order and row-major
    within a head -- the order of :meth:`priors`.
    """

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        self.features = nn.ModuleList(_build_layer(layer) for layer in spec.layers)
        self.heads = nn.ModuleList(DetectionHead(h.channels, h.kernel, h.l2norm, h.maxout, h.tower) for h in spec.heads)
        self.sources = tuple(h.source for h in spec.heads)
        self._last_source = max(self.sources)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        confs, locs = [], []
        taps = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.sources:
                taps[i] = x
            if i == self._last_source:
                break
        for src, head in zip(self.sources, self.heads):
            c, l = head(taps[src])
            confs.append(c)
            locs.append(l)
        return torch.cat(confs, 1), torch.cat(locs, 1)

    def feature_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Spatial size of every backbone layer output for an input of ``height x width``."""
        sizes = []
        for layer in self.features:
            height, width = layer.output_size(height, width)
            sizes.append((height, width))
        return sizes

    def head_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Spatial size ``(fh, fw)`` of each head's output map."""
        sizes = self.feature_sizes(height, width)
        return [head.output_size(*sizes[src]) for src, head in zip(self.sources, self.heads)]

    def priors(self, height: int, width: int) -> Tensor:
        """Priors for an input of ``height x width``: ``Tensor[P, 4]`` cxcywh pixels."""
        return make_priors(self.head_sizes(height, width), self.spec.steps, self.spec.anchors)

    def fits(self, height: int, width: int) -> bool:
        """Whether an input of ``height x width`` gives every layer and head a non-empty map."""
        h, w = height, width
        for layer in self.features:
            if isinstance(layer, RNNPoolLayer) and (h < layer.patch_size or w < layer.patch_size):
                return False
            h, w = layer.output_size(h, w)
            if h <= 0 or w <= 0:
                return False
        return all(fh > 0 and fw > 0 for fh, fw in self.head_sizes(height, width))

    def min_input_side(self) -> int:
        """Smallest ``s`` such that an ``s x s`` input :meth:`fits`."""
        return next(s for s in range(1, 4096) if self.fits(s, s))


def build_model(arch: str = DEFAULT_ARCH) -> RNNPoolFace:
    """Build a model by name (``facedet.detector.ARCHS`` lists the names)."""
    from facedet.errors import FacedetError

    try:
        spec = ARCHS[arch]
    except KeyError:
        raise FacedetError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHS)}") from None
    return RNNPoolFace(spec)
