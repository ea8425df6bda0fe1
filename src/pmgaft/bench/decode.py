"""Data loading + preprocessing throughput: decode and transform a dataset's images, as evaluation reads them.

One call is one pass of a ``DataLoader`` (``workers`` processes, persistent, so worker start-up falls in the
warm-up call) over the first ``images`` images of the test split, with the dataset's default ("clip")
transform: decode, RGB, resize/crop, to a [0, 1] tensor. Seconds per image = call seconds / images.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, Subset

from pmgaft.data import load_dataset
from pmgaft.errors import PmgaftError


def data_call(dataset: str, root: str | Path | None, *, batch_size: int, workers: int, images: int,
              split: str = "test") -> tuple[Callable[[], int], int]:
    """(a no-argument call that reads the images and returns how many it read, that number)."""
    if workers < 0 or images < 1:
        raise PmgaftError(f"--workers must be >= 0 and --data-images >= 1, got {workers} and {images}.")
    if root is None and not dataset.startswith("folder:"):
        raise PmgaftError(f"dataset {dataset!r} needs --data-root (or pass --dataset folder:PATH for a folder of "
                          f"images in class folders).")
    ds = load_dataset(dataset, root or ".", split=split)
    subset = Subset(ds, range(min(images, len(ds))))
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
