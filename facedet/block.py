"""The torch side of :mod:`facedet.graph`: the protocol every model block answers.

It lives apart from :mod:`facedet.graph` because it is a ``torch.nn.Module``;
``facedet.graph.Block`` still names it (imported on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from facedet.graph import GraphBuilder


class Block(nn.Module):
    """The protocol every backbone layer and head answers.

    * ``output_size(h, w)``: spatial output size for an input of ``h x w``;
    * ``out_channels``: output channels;
    * ``lower(builder, name, x)``: append this block's primitive ops (named
      ``name`` or ``name.<part>``) reading tensor ``x`` to ``builder``; return
      the name of the block's output tensor;
    * ``rnn_matrices()``: the recurrent weight matrices by name (what
      sparsification thresholds); empty for blocks without RNNs.
    """

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        raise NotImplementedError

    def lower(self, builder: "GraphBuilder", name: str, x: str) -> str:
        raise NotImplementedError

    def rnn_matrices(self) -> dict[str, nn.Parameter]:
        return {}

