"""The architectures of the RNNPool-Face family as plain data (no torch).

An :class:`ArchSpec` names a model's layers, heads, priors and input
normalisation; :func:`facedet.detector.build_model` turns it into a torch
module (each layer spec's ``build``).  Everything that only needs to *know*
an architecture -- the command line, the integer interpreter, the ONNX
Runtime backend, priors -- reads it from here without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from facedet.graph import Block


@dataclass(frozen=True)
class Conv:
    """Layer spec: ConvBNAct ``cin -> cout``, 3x3 unless ``kernel`` says otherwise."""

    cin: int
    cout: int
    stride: int = 1
    kernel: int = 3

    def build(self) -> "Block":
        from facedet.detector.layers import ConvBNAct

        return ConvBNAct(self.cin, self.cout, self.kernel, self.stride)


@dataclass(frozen=True)
class Pool:
    """Layer spec: RNNPoolLayer on ``cin`` channels with hidden sizes ``h1, h2``."""

    cin: int
    hidden1: int
    hidden2: int
    patch: int = 8
    stride: int = 4

    def build(self) -> "Block":
        from facedet.rnnpool import RNNPoolLayer

        return RNNPoolLayer(self.cin, self.hidden1, self.hidden2, self.patch, self.stride)


@dataclass(frozen=True)
class MB:
    """Layer spec: InvertedResidual ``cin -> cout`` with stride and expansion ``t``."""

    cin: int
    cout: int
    stride: int = 1
    t: float = 2

    def build(self) -> "Block":
        from facedet.detector.layers import InvertedResidual

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

    def build(self) -> "Block":
        from facedet.detector.layers import DetectionHead

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
