"""Decode a whole dataset (or a subset) in DataLoader workers, collecting every unreadable file instead of
stopping at the first.

:func:`decode_stream` is the one decoding loop: the decoded cache (:mod:`pmgaft.data.cache`) stores what it
yields, :func:`scan_images` only checks. Bad files end in a :class:`CorruptReport`: raised as one
:class:`PmgaftError` listing them (up to ``max_listed``, then a count), or, with ``skip_corrupt``, dropped and
reported as ``{"n_skipped": k, "skipped": [first paths with their errors]}`` for the result card.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from pmgaft.data.base import ImageDataset
from pmgaft.data.decode import DECODE_ERRORS, to_rgb
from pmgaft.errors import PmgaftError

MAX_LISTED = 20
# PIL RGB image -> uint8 [3, H, W] (or None: decode only)
Convert = Callable[[Image.Image], "np.ndarray | None"]


@dataclass
class CorruptReport:
    """Unreadable images of one pass: how many, and the first ``max_listed`` as ``"<path>: <error>"``."""

    n_skipped: int = 0
    skipped: list[str] = field(default_factory=list)
    max_listed: int = MAX_LISTED

    def add(self, message: str) -> None:
        self.n_skipped += 1
        if len(self.skipped) < self.max_listed:
            self.skipped.append(message)

    def to_dict(self) -> dict[str, Any]:
        """``{"n_skipped": k, "skipped": [...]}``: what a result card records."""
        return {"n_skipped": self.n_skipped, "skipped": list(self.skipped)}

    def error(self, what: str) -> PmgaftError:
        more = f"\n  ... and {self.n_skipped - len(self.skipped)} more" if self.n_skipped > len(self.skipped) else ""
        return PmgaftError(f"{what}: {self.n_skipped} image(s) cannot be decoded:\n  " + "\n  ".join(self.skipped)
                           + more + "\nReplace or re-download these files, or skip them with skip_corrupt=True "
                           "(the count and the first paths then go into the result card).")


class _Decode(Dataset):
    """Item ``k`` -> ``(k, pixels or None, error or None)`` for dataset position ``positions[k]``."""

    def __init__(self, dataset: ImageDataset, positions: Sequence[int], convert: Convert) -> None:
        self.dataset, self.positions, self.convert = dataset, list(positions), convert

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, k: int) -> tuple[int, np.ndarray | None, str | None]:
        pos = self.positions[k]
        try:
            image = to_rgb(self.dataset.source(self.dataset.source_index(pos)))
        except DECODE_ERRORS as err:
            return k, None, f"{self.dataset.describe(pos)}: {type(err).__name__}: {err}"
        return k, self.convert(image), None


def _as_list(batch: list[Any]) -> list[Any]:
    return batch


def _decode_only(image: Image.Image) -> None:
    return None


def decode_stream(dataset: ImageDataset, positions: Sequence[int], convert: Convert, *, num_workers: int = 0,
                  batch_size: int = 64, progress: bool = True,
                  desc: str = "decoding") -> Iterator[tuple[int, np.ndarray | None, str | None]]:
    """``(k, pixels, error)`` for every ``k`` in order: ``pixels`` from ``convert``, or ``error`` naming the file.

    Decoding and ``convert`` run in ``num_workers`` DataLoader workers (0: in this process); the main process
    only receives finished uint8 arrays, so its memory stays bounded by the loader's prefetch.
    """
    loader = DataLoader(_Decode(dataset, positions, convert), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=_as_list)
    with tqdm(total=len(positions), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for batch in loader:
            yield from batch
            bar.update(len(batch))


def scan_images(dataset: ImageDataset, positions: Sequence[int] | None = None, *, num_workers: int = 0,
                max_listed: int = MAX_LISTED, progress: bool = True) -> CorruptReport:
    """Decode every image of ``dataset`` (or of ``positions``) and report all that fail, without storing any."""
    report = CorruptReport(max_listed=max_listed)
    positions = range(len(dataset)) if positions is None else positions
    for _, _, error in decode_stream(dataset, positions, _decode_only, num_workers=num_workers,
                                     progress=progress, desc=f"scanning {dataset.name}"):
        if error is not None:
            report.add(error)
    return report
