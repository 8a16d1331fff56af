"""The RNNPool operator and the RNNPool layer (Saha et al., NeurIPS 2020, section 3.1 and Algorithm 1).

RNNPool summarises one ``P x P x k`` patch into a ``4*h2`` vector with two
FastGRNNs whose weights are shared by all passes and all patches:

1. row pass: RNN1 runs along every row (left to right), final states ``p^r_i``;
2. RNN2 runs over ``p^r_0..p^r_{P-1}`` forward and backward -> ``q^r_1, q^r_2``;
3. column pass: RNN1 runs down every column (top to bottom), final states ``p^c_j``;
4. RNN2 forward and backward over them -> ``q^c_1, q^c_2``;
5. output ``[q^r_1, q^r_2, q^c_1, q^c_2]`` (rows fwd, rows bwd, cols fwd, cols bwd).

Every initial state is zero.  The implementation batches all rows and columns
of all patches of all images into single RNN calls: no Python loop over patches.
At inference (no autograd) on CPU float32 the whole operator runs instead as one
call into the fused C kernel (:mod:`facedet.rnnpool.fused`) when it is built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facedet.graph import Block
from facedet.rnnpool import fused
from facedet.rnnpool.fastgrnn import FastGRNNCell


class RNNPool(nn.Module):
    """RNNPool on a batch of patches.

    Args:
        in_channels: ``k``, channels per pixel.
        hidden1: ``h1``, RNN1 state size.
        hidden2: ``h2``, RNN2 state size; the output has ``4 * h2`` features.

    Patches need not be square: rows have length ``P_w`` and columns ``P_h``.
    """

    def __init__(self, in_channels: int, hidden1: int, hidden2: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.hidden1 = hidden1
        self.hidden2 = hidden2
        self.rnn1 = FastGRNNCell(in_channels, hidden1)
        self.rnn2 = FastGRNNCell(hidden1, hidden2)

    @property
    def out_channels(self) -> int:
        return 4 * self.hidden2

    def forward(self, patches: Tensor) -> Tensor:
        """Summarise independent patches.

        Args:
            patches: ``[N, k, P_h, P_w]``.
        Returns:
            ``[N, 4*h2]`` in the order rows-fwd, rows-bwd, cols-fwd, cols-bwd.
        """
        n, k, ph, pw = patches.shape
        if fused.usable(patches, self):
            return fused.rnnpool_map(self, patches, (ph, pw), (ph, pw)).reshape(n, 4 * self.hidden2)
        x = patches.permute(0, 2, 3, 1)  # [N, P_h, P_w, k]
        rows = x.reshape(n * ph, pw, k)  # each row, scanned left to right
        cols = x.transpose(1, 2).reshape(n * pw, ph, k)  # each column, top to bottom
        p_rows, p_cols = self._rnn1_pair(rows, cols)
        return self._summarise(p_rows.reshape(n, ph, self.hidden1), p_cols.reshape(n, pw, self.hidden1))

    def forward_map(self, x: Tensor, patch_size: int, stride: int) -> Tensor:
        """Pool every ``patch_size`` patch of a map, taken with ``stride``.

        Equal to cutting the patches out and calling :meth:`forward`, but it
        shares work between overlapping patches: a patch row is also a row of
        the patch ``stride`` pixels below it (and a patch column one of the
        patch to its right), so RNN1 runs once per (image row, patch column) and
        once per (image column, patch row) -- half the RNN1 work at stride
        ``P/2`` -- and never materialises the patches.

        Args:
            x: ``[B, k, H, W]``.
        Returns:
            ``[B, 4*h2, oh, ow]`` with ``oh = (H - P)//stride + 1`` (same for ``ow``).
        """
        if fused.usable(x, self):
            return fused.rnnpool_map(self, x, (patch_size, patch_size), (stride, stride))
        return self._forward_map_torch(x, patch_size, stride)

    def _forward_map_torch(self, x: Tensor, patch_size: int, stride: int) -> Tensor:
        """:meth:`forward_map` with torch ops (training, and where the fused kernel is unavailable)."""
        b, k, h, w = x.shape
        p, s = patch_size, stride
        oh, ow = (h - p) // s + 1, (w - p) // s + 1
        hu, wu = (oh - 1) * s + p, (ow - 1) * s + p  # rows/cols some patch covers
        x = x[:, :, :hu, :wu]
        rows = x.unfold(3, p, s).permute(0, 2, 3, 4, 1).reshape(b * hu * ow, p, k)
        cols = x.unfold(2, p, s).permute(0, 2, 3, 4, 1).reshape(b * oh * wu, p, k)
        p_rows, p_cols = self._rnn1_pair(rows, cols)
        # [B, hu, ow, h1] -> windows of P consecutive image rows per patch row.
        p_rows = p_rows.reshape(b, hu, ow, self.hidden1).unfold(1, p, s)  # [B, oh, ow, h1, P]
        p_cols = p_cols.reshape(b, oh, wu, self.hidden1).unfold(2, p, s)  # [B, oh, ow, h1, P]
        n = b * oh * ow
        p_rows = p_rows.permute(0, 1, 2, 4, 3).reshape(n, p, self.hidden1)
        p_cols = p_cols.permute(0, 1, 2, 4, 3).reshape(n, p, self.hidden1)
        out = self._summarise(p_rows, p_cols)
        return out.reshape(b, oh, ow, -1).permute(0, 3, 1, 2)

    def _rnn1_pair(self, rows: Tensor, cols: Tensor) -> tuple[Tensor, Tensor]:
        """RNN1 final states of row and column sequences (one batched call if lengths match)."""
        if rows.shape[1] != cols.shape[1]:
            return self.rnn1(rows), self.rnn1(cols)
        both = self.rnn1(torch.cat([rows, cols], 0))
        return both[: rows.shape[0]], both[rows.shape[0] :]

    def _summarise(self, p_rows: Tensor, p_cols: Tensor) -> Tensor:
        """RNN2 forward and backward over the row and the column summaries.

        Args:
            p_rows: ``[N, P_h, h1]`` RNN1 states of the rows, top to bottom.
            p_cols: ``[N, P_w, h1]`` RNN1 states of the columns, left to right.
        Returns:
            ``[N, 4*h2]``: rows fwd, rows bwd, cols fwd, cols bwd.
        """
        n = p_rows.shape[0]
        if p_rows.shape[1] == p_cols.shape[1]:
            seqs = torch.cat([p_rows, p_rows.flip(1), p_cols, p_cols.flip(1)], 0)
            q = self.rnn2(seqs).reshape(4, n, self.hidden2)
            return q.permute(1, 0, 2).reshape(n, 4 * self.hidden2)
        return torch.cat([self.rnn2(s) for s in (p_rows, p_rows.flip(1), p_cols, p_cols.flip(1))], 1)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, hidden1={self.hidden1}, hidden2={self.hidden2}"


class RNNPoolLayer(Block):
    """RNNPool slid over a feature map.

    Patches of ``patch_size`` are taken with ``stride`` and no padding, giving an
    ``oh x ow`` grid with ``oh = (H - patch)//stride + 1``; each becomes one
    ``4*h2`` vector.  When ``pad_last`` is set (the face models), the map is then
    replicate-padded by one row at the bottom and one column at the right, so a
    120x160 input yields 29x39 patches padded to 30x40 (= H/4 x W/4).

    Args:
        in_channels, hidden1, hidden2: see :class:`RNNPool`.
        patch_size: patch side ``P``.
        stride: patch stride.
        pad_last: replicate-pad one row and one column after pooling.

    Shapes: ``[B, C, H, W] -> [B, 4*h2, oh(+1), ow(+1)]``.
    """

    def __init__(self, in_channels: int, hidden1: int, hidden2: int, patch_size: int = 8, stride: int = 4, pad_last: bool = True) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.stride = stride
        self.pad_last = pad_last
        self.pool = RNNPool(in_channels, hidden1, hidden2)

    @property
    def in_channels(self) -> int:
        return self.pool.in_channels

    @property
    def out_channels(self) -> int:
        return self.pool.out_channels

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Number of computed patches ``(oh, ow)`` for an input of ``height x width``."""
        return (height - self.patch_size) // self.stride + 1, (width - self.patch_size) // self.stride + 1

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size of the layer output (after the replicate pad)."""
        oh, ow = self.grid_size(height, width)
        return (oh + 1, ow + 1) if self.pad_last else (oh, ow)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h < self.patch_size or w < self.patch_size:
            raise ValueError(f"RNNPool needs at least {self.patch_size}x{self.patch_size} input, got {h}x{w}")
        if fused.usable(x, self.pool):  # one native call, the replicate pad included
            p, s = self.patch_size, self.stride
            return fused.rnnpool_map(self.pool, x, (p, p), (s, s), pad=self.pad_last)
        out = self.pool.forward_map(x, self.patch_size, self.stride)
        if self.pad_last:
            out = F.pad(out, (0, 1, 0, 1), mode="replicate")
        return out.contiguous()

    def lower(self, builder, name, x):
        from facedet import graph as g

        cells = (self.pool.rnn1, self.pool.rnn2)
        params = [_cell_params(c) for c in cells] if builder.weights else [None, None]
        y = builder.emit(g.RNNPool(
            f"{name}.pool" if self.pad_last else name, [x], in_channels=self.in_channels, hidden1=self.pool.hidden1,
            hidden2=self.pool.hidden2, patch=self.patch_size, stride=self.stride, rnn1=params[0], rnn2=params[1],
        ))
        if self.pad_last:
            y = builder.emit(g.ReplicatePad(name, [y], bottom=1, right=1))
        return y

    def rnn_matrices(self) -> dict[str, nn.Parameter]:
        return {f"pool.{c}.{m}": getattr(getattr(self.pool, c), m) for c in ("rnn1", "rnn2") for m in ("W", "U")}

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}, stride={self.stride}, pad_last={self.pad_last}"


def _cell_params(cell: FastGRNNCell):
    from facedet.graph import CellParams

    def f32(t):
        return t.detach().to("cpu", torch.float32).numpy().copy()

    return CellParams(f32(cell.W), f32(cell.U), f32(cell.bias_gate), f32(cell.bias_update), float(cell.zeta.detach()), float(cell.nu.detach()))
