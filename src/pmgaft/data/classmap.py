"""A hub copy's labels in the registered dataset's label order -- matched by class name, or refused.

A copy numbers its classes its own way (VTAB's TFDS builders, a parquet ClassLabel, 1-based labels with a name
column). Its class names are compared with pmgaft's lists for the dataset, each in the registered label order
(curated names, the reference codes' names, class ids such as WordNet ids), after :func:`name_key` (case,
punctuation, a leading ``NNN.`` folder index and Caltech's ``-101`` suffix ignored). A list the copy's names
match one to one gives the mapping. A name that repeats (ImageNet's two ``missile`` and two ``sunglasses``
classes, in CLIP_benchmark's list and in pmgaft's) cannot say which of its classes is which, so it is accepted
only where the copy and the list give it the same labels, and keeps them. When no list matches, loading stops
with the names that differ: a label is never silently shifted.
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


def _groups(keys: Mapping[int, str]) -> dict[str, list[int]]:
    """``{name key: its labels, ascending}``."""
    out: dict[str, list[int]] = {}
    for label in sorted(keys):
        out.setdefault(keys[label], []).append(label)
    return out


def _match(hub: dict[str, list[int]], registered: dict[str, list[int]]) -> dict[int, int] | str:
    """Copy label -> registered label, or why the two lists do not match one to one."""
    if hub.keys() != registered.keys():
        return "names differ"
    labels: dict[int, int] = {}
    for key, ours in hub.items():
        theirs = registered[key]
        if len(ours) == len(theirs) == 1:
            labels[ours[0]] = theirs[0]
        elif ours == theirs:  # a repeated name at the same labels in both: those labels are kept
            labels.update(zip(ours, theirs))
        else:
            return (f"{key!r} is {len(ours)} class(es) at labels {ours[:3]} of the copy and {len(theirs)} at "
                    f"{theirs[:3]}")
    return labels


def map_classes(names: Mapping[int, str], candidates: Mapping[str, Sequence[str]], what: str) -> ClassMap:
    """Map the copy's ``{label: name}`` onto the first candidate list (``{description: names in registered label
    order}``) that it matches one to one (see the module docstring); a PmgaftError naming the differences
    otherwise."""
    hub = _groups({label: name_key(n) for label, n in names.items()})
    nearest: tuple[int, int, str, str] | None = None  # (how far, size, source, why)
    for source, registered in candidates.items():
        ours = _groups(dict(enumerate(name_key(n) for n in registered)))
        labels = _match(hub, ours)
        if isinstance(labels, dict):
            moved = sum(label != target for label, target in labels.items())
            order = "the same order" if moved == 0 else f"{moved} of {len(labels)} classes reordered"
            repeated = [k for k, v in hub.items() if len(v) > 1]
            kept = f"; repeated names {repeated[:4]} at the same labels" if repeated else ""
            return ClassMap(labels, f"matched by name with {source}: {order}{kept}")
        unmatched, missing = sorted(hub.keys() - ours.keys()), sorted(ours.keys() - hub.keys())
        why = labels if not (unmatched or missing) else (f"only in the copy: {unmatched[:4] or 'none'}; only in "
                                                         f"pmgaft's list: {missing[:4] or 'none'}")
        far = len(unmatched) + len(missing)
        if nearest is None or far < nearest[0]:
            nearest = (far, len(registered), source, why)
    assert nearest is not None, "map_classes() needs at least one candidate list"
    _, n, source, why = nearest
    raise PmgaftError(f"{what}: its {len(names)} class names do not match pmgaft's {n} classes one to one "
                      f"(closest: {source}; {why}), so its labels cannot be mapped safely; use the torchvision copy "
                      f"(--source torchvision)")
