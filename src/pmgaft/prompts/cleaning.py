"""Class-name cleaning and the named per-dataset fixes the prompt styles apply before it."""
from __future__ import annotations

import re
from typing import Callable

_YEAR = re.compile(r"\s+(19|20)\d\d$")
_FOLDER_INDEX = re.compile(r"^\d+\.")


def clean(name: str, *, lower: bool, replace: str) -> str:
    """Optionally lower-case, turn each character of ``replace`` into a space, collapse whitespace.

    Collapsing whitespace changes no CLIP token (its tokenizer collapses whitespace too) but keeps the prompts
    written into result files tidy.
    """
    name = name.lower() if lower else name
    for char in replace:
        name = name.replace(char, " ")
    return " ".join(name.split())


def strip_year(name: str) -> str:
    """``'AM General Hummer SUV 2000'`` -> ``'AM General Hummer SUV'`` (reference code: ``label[:-5]``; equal on
    every Stanford Cars name, and a no-op on a name without a year)."""
    return _YEAR.sub("", name)


def strip_folder_index(name: str) -> str:
    """``'002.american-flag'`` -> ``'american-flag'`` (reference code: ``name[4:]`` on Caltech-256 folders)."""
    return _FOLDER_INDEX.sub("", name)


def drop_101(name: str) -> str:
    """``'motorbikes-101'`` -> ``'motorbikes'``: Caltech-256's folders borrowed from Caltech-101."""
    return name.replace("-101", "")


def boeing_prefix(name: str) -> str:
    """``'737-800'`` -> ``'Boeing 737-800'``: the released code names the bare 7x7 Aircraft variants' maker."""
    return f"Boeing {name}" if name.startswith("7") else name


# referenced by name from data/paper.json ("fixes": [...])
NAME_FIXES: dict[str, Callable[[str], str]] = {
    "strip_year": strip_year,
    "boeing_prefix": boeing_prefix,
    "strip_folder_index": strip_folder_index,
    "drop_101": drop_101,
}
