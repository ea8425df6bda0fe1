"""A hub copy's labels in the registered dataset's label order -- matched by class name, or refused.

A copy numbers its classes its own way (VTAB's TFDS builders, a parquet ClassLabel, 1-based labels with a name
column). Its class names are compared with pmgaft's lists for the dataset, each in the registered label order
(curated names, the reference codes' names, class ids such as WordNet ids), after :func:`name_key` (case,
punctuation, a leading ``NNN.`` folder index and Caltech's ``-101`` suffix ignored). A list the copy's names
match one to one gives the mapping; when none does, or names repeat, loading stops with the names that differ:
a label is never silently shifted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from pmgaft.errors import PmgaftError

_INDEX = re.compile(r"^\d+\.")
_NON_WORD = re.compile(r"[^0-9a-z]+")


def name_key(name: str) -> str:
    """``"001.American-Flag"`` -> ``"american flag"``: what two spellings of one class name share."""
    key = _NON_WORD.sub(" ", _INDEX.sub("", name.strip()).lower()).strip()
    return key[:-4] if key.endswith(" 101") else key


@dataclass(frozen=True)
class ClassMap:
    """``labels[hub_label]`` = registered label; ``note`` says how it was found (for result cards)."""

    labels: dict[int, int]
    note: str


def map_classes(names: Mapping[int, str], candidates: Mapping[str, Sequence[str]], what: str) -> ClassMap:
    """Map the copy's ``{label: name}`` onto the first candidate list (``{description: names in registered label
    order}``) that it matches one to one; a PmgaftError naming the differences otherwise."""
    hub = {label: name_key(n) for label, n in names.items()}
    if len(set(hub.values())) != len(hub):
        raise PmgaftError(f"{what}: its class names repeat after normalisation, so its labels cannot be matched "
                          f"to pmgaft's by name")
    nearest: tuple[int, str, list[str], list[str]] | None = None
    for source, registered in candidates.items():
        keys = [name_key(n) for n in registered]
        index = {k: i for i, k in enumerate(keys)}
        if len(index) == len(keys) == len(hub) and set(index) == set(hub.values()):
            labels = {label: index[k] for label, k in hub.items()}
            moved = sum(label != target for label, target in labels.items())
            order = "the same order" if moved == 0 else f"{moved} of {len(labels)} classes reordered"
            return ClassMap(labels, f"matched by name with {source}: {order}")
        unmatched = sorted(set(hub.values()) - set(index))
        missing = sorted(set(index) - set(hub.values()))
        if nearest is None or len(unmatched) + len(missing) < len(nearest[2]) + len(nearest[3]):
            nearest = (len(keys), source, unmatched, missing)
    assert nearest is not None, "map_classes() needs at least one candidate list"
    n, source, unmatched, missing = nearest
    raise PmgaftError(f"{what}: its {len(hub)} class names do not match pmgaft's {n} classes one to one (closest: "
                      f"{source}; only in the copy: {unmatched[:4] or 'none'}; only in pmgaft's list: "
                      f"{missing[:4] or 'none'}), so its labels cannot be mapped safely; use the torchvision copy "
                      f"(--source torchvision)")
