"""Class-stratified, deterministic subsets (``pmgaft eval --n-samples``).

Allocation of ``n`` among the C classes present: when ``n >= C`` each class gets the floor of its proportional
share ``n * count / total`` but at least one image, then the total is brought to exactly ``n`` (trimming the
classes most above their share, or adding by largest remainder); when ``n < C``, ``n`` classes drawn with the
seed get one image each. Within a class
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
    quota = n * counts / counts.sum()  # the exact proportional share
    take = np.maximum(np.floor(quota), 1).astype(np.int64)
    while take.sum() > n:  # the floor of 1 overshot: trim the class furthest above its share
        take[np.argmax(np.where(take > 1, take - quota, -np.inf))] -= 1
    while take.sum() < n:  # hand out the rest by largest remainder (ties: lowest label)
        take[np.argmax(np.where(take < counts, quota - take, -np.inf))] += 1
    return take


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
