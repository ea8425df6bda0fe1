"""Class-stratified, deterministic subsets (``pmgaft eval --n-samples``).

Allocation of ``n`` among the C classes present: when ``n >= C`` every class gets one image, and the remaining
``n - C`` are shared in proportion to each class's remaining images (largest-remainder rounding, so the
total is exactly ``n``); when ``n < C``, ``n`` classes drawn with the seed get one image each. Within a class
the images are a seeded permutation's prefix. The result is sorted dataset positions: identical on every call,
machine and process for the same (labels, n, seed).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from pmgaft.errors import PmgaftError


def _targets(dataset: Any) -> list[int]:
    targets = getattr(dataset, "targets", None)
    if targets is None:  # no cheap labels: read them through __getitem__ (decodes every image)
        targets = [dataset[i][1] for i in range(len(dataset))]
    return [int(t) for t in targets]


def _allocate(counts: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """How many images each class gets: ``counts`` [C] -> [C], summing to ``n`` (< counts.sum())."""
    c = len(counts)
    if n < c:
        take = np.zeros(c, dtype=np.int64)
        take[rng.permutation(c)[:n]] = 1
        return take
    rest = counts - 1
    quota = (n - c) * rest / rest.sum() if rest.sum() else np.zeros(c)
    take = np.floor(quota).astype(np.int64)
    left = n - c - int(take.sum())
    order = np.lexsort((np.arange(c), -(quota - take)))  # largest remainder first, ties by class order
    take[order[:left]] += 1
    return take + 1


def stratified_subset(dataset: Any, n: int, seed: int = 0) -> list[int]:
    """``n`` sorted positions of ``dataset``, class-stratified and deterministic (see module docstring).

    ``dataset`` needs ``.targets`` (or is read through ``__getitem__``); ``n >= len(dataset)`` returns all.
    """
    if n < 0:
        raise PmgaftError(f"subset size must be >= 0, got {n}")
    targets = _targets(dataset)
    if n >= len(targets):
        return list(range(len(targets)))
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, t in enumerate(targets):
        by_class[t].append(i)
    labels = sorted(by_class)
    rng = np.random.default_rng(seed)
    take = _allocate(np.array([len(by_class[c]) for c in labels]), n, rng)
    chosen: list[int] = []
    for label, k in zip(labels, take):
        members = by_class[label]
        chosen.extend(members[j] for j in rng.permutation(len(members))[:k])
    return sorted(chosen)


def class_counts(targets: Sequence[int]) -> dict[int, int]:
    """``{label: count}`` (for reports and tests)."""
    counts: dict[int, int] = defaultdict(int)
    for t in targets:
        counts[int(t)] += 1
    return dict(sorted(counts.items()))
