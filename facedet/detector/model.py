"""RNNPool-Face: one model class, configured by an :class:`ArchSpec`.

The backbone is a flat list of blocks (``features``); detection heads tap the
outputs of chosen blocks (``sources``).  :meth:`RNNPoolFace.steps` is the one
walk over blocks and heads in execution order (it stops after the last tapped
block); ``forward`` follows it, and so does :meth:`RNNPoolFace.lower`, which
writes the model as a :class:`facedet.graph.Graph` of primitive ops -- what
profiling, quantization and C export walk.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor, nn

from facedet.detector.priors import make_priors
from facedet.detector.spec import ARCHS, DEFAULT_ARCH, MB, ArchSpec, Conv, Head, Pool  # noqa: F401  (the specs live in spec.py, torch-free)
from facedet.graph import Block, Graph, GraphBuilder


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
        sizes = self.structure.head_sizes(height, width)
        if sizes is None:
            raise ValueError(f"input {height}x{width} is too small for '{self.spec.name}'")
        return sizes

    def priors(self, height: int, width: int) -> Tensor:
        """Priors for an input of ``height x width``: ``Tensor[P, 4]`` cxcywh pixels."""
        return make_priors(self.head_sizes(height, width), self.spec.steps, self.spec.anchors)

    def fits(self, height: int, width: int) -> bool:
        """Whether an input of ``height x width`` gives every op a non-empty map."""
        return self.structure.shapes(height, width) is not None

    def min_input_side(self) -> int:
        """Smallest ``s`` such that an ``s x s`` input :meth:`fits`."""
        return self.structure.min_input_side()


def build_model(arch: str = DEFAULT_ARCH) -> RNNPoolFace:
    """Build a model by name (``facedet.detector.ARCHS`` lists the names)."""
    from facedet.errors import FacedetError

    try:
        spec = ARCHS[arch]
    except KeyError:
        raise FacedetError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHS)}") from None
    return RNNPoolFace(spec)
