"""The training loop: data, SGD + warm-up/cosine, checkpoints, resume, validation, DDP.

One function, :func:`train`, driven by a :class:`TrainConfig`.  It runs the
same way on one CPU, one GPU, or several processes launched by ``torchrun``
(``WORLD_SIZE > 1`` in the environment, set by torchrun itself): then it
initialises a process group (NCCL on CUDA, Gloo on CPU), wraps the model in
DistributedDataParallel, gives every process its share of each epoch's batches,
and lets only rank 0 write files and print.

Run folder (``--out``)::

    config.json        the run's settings
    last.pt            latest training checkpoint (every N iterations + epoch end)
    best.pt            checkpoint of the best validation AP@0.5 so far
    best.safetensors   that model in the shipped weights format (what ships)
    history.json       one entry per epoch (loss, time, images/s, AP)
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Optional

import numpy as np
import torch
import torch.distributed as dist

from facedet.cli_common import atomic_write_text
from facedet.data.dataset import TrainDataset, check_images, check_images_exist, epoch_batches, make_train_loader
from facedet.data.types import ImageAnnotation
from facedet.detector import ARCHS, build_model
from facedet.errors import FacedetError
from facedet.training.checkpoint import load_checkpoint, save_checkpoint
from facedet.training.config import DATA_KINDS, RESUMABLE_OVERRIDES, TrainConfig
from facedet.training.loss import multibox_loss
from facedet.training.match import match_batch
from facedet.training.schedule import lr_at, warmup_iterations
from facedet.training.sparsify import rnnpool_density, sparsify_rnnpool_
from facedet.training.validate import validate_ap

__all__ = ["DATA_KINDS", "TrainConfig", "TrainResult", "load_data", "train", "RUN_FILES"]

RUN_FILES = ("config.json", "last.pt", "best.pt", "best.safetensors", "history.json")
# What a run has that is worth keeping: a folder holding one of these is a run that
# only --resume or --force may touch.  config.json alone is what a run leaves when it
# stops before its first checkpoint; it is replaced without --force.
RUN_STATE_FILES = ("last.pt", "best.pt", "best.safetensors")


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank)."""

    out: Path
    iterations: int
    epochs_done: int
    best_ap: float
    best_epoch: int
    history: list = field(default_factory=list)
    is_main: bool = True  # False on the non-zero ranks of a torchrun job


# --------------------------------------------------------------------------- data


def _holdout(records: list[ImageAnnotation], fraction: float, seed: int) -> tuple[list[ImageAnnotation], list[ImageAnnotation]]:
    if fraction <= 0 or len(records) < 2:
        return records, []
    n_val = min(max(1, int(round(len(records) * fraction))), len(records) - 1)
    perm = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xDA7A]).permutation(len(records))
    val_idx = set(perm[:n_val].tolist())
    return [r for i, r in enumerate(records) if i not in val_idx], [r for i, r in enumerate(records) if i in val_idx]


def load_data(kind: str, root: str | Path, val_split: float = 0.1, seed: int = 0) -> tuple[list[ImageAnnotation], list[ImageAnnotation]]:
    """Training and validation annotations of a data set (``file`` relative to ``root``).

    * ``wider``: ``train`` split, validated on ``val``;
    * ``scut``: ``ImageSets/Main/train.txt`` + ``val.txt`` when both exist,
      else ``trainval.txt`` with a ``val_split`` hold-out (``test`` is never used);
    * ``generic``: ``train.json``, validated on ``val.json`` when present, else
      a ``val_split`` hold-out of ``train.json``.
    """
    root = Path(root)
    if kind not in DATA_KINDS:
        raise FacedetError(f"unknown data set kind {kind!r}; choose one of: {', '.join(DATA_KINDS)}")
    if not root.exists():
        raise FacedetError(f"data root {root} does not exist")
    if not root.is_dir():
        raise FacedetError(f"data root {root} is not a folder")
    if kind == "wider":
        from facedet.data.wider import load_wider

        return load_wider(root, "train"), load_wider(root, "val")
    if kind == "scut":
        from facedet.data.scut import load_scut

        main = root / "ImageSets" / "Main"
        if (main / "train.txt").is_file() and (main / "val.txt").is_file():
            return load_scut(root, "train"), load_scut(root, "val")
        return _holdout(load_scut(root, "trainval"), val_split, seed)
    from facedet.data.generic import read_generic

    train_json = root / "train.json"
    if not train_json.is_file():
        raise FacedetError(f"{train_json} not found (a generic data set root holds train.json and optionally val.json)")
    train_records = read_generic(train_json)
    if (root / "val.json").is_file():
        return train_records, read_generic(root / "val.json")
    return _holdout(train_records, val_split, seed)


def _spread(records: list, limit: Optional[int]) -> list:
    """At most ``limit`` records, evenly spaced (deterministic)."""
    if limit is None or limit <= 0 or len(records) <= limit:
        return records
    idx = np.linspace(0, len(records) - 1, limit).round().astype(int)
    return [records[i] for i in idx]


# --------------------------------------------------------------------------- distributed


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_opt: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_opt.startswith("cuda") or (device_opt == "auto" and torch.cuda.is_available())
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
        return _Dist(dist.get_rank(), dist.get_world_size(), local_rank, True)
    return _Dist(dist.get_rank(), dist.get_world_size(), local_rank, False)


def _device(opt: str, d: _Dist) -> torch.device:
    if opt == "auto":
        return torch.device(f"cuda:{d.local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if opt == "cuda" and d.world > 1:
        return torch.device(f"cuda:{d.local_rank}")
    try:
        dev = torch.device(opt)
    except RuntimeError:
        raise FacedetError(f"invalid --device {opt!r} (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FacedetError("--device cuda requested but no CUDA GPU is available")
    return dev


# --------------------------------------------------------------------------- helpers


def _log(d: _Dist, message: str) -> None:
    if d.main:
        from tqdm import tqdm

        tqdm.write(message, file=sys.stderr)


def _prepare_run_dir(cfg: TrainConfig, resume: bool, force: bool) -> tuple[Path, bool]:
    """The run folder, and whether it holds leftovers of a run that never checkpointed."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise FacedetError(f"{out} exists and is not a folder")
    existing = [name for name in RUN_FILES if (out / name).exists()]
    # Only the config.json of a facedet run, nothing else: the run stopped before its first checkpoint.
    leftovers = existing == ["config.json"] and _is_run_config(out / "config.json")
    if existing and not leftovers and not resume and not force:
        state = [name for name in RUN_STATE_FILES if name in existing] or existing
        raise FacedetError(f"{out} already holds a training run ({state[0]}); use --resume to continue it or --force to start over")
    return out, leftovers


def _is_run_config(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and {"data", "root", "out", "arch", "epochs", "seed"} <= set(doc)


def _same_setting(key: str, a: Any, b: Any) -> bool:
    if key in ("root", "finetune") and a and b:
        return Path(a).resolve() == Path(b).resolve()
    return a == b or (not a and not b and key in ("data", "root", "finetune"))


def _check_resume_settings(cfg: TrainConfig, saved: TrainConfig, given: Collection[str]) -> None:
    """Refuse a --resume whose explicitly given settings differ from the run's.

    A resumed run continues exactly where it stopped, with its saved settings
    (the schedule spans the saved --epochs; the optimiser state was built with
    the saved --lr).  Silently ignoring a changed value would train something
    other than what the command line says, so it is an error instead.
    """
    changed = [
        f"--{key.replace('_', '-')} {getattr(cfg, key)} (the run has {getattr(saved, key)})"
        for key in sorted(given)
        if key not in RESUMABLE_OVERRIDES and key not in ("out", "command") and hasattr(saved, key) and not _same_setting(key, getattr(cfg, key), getattr(saved, key))
    ]
    if changed:
        raise FacedetError(
            f"--resume continues {cfg.out} with its saved settings, but {', '.join(changed)} "
            f"differ{'s' if len(changed) == 1 else ''}; drop {'it' if len(changed) == 1 else 'them'} to resume, "
            "or start a new run (--force replaces this one)"
        )


def _load_finetune_weights(model, path: str, arch: str) -> str:
    """Load model weights from a ``.safetensors`` weights file or a training checkpoint."""
    p = Path(path)
    if not p.is_file():
        raise FacedetError(f"--finetune: {p} not found")
    if p.suffix == ".safetensors":
        from facedet.weights import load_weights

        src, _ = load_weights(p, arch)
        model.load_state_dict(src.state_dict())
        return "weights"
    state = load_checkpoint(p)
    src_arch = state.get("config", {}).get("arch")
    if src_arch != arch:
        raise FacedetError(f"--finetune: {p} was trained for '{src_arch}', but --arch is '{arch}'")
    model.load_state_dict(state["model"])
    return "checkpoint"


def _to_float(v) -> float:
    return float(v) if v is not None else float("nan")


# --------------------------------------------------------------------------- train


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    force: bool = False,
    on_step: Callable[[int, float], None] | None = None,
    show_progress: bool | None = None,
    given: Collection[str] = (),
) -> TrainResult:
    """Train (or continue training) a detector; see the module docstring.

    Args:
        cfg: the run's settings.  With ``resume`` the settings saved in
            ``<out>/last.pt`` are used instead, except ``device``, ``workers``
            and ``threads``.
        resume: continue from ``<out>/last.pt``.
        force: start over in a folder that already holds a run.
        on_step: called after every optimiser step with ``(iteration, loss)``
            (after any checkpoint of that step is written).
        show_progress: progress bar on stderr (default: when stderr is a TTY).
        given: names of the ``cfg`` fields the user set explicitly (the CLI
            passes the options on its command line).  With ``resume``, one whose
            value differs from the saved run's is an error, not silently ignored.
    """
    if cfg.arch not in ARCHS:
        raise FacedetError(f"unknown architecture {cfg.arch!r}; choose one of: {', '.join(ARCHS)}")
    out, leftovers = _prepare_run_dir(cfg, resume, force)
    state: dict[str, Any] | None = None
    if resume:
        last = out / "last.pt"
        if not last.is_file():
            raise FacedetError(f"nothing to resume: {last} not found (the run stopped before its first checkpoint; start it again without --resume)")
        state = load_checkpoint(last)
        saved = TrainConfig.from_dict(state["config"])
        _check_resume_settings(cfg, saved, given)
        for key in RESUMABLE_OVERRIDES:
            if hasattr(cfg, key):
                setattr(saved, key, getattr(cfg, key))
        saved.out = str(out)
        cfg = saved
    _validate_config(cfg)

    d = _init_distributed(cfg.device)
    if leftovers and not resume and not force:
        _log(d, f"{out} holds only the settings of a run that stopped before its first checkpoint; starting over there")
    try:
        return _train(cfg, d, out, state, (force or leftovers) and not resume, on_step, show_progress)
    finally:
        if d.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def _validate_config(cfg: TrainConfig) -> None:
    if cfg.epochs < 1:
        raise FacedetError("--epochs must be at least 1")
    if cfg.batch_size < 1:
        raise FacedetError("--batch-size must be at least 1")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise FacedetError("--lr must be a positive number")
    if cfg.checkpoint_every < 1:
        raise FacedetError("--checkpoint-every must be at least 1")
    if not (0.0 <= cfg.val_split < 1.0):
        raise FacedetError("--val-split must be in [0, 1)")
    if cfg.augment not in ("auto", "qvga", "vga", "none"):
        raise FacedetError(f"--augment must be auto, qvga, vga or none, got {cfg.augment!r}")
    if cfg.max_iters is not None and cfg.max_iters < 1:
        raise FacedetError("--max-iters must be at least 1")
    if cfg.sparsify and cfg.finetune is None:
        from facedet.cli_common import warn

        warn("--sparsify without --finetune: the reference thresholds the RNN weights only while fine-tuning")


def _train(cfg: TrainConfig, d: _Dist, out: Path, state, fresh: bool, on_step, show_progress) -> TrainResult:
    device = _device(cfg.device, d)
    threads = cfg.threads or max(1, (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", d.world))))
    torch.set_num_threads(threads)

    # ---- data
    train_records, val_records = load_data(cfg.data, cfg.root, cfg.val_split, cfg.seed)
    n_listed = len(train_records)
    # Images without a (non-ignored) face are left out, and the log says how many: the
    # MultiBox loss mines 3 negatives per positive *per image* (training/loss.py), so
    # such an image would add no loss term.  Validation keeps them (false positives count).
    train_records = [r for r in train_records if (~r.ignore).any()]
    n_skipped = n_listed - len(train_records)
    if cfg.limit:
        train_records = train_records[: cfg.limit]
    val_records = _spread(val_records, cfg.val_limit)
    if not train_records:
        raise FacedetError(f"the training set under {cfg.root} has no image with a face")
    # Decode every image once before the first step: a missing, truncated or
    # corrupt file stops the run here, not in the middle of an epoch.
    check_images_exist(train_records, cfg.root, "training set")
    check_images_exist(val_records, cfg.root, "validation set")
    check_images(train_records, cfg.root, "training set", show_progress=d.main)
    check_images(val_records, cfg.root, "validation set", show_progress=d.main)
    batch_size = cfg.batch_size
    if len(train_records) < batch_size * d.world:
        batch_size = max(1, len(train_records) // d.world)
        _log(d, f"warning: only {len(train_records)} training images; batch size lowered to {batch_size}")
    size = cfg.resolved_input_size()
    augment = cfg.resolved_augment()

    # ---- model and optimiser
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch)
    if not model.fits(size, size):
        raise FacedetError(f"--input-size {size} is too small for '{cfg.arch}' (minimum {model.min_input_side()})")
    spec = model.spec
    dataset = TrainDataset(train_records, cfg.root, augment, size, spec.in_channels, spec.mean_bgr, cfg.seed)
    finetune_kind = None
    if cfg.finetune and state is None:
        finetune_kind = _load_finetune_weights(model, cfg.finetune, cfg.arch)
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    priors = model.priors(size, size).to(device)

    iters_per_epoch = len(epoch_batches(len(dataset), batch_size, cfg.seed, 0, d.rank, d.world))
    total_iters = cfg.epochs * iters_per_epoch
    if cfg.max_iters:
        total_iters = min(total_iters, cfg.max_iters)
    warmup = warmup_iterations(cfg.warmup_epochs, iters_per_epoch, total_iters)

    iteration, epoch, batch_in_epoch = 0, 0, 0
    best_ap, best_epoch = float("-inf"), -1
    history: list[dict] = []
    epoch_stats = {"loss": 0.0, "loss_l": 0.0, "loss_c": 0.0, "steps": 0, "images": 0, "seconds": 0.0}
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        iteration, epoch, batch_in_epoch = int(state["iteration"]), int(state["epoch"]), int(state["batch"])
        best_ap, best_epoch = float(state["best_ap"]), int(state["best_epoch"])
        history = list(state.get("history", []))
        epoch_stats = dict(state.get("epoch_stats", epoch_stats))
        torch.set_rng_state(state["rng"]["torch"])
        if int(state.get("total_iters", total_iters)) != total_iters:
            raise FacedetError("the data set changed since this run was started (different number of iterations); start a new run")
        _log(d, f"resuming {out} at epoch {epoch + 1}, iteration {iteration}/{total_iters}")

    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        if fresh:
            for name in RUN_FILES:
                (out / name).unlink(missing_ok=True)
        atomic_write_text(out / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
        if state is None:
            _log(
                d,
                f"training {cfg.arch} on {len(train_records)} images ({n_skipped} without faces skipped), "
                f"{len(val_records)} validation images; {size}x{size} {augment} augmentation; "
                f"{iters_per_epoch} iterations/epoch x {cfg.epochs} epochs = {total_iters} iterations "
                f"(batch {batch_size}{f' x {d.world} processes' if d.world > 1 else ''}), device {device}, {threads} threads"
                + (f"; fine-tuning from {cfg.finetune}" if finetune_kind else ""),
            )

    net = model
    if d.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def snapshot() -> dict[str, Any]:
        return {
            "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "iteration": iteration,
            "epoch": epoch,
            "batch": batch_in_epoch,
            "total_iters": total_iters,
            "warmup_iters": warmup,
            "best_ap": best_ap,
            "best_epoch": best_epoch,
            "history": history,
            "epoch_stats": dict(epoch_stats),
            "rng": {"torch": torch.get_rng_state()},
            "config": cfg.to_dict(),
        }

    if show_progress is None:
        show_progress = sys.stderr.isatty()
    from tqdm import tqdm

    net.train()
    while iteration < total_iters:
        batches = epoch_batches(len(dataset), batch_size, cfg.seed, epoch, d.rank, d.world)[batch_in_epoch:]
        remaining = min(len(batches), total_iters - iteration)
        batches = batches[:remaining]
        loader = make_train_loader(dataset, batches, cfg.workers, cfg.seed * 1000003 + epoch)
        bar = tqdm(total=len(batches), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="it", file=sys.stderr, dynamic_ncols=True, leave=False, disable=not (show_progress and d.main))
        t0 = time.perf_counter()
        for x, boxes, ignore in loader:
            lr = lr_at(iteration, cfg.lr, warmup, total_iters)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = x.to(device, non_blocking=True)
            labels, loc_t = match_batch([b.to(device) for b in boxes], [g.to(device) for g in ignore], priors, spec.variances)
            conf, loc = net(x)
            loss_l, loss_c, _ = multibox_loss(conf, loc, labels, loc_t)
            loss = loss_l + loss_c
            if not torch.isfinite(loss):
                raise FacedetError(f"the loss became {float(loss)} at iteration {iteration + 1}; try a lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if cfg.sparsify:
                sparsify_rnnpool_(model)
            iteration += 1
            batch_in_epoch += 1
            lv = float(loss.detach())
            epoch_stats["loss"] += lv
            epoch_stats["loss_l"] += float(loss_l.detach())
            epoch_stats["loss_c"] += float(loss_c.detach())
            epoch_stats["steps"] += 1
            epoch_stats["images"] += int(x.shape[0]) * d.world
            bar.set_postfix(loss=f"{lv:.3f}", lr=f"{lr:.2e}", refresh=False)
            bar.update(1)
            if iteration % cfg.checkpoint_every == 0 and d.main:
                epoch_stats["seconds"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                save_checkpoint(out / "last.pt", snapshot())
            if on_step is not None:
                on_step(iteration, lv)
        bar.close()
        epoch_stats["seconds"] += time.perf_counter() - t0

        # ---- end of an epoch (or of the run)
        epoch_done = batch_in_epoch >= iters_per_epoch
        final = iteration >= total_iters
        steps = max(epoch_stats["steps"], 1)
        secs = epoch_stats["seconds"]
        entry = {
            "epoch": epoch + 1,
            "iteration": iteration,
            "loss": epoch_stats["loss"] / steps,
            "loss_l": epoch_stats["loss_l"] / steps,
            "loss_c": epoch_stats["loss_c"] / steps,
            "lr": lr_at(max(iteration - 1, 0), cfg.lr, warmup, total_iters),
            "seconds": secs,
            "images": epoch_stats["images"],
            "images_per_s": epoch_stats["images"] / secs if secs > 0 else float("nan"),
            "val_ap50": None,
            "complete": epoch_done,
        }
        improved = False
        if d.main:
            if val_records:
                tv = time.perf_counter()
                ap = validate_ap(model, val_records, cfg.root, device, cfg.workers, pyramid=cfg.val_pyramid)
                entry["val_ap50"] = None if math.isnan(ap) else ap
                entry["val_seconds"] = time.perf_counter() - tv
                score = -1.0 if math.isnan(ap) else ap
            else:
                score = float(epoch)  # no validation: the latest model is the best
            if score > best_ap:
                best_ap, best_epoch, improved = score, epoch + 1, True
        if cfg.sparsify:
            entry["rnn_density"] = rnnpool_density(model)
        history.append(entry)
        epoch_stats = {"loss": 0.0, "loss_l": 0.0, "loss_c": 0.0, "steps": 0, "images": 0, "seconds": 0.0}
        if epoch_done:
            epoch, batch_in_epoch = epoch + 1, 0
        if d.main:
            if improved:
                save_checkpoint(out / "best.pt", snapshot())
                _export_best(model, out, cfg, entry, iteration)
            save_checkpoint(out / "last.pt", snapshot())
            atomic_write_text(out / "history.json", json.dumps(history, indent=2) + "\n")
            ap_text = f"val AP@0.5 {entry['val_ap50']:.4f} (best {best_ap:.4f} @ epoch {best_epoch})" if entry["val_ap50"] is not None else "no validation"
            _log(
                d,
                f"epoch {entry['epoch']}/{cfg.epochs}: loss {entry['loss']:.4f} (loc {entry['loss_l']:.4f}, conf {entry['loss_c']:.4f}), "
                f"lr {entry['lr']:.2e}, {entry['images']} images in {secs:.1f} s ({entry['images_per_s']:.1f} img/s), {ap_text}",
            )
        if d.world > 1:
            dist.barrier()
        if final:
            break

    return TrainResult(out, iteration, epoch, best_ap, best_epoch, history, d.main)


def _export_best(model, out: Path, cfg: TrainConfig, entry: dict, iteration: int) -> None:
    from facedet.weights import save_weights

    summary = {
        "data": cfg.data,
        "root": str(cfg.root),
        "epoch": entry["epoch"],
        "epochs": cfg.epochs,
        "iterations": iteration,
        "val_ap50": entry["val_ap50"],
        "train_loss": entry["loss"],
        "input_size": cfg.resolved_input_size(),
        "augment": cfg.resolved_augment(),
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "seed": cfg.seed,
        "finetune": cfg.finetune,
        "sparsify": cfg.sparsify,
        "command": cfg.command,
    }
    save_weights(out / "best.safetensors", model, summary)
