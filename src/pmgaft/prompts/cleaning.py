"""Class-name cleaning and the named per-dataset fixes the prompt styles apply before it."""
from __future__ import annotations

import re
from typing import Callable

_YEAR = re.compile(r"\s+(19|20)\d\d$")


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
    """``'AM General Hummer SUV 2000'`` -> ``'AM General Hummer SUV'`` (released code: ``label[:-5]``)."""
    return _YEAR.sub("", name)


def boeing_prefix(name: str) -> str:
    """``'737-800'`` -> ``'Boeing 737-800'``: the released code names the bare 7x7 Aircraft variants' maker."""
    return f"Boeing {name}" if name.startswith("7") else name


# referenced by name from data/paper.json ("fixes": [...])
NAME_FIXES: dict[str, Callable[[str], str]] = {
    "strip_year": strip_year,
    "boeing_prefix": boeing_prefix,
}
