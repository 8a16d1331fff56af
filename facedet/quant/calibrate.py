"""Calibration: value ranges of every op output of the float graph over real images.

Images go through exactly :class:`facedet.inference.Detector`'s preprocessing
at every scale of ``facedet detect``'s default image pyramid, so the ranges
cover what the integer program will see.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facedet.quant.quantize import Range

CALIB_METHODS = ("minmax", "percentile")
PERCENTILE = 99.99  # of |values| per tail, for method "percentile"
_SAMPLES_PER_UPDATE = 4096


@dataclass
class RangeObserver:
    """Running min/max (and a value sample for percentiles) of each observed tensor."""

    seed: int = 0
    lo: dict[str, float] = field(default_factory=dict)
    hi: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list[np.ndarray]] = field(default_factory=dict)
    channel_sum: dict[str, np.ndarray] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def update(self, name: str, values: np.ndarray) -> None:
        """Record one tensor ``[B, C, H, W]`` (float)."""
        a = np.asarray(values, np.float32)
        if a.size == 0:
            return
        sums = a.astype(np.float64).sum(axis=(0, 2, 3))
        self.channel_sum[name] = self.channel_sum.get(name, 0.0) + sums
        self.count[name] = self.count.get(name, 0) + a.shape[0] * a.shape[2] * a.shape[3]
        v = a.reshape(-1)
        lo, hi = float(v.min()), float(v.max())
        self.lo[name] = min(self.lo.get(name, lo), lo)
        self.hi[name] = max(self.hi.get(name, hi), hi)
        take = v if v.size <= _SAMPLES_PER_UPDATE else v[self._rng.integers(0, v.size, _SAMPLES_PER_UPDATE)]
        self.samples.setdefault(name, []).append(take.copy())

    def channel_means(self) -> dict[str, np.ndarray]:
        """Mean of every channel of every observed tensor."""
        return {k: v / self.count[k] for k, v in self.channel_sum.items()}

    def ranges(self, method: str = "minmax", full_range: set[str] = frozenset()) -> dict[str, Range]:
        """Each tensor's range: min/max, or with ``percentile`` the 0.01% and
        99.99% points -- except the tensors in ``full_range`` (the program's
        outputs, where a clipped value is a wrong output), which keep min/max."""
        if method not in CALIB_METHODS:
            raise ValueError(f"calibration method must be one of {CALIB_METHODS}")
        out = {}
        for name in self.lo:
            lo, hi = self.lo[name], self.hi[name]
            if method == "percentile" and name not in full_range:
                s = np.concatenate(self.samples[name])
                lo = max(lo, float(np.percentile(s, 100.0 - PERCENTILE)))
                hi = min(hi, float(np.percentile(s, PERCENTILE)))
            out[name] = Range(lo, hi)
        return out


def observe_float(graph, x, observer: RangeObserver) -> None:
    """Run the float graph on one network input ``Tensor[1, C, H, W]``, recording every op output."""
    import torch

    from facedet.graph import run_float

    with torch.inference_mode():
        observer.update(graph.input, x.numpy())
        run_float(graph, x, observe=lambda op, out: observer.update(op.output, out.numpy()))
