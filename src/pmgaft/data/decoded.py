"""The decoded images of one dataset subset, served by row as [0, 1] tensors (built by :mod:`pmgaft.data.cache`).

Pixels are uint8 ``[3, H, W]`` per image, in one flat array (in memory, or a read-only memory map of the cache
file); images of one size are also viewed as a ``[N, 3, H, W]`` block so a batch is one fancy-index copy.
Serving computes ``uint8.float() / 255``: the very operation of torchvision's ``ToTensor``, so a served batch is
bit-identical to stacking ``dataset[i][0]``.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from pmgaft.data.scan import CorruptReport
from pmgaft.errors import PmgaftError


class DecodedImages(Dataset):
    """N decoded images (uint8, in memory or memory-mapped) with their labels and dataset positions.

    Row ``r`` is dataset position ``positions[r]``; ``images(rows)`` gives float32 ``[B, 3, H, W]`` in [0, 1].
    ``from_cache``: this build reused an existing cache (disk, or a live one in this process).
    """

    def __init__(self, pixels: np.ndarray, shapes: np.ndarray, labels: np.ndarray, positions: np.ndarray,
                 report: CorruptReport, key: str, path: Path | None = None, from_cache: bool = False) -> None:
        self._pixels, self._shapes = pixels, shapes.astype(np.int64).reshape(-1, 3)
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.positions: list[int] = [int(p) for p in positions]
        self.report, self.key, self.path, self.from_cache = report, key, path, from_cache
        self._offsets = np.concatenate([[0], np.cumsum(self._shapes.prod(1))]).astype(np.int64)
        uniform = len(self._shapes) > 0 and bool((self._shapes == self._shapes[0]).all())
        self._stack = pixels[:self._offsets[-1]].reshape(len(self._shapes), *self._shapes[0]) if uniform else None

    @property
    def shape(self) -> tuple[int, int, int] | None:
        """``(3, H, W)`` shared by every image, or None for mixed sizes."""
        return tuple(int(s) for s in self._stack.shape[1:]) if self._stack is not None else None  # type: ignore

    @property
    def nbytes(self) -> int:
        return int(self._offsets[-1])

    def __len__(self) -> int:
        return len(self.positions)

    def _item(self, r: int) -> np.ndarray:
        return self._pixels[self._offsets[r]:self._offsets[r + 1]].reshape(self._shapes[r])

    def _uint8(self, rows: np.ndarray) -> np.ndarray:
        if self._stack is not None:
            return self._stack[rows]  # a copy (fancy indexing), also from a memory map
        sizes = sorted({tuple(int(v) for v in self._shapes[r]) for r in rows})
        if len(sizes) > 1:
            raise PmgaftError(f"rows {rows[:4].tolist()}... hold images of different sizes {sizes[:3]}: they cannot "
                              f"be stacked into one batch; use batch size 1, or a transform preset that resizes "
                              f"(clip, tga-zsr, official) for folders of mixed sizes.")
        return np.stack([self._item(int(r)) for r in rows])

    def images(self, rows: Sequence[int] | np.ndarray, *, device: str | torch.device | None = None,
               pin_memory: bool = False) -> torch.Tensor:
        """Float32 ``[B, 3, H, W]`` in [0, 1] of ``rows``, bit-identical to the dataset's own tensors.

        With a CUDA ``device`` the uint8 batch is copied (pinned first when ``pin_memory``, then asynchronously)
        and converted there, a quarter of the bytes of a float copy; otherwise the CPU result is returned,
        pinned when ``pin_memory`` and CUDA is available.
        """
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        u8 = torch.from_numpy(self._uint8(idx))
        target = torch.device(device) if device is not None else None
        if target is not None and target.type == "cuda":
            u8 = u8.pin_memory() if pin_memory else u8
            return u8.to(target, non_blocking=pin_memory).float().div_(255)
        x = u8.float().div_(255)
        x = x.pin_memory() if pin_memory and torch.cuda.is_available() else x
        return x.to(target) if target is not None else x

    def batches(self, batch_size: int, rows: Sequence[int] | None = None, *,
                device: str | torch.device | None = None,
                pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
        """``(images [B, 3, H, W], labels [B], rows)`` over ``rows`` (default: all), in order."""
        order = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            y = self.labels[torch.from_numpy(chunk)]
            yield self.images(chunk, device=device, pin_memory=pin_memory), y.to(device or "cpu"), chunk

    def __getitem__(self, r: int) -> tuple[torch.Tensor, int]:
        return self.images([r])[0], int(self.labels[r])

    def reused(self, skip_corrupt: bool, what: str) -> "DecodedImages":
        """This cache handed to a later build: the same arrays, ``from_cache`` set, skipped files re-checked."""
        if self.report.n_skipped and not skip_corrupt:
            raise self.report.error(f"{what} (recorded by an earlier skip_corrupt build of this cache)")
        view = copy.copy(self)
        view.from_cache = True
        return view

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "memory"
        return f"DecodedImages(n={len(self)}, shape={self.shape}, {self.nbytes / 2 ** 20:.1f} MiB in {where})"
