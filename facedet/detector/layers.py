"""Building blocks of the RNNPool-Face models (reference notes §2.1).

Each block knows its own output size (``output_size(h, w)``) so that head map
sizes, priors and memory profiles are computed without running the network.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


class ConvBNAct(nn.Module):
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


class InvertedResidual(nn.Module):
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


class L2Norm(nn.Module):
    """``y = w * x / (||x||_2 over channels + 1e-10)`` with learnable ``w`` (init ``gamma``)."""

    def __init__(self, channels: int, gamma: float) -> None:
        super().__init__()
        self.gamma = gamma
        self.weight = nn.Parameter(torch.full((channels,), float(gamma)))
        self.eps = 1e-10

    def forward(self, x: Tensor) -> Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return x / norm * self.weight.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"channels={self.weight.numel()}, gamma={self.gamma}"


class DetectionHead(nn.Module):
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
