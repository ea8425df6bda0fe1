"""The catalogue of public robust CLIP models (``catalogue.json``): their facts, and short names for ``--model``.

Each entry names a Hugging Face repo in open_clip's hub format, so ``--model fare4-clip`` means
``--model hf-hub:chs20/fare4-clip``. The numbers are what the authors report, with the source they were read
from; ``pmgaft models`` prints them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class CatalogueEntry:
    """One public model: where it is, what it is, how it was trained, what its authors report."""

    name: str  # the short name (``fare4-clip``)
    repo: str  # Hugging Face repo id (``chs20/fare4-clip``)
    architecture: str
    init: str  # the weights it started from (an open_clip tag, or "none")
    method: str
    training: str
    threat_model: str
    eps: str | None  # training radius, "4/255"; None: not stated by the source
    train_dataset: str | None
    paper: str
    files: str
    reported: dict[str, Any] | None  # {"metric", "clean", "robust": {eps: acc}, "source"}

    @property
    def hub_name(self) -> str:
        return f"hf-hub:{self.repo}"

    def to_dict(self) -> dict[str, Any]:
        return {"hub_name": self.hub_name, **self.__dict__}


@lru_cache(maxsize=1)
def catalogue() -> dict[str, CatalogueEntry]:
    """Short name -> entry, in the file's order."""
    data = json.loads((resources.files("pmgaft") / "models" / "catalogue.json").read_text())
    return {m["name"]: CatalogueEntry(**m) for m in data["models"]}


def find_entry(name: str) -> CatalogueEntry | None:
    """The entry named ``name``: a short name, a repo id, or ``hf-hub:REPO`` (case-insensitive)."""
    key = name.removeprefix("hf-hub:").lower()
    return next((e for e in catalogue().values() if key in (e.name.lower(), e.repo.lower())), None)
