"""RNNPool-Face: one model class, configured by an :class:`ArchSpec`.

The backbone is a flat list of blocks (``features``); detection heads tap the
outputs of chosen blocks (``sources``).  :meth:`RNNPoolFace.steps` is the one
walk over blocks and heads in execution order (it stops after the last tapped
block); ``forward`` follows it, and so does :meth:`RNNPoolFace.lower`, which
writes the model as a :class:`facedet.graph.Graph` of primitive ops -- what
profiling, quantization and C export walk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import Tensor, nn

from facedet.detector.layers import ConvBNAct, DetectionHead, InvertedResidual
from facedet.detector.priors import make_priors
from facedet.graph import Block, Graph, GraphBuilder
from facedet.rnnpool import RNNPoolLayer


@dataclass(frozen=True)
class Conv:
    """Layer spec: ConvBNAct ``cin -> cout``, 3x3 unless ``kernel`` says otherwise."""

    cin: int
    cout: int
    stride: int = 1
    kernel: int = 3

    def build(self) -> Block:
        return ConvBNAct(self.cin, self.cout, self.kernel, self.stride)


@dataclass(frozen=True)
class Pool:
    """Layer spec: RNNPoolLayer on ``cin`` channels with hidden sizes ``h1, h2``."""

    cin: int
    hidden1: int
    hidden2: int
    patch: int = 8
    stride: int = 4

    def build(self) -> Block:
        return RNNPoolLayer(self.cin, self.hidden1, self.hidden2, self.patch, self.stride)


@dataclass(frozen=True)
class MB:
    """Layer spec: InvertedResidual ``cin -> cout`` with stride and expansion ``t``."""

    cin: int
    cout: int
    stride: int = 1
    t: float = 2

    def build(self) -> Block:
        return InvertedResidual(self.cin, self.cout, self.stride, self.t)


@dataclass(frozen=True)
class Head:
    """Head spec: taps the output of ``features[source]``."""

    source: int
    channels: int
    l2norm: float | None = None
    kernel: int = 3
    maxout: bool = False
    tower: int | None = None

    def build(self) -> Block:
        return DetectionHead(self.channels, self.kernel, self.l2norm, self.maxout, self.tower)


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
        self.features = nn.ModuleList(layer.build() for layer in spec.layers)
        self.heads = nn.ModuleList(h.build() for h in spec.heads)
        self.sources = tuple(h.source for h in spec.heads)
        self.structure = self.lower(weights=False)  # shapes and costs; parameters are not copied

    def steps(self) -> Iterator[tuple[str, Block]]:
        """``(name, block)`` in execution order: each backbone block, then the
        heads tapping its output; stops after the last tapped block."""
        last = max(self.sources)
        for i, layer in enumerate(self.features):
            if i > last:
                return
            yield f"features.{i}", layer
            for k, src in enumerate(self.sources):
                if src == i:
                    yield f"heads.{k}", self.heads[k]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        confs, locs = [None] * len(self.heads), [None] * len(self.heads)
        y = x
        for name, block in self.steps():
            if name.startswith("heads."):
                k = int(name.split(".")[1])
                confs[k], locs[k] = block(y)
            else:
                y = block(y)
        return torch.cat(confs, 1), torch.cat(locs, 1)

    def lower(self, weights: bool = True) -> Graph:
        """The model as primitive ops (batch norm folded), in :meth:`steps` order.

        Args:
            weights: copy the (folded) parameters into the ops; False gives a
                structure-only graph, enough for shapes and costs.
        """
        builder = GraphBuilder("input", self.spec.in_channels, weights=weights)
        y = builder.graph.input
        for name, block in self.steps():
            if name.startswith("heads."):
                block.lower(builder, name, y)
            else:
                y = block.lower(builder, name, y)
        return builder.graph

    def feature_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Spatial size of every backbone block output (up to the last tapped one)."""
        shapes = self.structure.shapes(height, width)
        if shapes is None:
            raise ValueError(f"input {height}x{width} is too small for '{self.spec.name}'")
        return [shapes[name][:2] for name, _ in self.steps() if name.startswith("features.")]

    def head_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Spatial size ``(fh, fw)`` of each head's output map."""
        shapes = self.structure.shapes(height, width)
        if shapes is None:
            raise ValueError(f"input {height}x{width} is too small for '{self.spec.name}'")
        return [shapes[h.conf][:2] for h in self.structure.heads]

    def priors(self, height: int, width: int) -> Tensor:
        """Priors for an input of ``height x width``: ``Tensor[P, 4]`` cxcywh pixels."""
        return make_priors(self.head_sizes(height, width), self.spec.steps, self.spec.anchors)

    def fits(self, height: int, width: int) -> bool:
        """Whether an input of ``height x width`` gives every op a non-empty map."""
        return self.structure.shapes(height, width) is not None

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
