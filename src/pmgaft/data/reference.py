"""The data side of the reference protocols (docs/protocols.md), per dataset, known without the data.

Both reference evaluations score SUN397, EuroSAT, Caltech-101 and Caltech-256 **whole** (``split="all"``) and
every other set's official test split (ImageNet and TinyImageNet: val). Their preprocessing is the ``tga-zsr``
or ``official`` transform preset (:mod:`pmgaft.data.transforms`); their prompts are the ``paper``
prompt style (:mod:`pmgaft.prompts`). :func:`describe_data` is one dry-run row.
"""
from __future__ import annotations

from typing import Any

from pmgaft.data.registry import DATASETS
from pmgaft.data.transforms import describe_transform
from pmgaft.utils import lookup

# the sets without an official split, scored whole by both reference protocols
WHOLE_SETS: frozenset[str] = frozenset({"sun397", "eurosat", "caltech101", "caltech256"})


def reference_split(dataset: str) -> str:
    """``"all"`` for the four unsplit sets, ``"test"`` for every other registered set."""
    spec = lookup(DATASETS, dataset, "dataset")
    return "all" if dataset in WHOLE_SETS and "all" in spec.splits else "test"


def describe_data(dataset: str, split: str, preset: str, image_size: int = 224) -> dict[str, Any]:
    """What a dry run prints for one dataset: split, standard image count (None: depends on the data on disk),
    and the preprocessing before the attack, e.g. ``{"split": "test", "n_images": 10000, "preprocessing":
    "Resize((224, 224), bilinear)", ...}``."""
    spec = lookup(DATASETS, dataset, "dataset")
    return {"dataset": dataset, "split": split, "split_description": spec.describe_split(split),
            "n_images": spec.size(split), "preprocessing": describe_transform(spec, preset, image_size)}
