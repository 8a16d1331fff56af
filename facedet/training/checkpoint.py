"""Training checkpoints: the full state needed to continue a run exactly.

A checkpoint is a ``torch.save`` file holding only tensors and plain
containers (so it loads with ``torch.load(weights_only=True)``, which never
runs pickled code)::

    {"format": "facedet-train-checkpoint", "version": 1,
     "model": state_dict, "optimizer": optimizer state_dict,
     "iteration": completed optimiser steps, "epoch": current epoch (0-based),
     "batch": batches of that epoch already done, "total_iters", "warmup_iters",
     "best_ap", "best_epoch", "history": [per-epoch dicts],
     "epoch_stats": running sums of the current epoch,
     "rng": {"torch": ByteTensor}, "config": dict of the run's settings}

Files are written to a temporary name in the same folder and renamed over the
target (``os.replace`` is atomic), so killing training at any moment leaves
either the previous checkpoint or the new one, never a half-written file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from facedet.errors import FacedetError
from facedet.fileutil import atomic_path

__all__ = ["FORMAT", "VERSION", "save_checkpoint", "load_checkpoint"]

FORMAT = "facedet-train-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus the format tag) to ``path`` atomically."""
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors on CPU).

    Raises:
        FacedetError: missing, truncated or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise FacedetError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, ...
        text = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise FacedetError(f"{path} is not a readable facedet training checkpoint ({text})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise FacedetError(f"{path} is not a facedet training checkpoint")
    if state.get("version") != VERSION:
        raise FacedetError(f"{path} has checkpoint version {state.get('version')!r}; this facedet reads version {VERSION}")
    return state
