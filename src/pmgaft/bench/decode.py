"""Data loading + preprocessing throughput: decode and transform a dataset's images, as training or evaluation
reads them, for one or more numbers of loader workers.

One call is one pass of a ``DataLoader`` (``workers`` processes, persistent, so worker start-up falls in the
warm-up call) over ``images`` images of ``split`` spread evenly over the split (so a class-sorted set such as
ImageNet train is read from many folders, as a shuffled epoch reads it), with the ``transform`` preset: decode,
RGB, resize/crop, to a [0, 1] tensor. Seconds per image = call seconds / images; images/s per worker = images/s /
max(workers, 1) -- what one more worker adds while the CPU has cores to spare, so ``ceil(step images/s / per
worker)`` workers keep a training step fed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, Subset

from pmgaft.data import load_dataset
from pmgaft.errors import PmgaftError


def spread_positions(n: int, images: int) -> list[int]:
    """``min(images, n)`` positions spread evenly over ``0 .. n - 1`` (the first and the last included)."""
    k = min(images, n)
    return sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})


def data_call(dataset: str, root: str | Path | None, *, batch_size: int, workers: int, images: int,
              split: str = "test", transform: str = "clip") -> tuple[Callable[[], int], int]:
    """(a no-argument call that reads the images and returns how many it read, that number)."""
    if workers < 0 or images < 1:
        raise PmgaftError(f"--workers must be >= 0 and --data-images >= 1, got {workers} and {images}.")
    if root is None and not dataset.startswith("folder:"):
        raise PmgaftError(f"dataset {dataset!r} needs --data-root (or pass --dataset folder:PATH for a folder of "
                          f"images in class folders).")
    ds = load_dataset(dataset, root or ".", split=split, transform=transform)
    subset = Subset(ds, spread_positions(len(ds), images))
    loader = DataLoader(subset, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0,
                        shuffle=False)

    def call() -> int:
        n = 0
        for x, _ in loader:
            n += len(x)
        return n
    return call, len(subset)


def default_workers() -> int:
    """As many workers as cores, leaving one for the main process (at least 1)."""
    return max(1, (torch.get_num_threads() or 1) - 1)
