"""Deterministic train/test splits for datasets that ship without one (SUN397, Caltech-101/256, EuroSAT).

Rule (documented, fixed): walk the images in a canonical order (sorted by path), group them by class, shuffle
each class with ``numpy.random.default_rng(SPLIT_SEED)``, and put the first ``round(TEST_FRACTION * n)`` of each
class (at least one when the class has two or more images) in ``test``, the rest in ``train``. 30 % test is the
fraction CoOp's splits use for Caltech-101 and EuroSAT. ``"all"`` is the whole set, which is what the released
PMG-AFT code evaluates on for these four datasets.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from pmgaft.data.base import ImageDataset

SPLIT_SEED = 0
TEST_FRACTION = 0.3
UNSPLIT_SPLITS = ("train", "test", "all")


def class_split(targets: Sequence[int], test_fraction: float = TEST_FRACTION,
                seed: int = SPLIT_SEED) -> dict[str, list[int]]:
    """``{"train": [...], "test": [...], "all": [...]}``: sorted positions, stratified by class."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, t in enumerate(targets):
        by_class[int(t)].append(i)
    rng = np.random.default_rng(seed)
    test: list[int] = []
    for label in sorted(by_class):
        members = by_class[label]
        k = round(test_fraction * len(members))
        k = max(k, 1) if len(members) >= 2 else k
        test.extend(members[j] for j in rng.permutation(len(members))[:k])
    test_set = set(test)
    return {"train": [i for i in range(len(targets)) if i not in test_set], "test": sorted(test_set),
            "all": list(range(len(targets)))}


def split_view(dataset: ImageDataset, split: str) -> ImageDataset:
    """``dataset`` (the whole set, canonical order) restricted to ``split`` under the rule above."""
    if split == "all":
        dataset.split = "all"
        return dataset
    return dataset.select(class_split(dataset.targets)[split], split)
