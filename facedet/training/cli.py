"""``facedet train``: typed options over :func:`facedet.training.trainer.train`.

Registered by the main CLI as ``app.command("train")(train_command)``.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from facedet.cli_common import force_option, handle_errors
from facedet.detector import ARCHS
from facedet.errors import UsageError
from facedet.training.config import DEFAULTS

__all__ = ["train_command"]


D = DEFAULTS  # every default comes from TrainConfig


def _given(ctx: typer.Context) -> set[str]:
    """The settings the user typed (or set through the environment), not defaults."""
    out = set()
    for name in ctx.params:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT"):
            out.add(name)
    return out


@handle_errors
def train_command(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: checkpoints, history, best.safetensors.", metavar="RUN_DIR"),
    data: Optional[str] = typer.Option(None, "--data", help="Data set kind: wider, scut or generic (see docs/training.md). Required unless --resume."),
    root: Optional[Path] = typer.Option(None, "--root", help="Data set root folder. Required unless --resume.", metavar="DIR"),
    arch: str = typer.Option(D["arch"], "--arch", help="Architecture: " + ", ".join(ARCHS) + "."),
    epochs: int = typer.Option(D["epochs"], "--epochs", min=1, help="Training epochs (the schedule spans them)."),
    batch_size: int = typer.Option(D["batch_size"], "--batch-size", "-b", min=1, help="Images per optimiser step (per process under torchrun)."),
    lr: float = typer.Option(D["lr"], "--lr", help=f"Base learning rate (SGD, momentum {D['momentum']:g}, weight decay {D['weight_decay']:g})."),
    warmup_epochs: float = typer.Option(D["warmup_epochs"], "--warmup-epochs", min=0.0, help="Linear warm-up length in epochs (at most 10% of the run), then cosine decay."),
    workers: int = typer.Option(D["workers"], "--workers", "-j", min=0, help="Data-loading worker processes (0 = load in the training process)."),
    checkpoint_every: int = typer.Option(D["checkpoint_every"], "--checkpoint-every", min=1, help="Write RUN_DIR/last.pt every N iterations (and at every epoch end).", metavar="N"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in RUN_DIR from RUN_DIR/last.pt, exactly where it stopped, with its saved settings (--device, --workers and --threads may change; any other option given must equal the run's)."),
    finetune: Optional[Path] = typer.Option(D["finetune"], "--finetune", help="Start from these weights (.safetensors or a training checkpoint .pt), with a fresh schedule (e.g. SCUT-HEAD after WIDER).", metavar="CKPT"),
    sparsify: bool = typer.Option(D["sparsify"], "--sparsify/--no-sparsify", help="Hard-threshold the RNNPool matrices after every step (M4 SCUT fine-tune recipe)."),
    device: str = typer.Option(D["device"], "--device", help="auto, cpu, cuda or cuda:N."),
    seed: int = typer.Option(D["seed"], "--seed", help="Seed for initialisation, sampling and augmentation."),
    max_iters: Optional[int] = typer.Option(D["max_iters"], "--max-iters", min=1, help="Stop after this many iterations (the schedule is fitted to them); for quick runs."),
    limit: Optional[int] = typer.Option(D["limit"], "--limit", min=1, help="Use only the first N training images; for quick runs.", metavar="N"),
    val_limit: int = typer.Option(D["val_limit"], "--val-limit", min=0, help="Validate on at most N evenly spaced validation images (0 = all).", metavar="N"),
    val_pyramid: bool = typer.Option(D["val_pyramid"], "--val-pyramid/--val-single-scale", help="Validate with facedet detect's image pyramid (default) or at the single area-preserving scale."),
    val_split: float = typer.Option(D["val_split"], "--val-split", help="Fraction of the training images held out for validation when the data set has no validation split (0 = no validation)."),
    input_size: Optional[int] = typer.Option(D["input_size"], "--input-size", min=16, help="Square training crop side in pixels (default 320 for monochrome models, 640 for RGB)."),
    augment: str = typer.Option(D["augment"], "--augment", help="Augmentation: auto (qvga for monochrome models, vga for RGB), qvga, vga or none."),
    threads: Optional[int] = typer.Option(D["threads"], "--threads", min=1, help="CPU threads for torch (default: all cores, divided among torchrun processes)."),
    force: bool = force_option("Start over in a RUN_DIR that already holds a run (its files are replaced)."),
) -> None:
    """Train a face detector (SGD, warm-up + cosine, best checkpoint by validation AP@0.5).

    Images without a face are left out of training (the log says how many; see docs/training.md).
    Every image is decoded once before the first step, so a corrupt file stops the run up front.
    Multi-GPU: torchrun --nproc_per_node=N -m facedet train ... (the same command runs on one CPU).
    """
    from facedet.training.trainer import DATA_KINDS, TrainConfig, train

    if arch not in ARCHS:
        raise UsageError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHS)}")
    if not resume:
        if data is None or root is None:
            raise UsageError("--data and --root are required (unless --resume)")
        if data not in DATA_KINDS:
            raise UsageError(f"unknown --data {data!r}; choose one of: {', '.join(DATA_KINDS)}")
    if resume and finetune is not None:
        raise UsageError("--resume and --finetune cannot be combined (--resume continues a run; --finetune starts a new one)")
    cfg = TrainConfig(
        data=data or "",
        root=str(root or ""),
        out=str(out),
        arch=arch,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        warmup_epochs=warmup_epochs,
        workers=workers,
        checkpoint_every=checkpoint_every,
        finetune=str(finetune) if finetune is not None else None,
        sparsify=sparsify,
        device=device,
        seed=seed,
        max_iters=max_iters,
        limit=limit,
        val_limit=val_limit or None,
        val_split=val_split,
        val_pyramid=val_pyramid,
        input_size=input_size,
        augment=augment,
        threads=threads,
        command="facedet " + shlex.join(sys.argv[1:]),
    )
    result = train(cfg, resume=resume, force=force, given=_given(ctx))
    if not result.is_main:
        return
    best = f"best validation AP@0.5 {result.best_ap:.4f} (epoch {result.best_epoch})" if any(h.get("val_ap50") is not None for h in result.history) else "no validation"
    typer.echo(f"trained {result.iterations} iterations; {best}; weights: {Path(result.out) / 'best.safetensors'}")
