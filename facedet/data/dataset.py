"""Torch datasets and loaders for training and validation.

Sampling is reproducible by construction: the order of an epoch is a
permutation drawn from ``(seed, epoch)``, and the augmentation of one sample
draws from a generator seeded by ``(seed, epoch, index)``.  A loader can
therefore start at any batch of any epoch and produce exactly what an
uninterrupted run would have produced there -- which is how ``--resume``
continues bit-exactly, with or without worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from facedet.data.augment import augment_qvga, augment_vga, no_augment
from facedet.data.types import ImageAnnotation
from facedet.errors import FacedetError
from facedet.imageio import read_image
from facedet.preprocess import network_scale, normalize, resize

__all__ = [
    "AUGMENTATIONS",
    "load_image",
    "check_images_exist",
    "check_images",
    "TrainDataset",
    "ValDataset",
    "collate_train",
    "epoch_batches",
    "make_train_loader",
    "make_val_loader",
]

AUGMENTATIONS = ("qvga", "vga", "none")


def load_image(path: str | Path) -> np.ndarray:
    """Read an image as ``uint8[H, W, 3]`` BGR, upright (:func:`facedet.imageio.read_image`), or raise a one-line error."""
    return read_image(path)


def check_images_exist(records: Sequence[ImageAnnotation], root: str | Path, what: str = "data set") -> None:
    """Fail early (one line) when images listed in the annotations are missing."""
    root = Path(root)
    missing = [r.file for r in records if not (root / r.file).is_file()]
    if missing:
        raise FacedetError(f"{len(missing)} of {len(records)} images of the {what} are missing under {root}, e.g. {missing[0]}")


def check_images(records: Sequence[ImageAnnotation], root: str | Path, what: str = "data set", show_progress: bool = True, threads: int | None = None) -> None:
    """Decode every image once and fail (one line) if any is missing or unreadable.

    Run before training starts, so that a truncated or corrupt file is reported
    up front, with the number of bad files and the first one, rather than in the
    middle of an epoch.  Images are decoded by ``threads`` threads (default: up
    to 4), with a progress bar (plain lines when stderr is not a terminal).
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    from facedet.cli_common import progress

    root = Path(root)

    def problem(rec: ImageAnnotation) -> str | None:
        try:
            load_image(root / rec.file)
        except FacedetError as exc:
            return str(exc)
        return None

    n = threads or max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=n) as pool:
        found = progress(pool.map(problem, records), total=len(records), desc=f"checking the {what}", unit="image", disable=None if show_progress else True)
        bad = [p for p in found if p is not None]
    if bad:
        raise FacedetError(f"{len(bad)} of {len(records)} images of the {what} cannot be read under {root}, e.g. {bad[0]}")


def _seed_rng(seed: int, epoch: int, index: int, attempt: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index), int(attempt)])


class TrainDataset(Dataset):
    """Augmented, normalised training samples.

    Items are addressed by ``(epoch, index)`` pairs (see :func:`epoch_batches`),
    so that the augmentation is a pure function of ``(seed, epoch, index)``
    whatever process computes it.

    Args:
        records: annotations; ``file`` relative to ``root``.
        root: data-set root folder.
        augment: ``qvga`` (monochrome QVGA path), ``vga`` (RGB VGA path) or
            ``none`` (resize to the square input only).
        size: square training input side in pixels.
        in_channels, mean_bgr: as in :func:`facedet.preprocess.normalize`.
        seed: base seed.
    Returns (per item):
        ``(image float32 Tensor[C, size, size], boxes Tensor[N, 4] xyxy pixels,
        ignore bool Tensor[N])``.
    """

    def __init__(self, records: Sequence[ImageAnnotation], root: str | Path, augment: str = "qvga", size: int = 320, in_channels: int = 1, mean_bgr=(104.0, 117.0, 123.0), seed: int = 0) -> None:
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}")
        self.records = list(records)
        self.root = Path(root)
        self.augment = augment
        self.size = int(size)
        self.in_channels = in_channels
        self.mean_bgr = tuple(mean_bgr)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.records)

    def _transform(self, image, boxes, ignore, rng):
        if self.augment == "qvga":
            return augment_qvga(image, boxes, ignore, rng, self.size, self.mean_bgr)
        if self.augment == "vga":
            return augment_vga(image, boxes, ignore, rng, self.size, self.mean_bgr)
        return no_augment(image, boxes, ignore, rng, self.size)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        rec = self.records[index]
        image = load_image(self.root / rec.file)
        boxes, ignore = rec.boxes, rec.ignore
        # Like the reference, retry when augmentation loses every face (with
        # fresh draws); after a few attempts accept it (no positives: the image
        # then adds nothing to the loss).
        for attempt in range(5):
            rng = _seed_rng(self.seed, epoch, index, attempt)
            img, b, ig = self._transform(image, boxes, ignore, rng)
            if (~ig).any() or not (~ignore).any() or self.augment == "none":
                break
        x = torch.from_numpy(normalize(img, self.in_channels, self.mean_bgr))
        return x, torch.from_numpy(b), torch.from_numpy(ig)


def collate_train(items):
    """``[(x, boxes, ignore), ...]`` -> ``(Tensor[B, C, H, W], [boxes], [ignore])``."""
    xs, boxes, ignores = zip(*items)
    return torch.stack(xs, 0), list(boxes), list(ignores)


def epoch_batches(num_items: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> list[list[tuple[int, int]]]:
    """The batches of one epoch for one process: lists of ``(epoch, index)``.

    The permutation depends only on ``(seed, epoch)``; every process gets the
    same number of full batches (the tail that does not fill a global batch of
    ``batch_size * world_size`` is dropped), process ``r`` taking every
    ``world_size``-th index.
    """
    per_epoch = num_items // (batch_size * world_size)
    perm = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), 0x5EED]).permutation(num_items)
    mine = perm[: per_epoch * batch_size * world_size][rank::world_size]
    return [[(epoch, int(i)) for i in mine[b * batch_size : (b + 1) * batch_size]] for b in range(per_epoch)]


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def make_train_loader(dataset: TrainDataset, batches: list[list[tuple[int, int]]], workers: int = 0, seed: int = 0) -> DataLoader:
    """A loader over precomputed batches (see :func:`epoch_batches`).

    The loader draws its worker base seed from its own generator (seeded with
    ``seed``), not from torch's global RNG, so creating a loader (e.g. again
    after a resume) leaves the global RNG state untouched.
    """
    return DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=collate_train,
        num_workers=workers,
        worker_init_fn=_worker_init if workers > 0 else None,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(int(seed) & 0x7FFFFFFF),
    )


@dataclass
class ValItem:
    """One validation input: the network tensor and the factors back to image pixels."""

    x: torch.Tensor
    sx: float
    sy: float
    index: int
    height: int
    width: int


class ValDataset(Dataset):
    """Validation inputs prepared exactly like inference (:class:`facedet.inference.Detector`).

    Area-preserving resize to the model's nominal pixel budget (``network_scale``
    + ``resize``, INTER_LINEAR, never below ``min_side``), then ``normalize``.
    """

    def __init__(self, records: Sequence[ImageAnnotation], root: str | Path, input_size: tuple[int, int], in_channels: int, mean_bgr, min_side: int = 1) -> None:
        self.records = list(records)
        self.root = Path(root)
        self.input_size = tuple(input_size)
        self.in_channels = in_channels
        self.mean_bgr = tuple(mean_bgr)
        self.min_side = min_side

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> ValItem:
        image = load_image(self.root / self.records[index].file)
        h, w = image.shape[:2]
        r = resize(image, network_scale(h, w, self.input_size), self.min_side)
        x = torch.from_numpy(normalize(r.image, self.in_channels, self.mean_bgr))
        return ValItem(x, r.sx, r.sy, index, h, w)


def make_val_loader(dataset: ValDataset, workers: int = 0) -> DataLoader:
    """One image per batch (sizes differ); items are :class:`ValItem`."""
    return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers, worker_init_fn=_worker_init if workers > 0 else None)
