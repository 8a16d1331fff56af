"""Building blocks of the RNNPool-Face models (paper App. F.2; docs/quantization.md).

Every block answers one protocol (:class:`Block`): its output size, its output
channels, and :meth:`Block.lower`, which writes the block as primitive ops into
a :class:`~facedet.detector.graph.Graph` (batch norm folded).  Profiling,
quantization and firmware export walk that graph, never ``forward``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from facedet import graph as g
from facedet.graph import Block, conv_output_size

__all__ = ["Block", "ConvBNAct", "InvertedResidual", "L2Norm", "DetectionHead", "conv_output_size", "fold_conv_bn"]


def _np(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[np.ndarray, np.ndarray]:
    """Fold an (eval-mode) batch norm into the conv: ``(weight OHWI, bias)`` float32.

    ``w' = w * gamma / sqrt(var + eps)``, ``b' = beta + (b - mean) * gamma / sqrt(var + eps)``,
    computed in float64 and rounded once.
    """
    w = _np(conv.weight)
    b = _np(conv.bias) if conv.bias is not None else np.zeros(w.shape[0])
    if bn is not None:
        k = _np(bn.weight) / np.sqrt(_np(bn.running_var) + bn.eps)
        w = w * k[:, None, None, None]
        b = _np(bn.bias) + (b - _np(bn.running_mean)) * k
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1), np.float32), b.astype(np.float32)


def lower_conv(builder: g.GraphBuilder, name: str, x: str, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, relu6: bool) -> str:
    """Emit one :class:`~facedet.detector.graph.Conv2d` for ``conv`` (+ ``bn``, + ReLU6)."""
    weight, bias = fold_conv_bn(conv, bn) if builder.weights else (None, None)
    return builder.emit(g.Conv2d(
        name, [x], in_channels=conv.in_channels, out_channels=conv.out_channels, kernel=conv.kernel_size[0],
        stride=conv.stride[0], padding=conv.padding[0], groups=conv.groups, relu6=relu6, weight=weight, bias=bias,
    ))


class ConvBNAct(Block):
    """Conv2d (no bias) -> BatchNorm2d (eps 1e-5) -> ReLU6 (or no activation).

    ``padding = (kernel - 1) // 2``.  Shapes: ``[B, cin, H, W] -> [B, cout, H', W']``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1, activation: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-5)
        self.act = nn.ReLU6(inplace=True) if activation else nn.Identity()

    @property
    def in_channels(self) -> int:
        return self.conv.in_channels

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        k, s, p = self.conv.kernel_size[0], self.conv.stride[0], self.conv.padding[0]
        return conv_output_size(height, k, s, p), conv_output_size(width, k, s, p)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))

    def lower(self, builder, name, x):
        return lower_conv(builder, name, x, self.conv, self.bn, isinstance(self.act, nn.ReLU6))


class InvertedResidual(Block):
    """MobileNetV2 bottleneck ("MBConv").

    ``expand`` (1x1 ConvBNAct to ``round(cin*t)``, absent when ``t == 1``) ->
    ``depthwise`` (3x3 ConvBNAct, stride ``s``) -> ``project`` (1x1 conv + BN, no
    activation); the input is added back iff ``s == 1`` and ``cin == cout``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.expand = ConvBNAct(in_channels, hidden, 1) if expand_ratio != 1 else None
        self.depthwise = ConvBNAct(hidden, hidden, 3, stride, groups=hidden)
        self.project = ConvBNAct(hidden, out_channels, 1, activation=False)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.hidden_channels = hidden

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return self.depthwise.output_size(height, width)

    def forward(self, x: Tensor) -> Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.depthwise(y))
        return x + y if self.use_residual else y

    def lower(self, builder, name, x):
        y = x if self.expand is None else self.expand.lower(builder, f"{name}.expand", x)
        y = self.depthwise.lower(builder, f"{name}.depthwise", y)
        y = self.project.lower(builder, f"{name}.project", y)
        if self.use_residual:
            y = builder.emit(g.Add(f"{name}.add", [x, y]))
        return y


class L2Norm(Block):
    """``y = w * x / (||x||_2 over channels + 1e-10)`` with learnable ``w`` (init ``gamma``)."""

    def __init__(self, channels: int, gamma: float) -> None:
        super().__init__()
        self.gamma = gamma
        self.weight = nn.Parameter(torch.full((channels,), float(gamma)))
        self.eps = 1e-10

    def forward(self, x: Tensor) -> Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return x / norm * self.weight.view(1, -1, 1, 1)

    def output_size(self, height, width):
        return height, width

    def lower(self, builder, name, x):
        weight = _np(self.weight).astype(np.float32) if builder.weights else None
        return builder.emit(g.L2Norm(name, [x], weight=weight, eps=self.eps))

    def extra_repr(self) -> str:
        return f"channels={self.weight.numel()}, gamma={self.gamma}"


class DetectionHead(Block):
    """One detection source: optional L2Norm, then a confidence and a box branch.

    Args:
        in_channels: channels of the source map.
        kernel_size: head conv kernel (3, 5 or 1); padding keeps the size.
        l2norm_gamma: L2Norm initial scale, or None for no L2Norm.
        maxout: S3FD max-out background: the conf conv has 4 outputs, the
            background logit is the max of channels 0..2, the face logit is 3.
        tower_channels: when set, each branch is first a 3x3 stride-2
            ConvBNAct to this many channels (the Quant model's first head).

    Shapes: ``[B, C, H, W] -> conf [B, H'*W', 2], loc [B, H'*W', 4]`` with the
    cells in row-major (HWC) order.
    """

    def __init__(self, in_channels: int, kernel_size: int = 3, l2norm_gamma: float | None = None, maxout: bool = False, tower_channels: int | None = None) -> None:
        super().__init__()
        self.norm = L2Norm(in_channels, l2norm_gamma) if l2norm_gamma is not None else None
        self.maxout = maxout
        conf_out = 4 if maxout else 2
        pad = (kernel_size - 1) // 2
        if tower_channels:
            self.conf = nn.Sequential(ConvBNAct(in_channels, tower_channels, 3, 2), nn.Conv2d(tower_channels, conf_out, kernel_size, padding=pad))
            self.loc = nn.Sequential(ConvBNAct(in_channels, tower_channels, 3, 2), nn.Conv2d(tower_channels, 4, kernel_size, padding=pad))
        else:
            self.conf = nn.Conv2d(in_channels, conf_out, kernel_size, padding=pad)
            self.loc = nn.Conv2d(in_channels, 4, kernel_size, padding=pad)
        self.tower = bool(tower_channels)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if self.tower:
            return self.conf[0].output_size(height, width)
        return height, width

    @property
    def out_channels(self) -> int:
        return 6

    def lower(self, builder, name, x):
        """Emit the head; returns the conf tensor's name and records the head's outputs."""
        if self.norm is not None:
            x = self.norm.lower(builder, f"{name}.norm", x)
        outs = []
        for part, branch in (("conf", self.conf), ("loc", self.loc)):
            if self.tower:
                y = branch[0].lower(builder, f"{name}.{part}_tower", x)
                y = lower_conv(builder, f"{name}.{part}", y, branch[1], None, False)
            else:
                y = lower_conv(builder, f"{name}.{part}", x, branch, None, False)
            outs.append(y)
        conf, loc = outs
        if self.maxout:
            conf = builder.emit(g.MaxOut(f"{name}.maxout", [conf]))
        builder.graph.heads.append(g.HeadOutput(conf, loc))
        return conf

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.norm is not None:
            x = self.norm(x)
        conf = self.conf(x)
        loc = self.loc(x)
        if self.maxout:
            background = conf[:, :3].amax(dim=1, keepdim=True)
            conf = torch.cat([background, conf[:, 3:4]], dim=1)
        b = x.shape[0]
        conf = conf.permute(0, 2, 3, 1).reshape(b, -1, 2)
        loc = loc.permute(0, 2, 3, 1).reshape(b, -1, 4)
        return conf, loc
