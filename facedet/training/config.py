"""The settings of a training run, and their defaults (the one place they are defined).

``facedet train``'s options take their defaults from :class:`TrainConfig`, and
the run folder's ``config.json`` is :meth:`TrainConfig.to_dict`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

from facedet.detector import ARCHS, DEFAULT_ARCH

__all__ = ["DATA_KINDS", "RESUMABLE_OVERRIDES", "TrainConfig", "DEFAULTS"]

DATA_KINDS = ("wider", "scut", "generic")
# Settings that may differ when resuming (they do not change the result).
RESUMABLE_OVERRIDES = ("device", "workers", "threads", "val_workers")


@dataclass
class TrainConfig:
    """Everything that defines a training run (see ``docs/training.md``)."""

    data: str
    root: str
    out: str
    arch: str = DEFAULT_ARCH
    epochs: int = 300
    batch_size: int = 16
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 5.0
    workers: int = 0
    checkpoint_every: int = 1000
    finetune: Optional[str] = None
    sparsify: bool = False
    device: str = "auto"
    seed: int = 0
    max_iters: Optional[int] = None
    limit: Optional[int] = None
    val_limit: Optional[int] = 500
    val_split: float = 0.1
    val_pyramid: bool = True
    input_size: Optional[int] = None
    augment: str = "auto"
    threads: Optional[int] = None
    command: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        d = {"val_pyramid": False, **d}  # runs saved before the option existed validated at one scale
        return cls(**{k: v for k, v in d.items() if k in names})

    def resolved_augment(self) -> str:
        if self.augment != "auto":
            return self.augment
        return "qvga" if ARCHS[self.arch].in_channels == 1 else "vga"

    def resolved_input_size(self) -> int:
        if self.input_size:
            return int(self.input_size)
        return 320 if self.resolved_augment() != "vga" else 640


DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(TrainConfig)}
