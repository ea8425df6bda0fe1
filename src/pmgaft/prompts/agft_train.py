"""The 'agft_train' prompt style: AGFT's fine-tuning prompt, "This is a photo of a {}." on the reference names.

AGFT's released code (``clip_dataset.py``) names ImageNet's classes by the reference list
(``imagenet_classes_names.txt``, third column) with ``_`` and ``-`` replaced by spaces and the case kept
("This is a photo of a Egyptian cat."), where the TeCoA-lineage 'train' style lower-cases and drops the full
stop. The rule and its source are data (``data/agft_train.json``); every dataset gets the same rule on the
names the 'train' style starts from.
"""
from __future__ import annotations

from typing import Sequence

from pmgaft.prompts._sources import data_json
from pmgaft.prompts.cleaning import clean

STYLE_FILE = "agft_train"  # data/<this>.json


def clean_agft_train(name: str) -> str:
    """``'Egyptian_cat'`` -> ``'Egyptian cat'``: ``_`` and ``-`` as spaces, case kept."""
    rule = data_json(STYLE_FILE)
    return clean(name, lower=rule["lower"], replace=rule["replace"])


def build_agft_train(dataset: str | None, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(class names, [template]) of AGFT's training prompt; ``dataset`` does not matter."""
    return [clean_agft_train(n) for n in names], [data_json(STYLE_FILE)["template"]]
