"""``get_prompts``: the class names and templates a zero-shot classifier is built from, as one record.

The record is written into every result JSON (``Prompts.to_dict()``), so a number can always be traced to the
exact text it was computed with.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

from pmgaft.errors import PmgaftError
from pmgaft.prompts._sources import data_json
from pmgaft.prompts.classnames import FOLDER_PREFIX, known_datasets, resolve_dataset
from pmgaft.prompts.paper import IMAGENET_REFERENCE
from pmgaft.prompts.styles import get_style
from pmgaft.utils import did_you_mean


@dataclass(frozen=True)
class Prompts:
    """Class names (label order) and templates (each with one ``{}``) of one dataset in one prompt style.

    ``names_source`` says in one line where the class-name list comes from (for dry runs and result cards).
    """

    dataset: str
    style: str
    classnames: list[str]
    templates: list[str]
    names_source: str = ""

    def __post_init__(self) -> None:
        bad = [t for t in self.templates if t.count("{}") != 1]
        if not self.classnames or not self.templates or bad:
            raise PmgaftError(f"prompts for {self.dataset!r} ({self.style}) need class names and templates with "
                              f"exactly one '{{}}'; got {len(self.classnames)} names, bad templates {bad[:3]}.")

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def texts(self) -> list[list[str]]:
        """Every prompt, ``[class][template]``."""
        return [[t.format(c) for t in self.templates] for c in self.classnames]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mismatch(dataset: str, curated: list[str], given: Sequence[str]) -> PmgaftError:
    return PmgaftError(
        f"dataset {dataset!r} has {len(curated)} classes in pmgaft's class-name list but the data has {len(given)} "
        f"({', '.join(map(str, list(given)[:5]))}{', ...' if len(given) > 5 else ''}): the files do not match the "
        f"registered dataset (check its path and split), or evaluate them as 'folder:PATH' with their own names.")


def _unknown(dataset: str) -> PmgaftError:
    if dataset.startswith(FOLDER_PREFIX):
        return PmgaftError(f"dataset {dataset!r} has no curated class names: pass classnames= (the loader's "
                           f".classes, in label order).")
    return PmgaftError(f"unknown dataset {dataset!r}: no curated class names.{did_you_mean(dataset, known_datasets())}"
                       f" For another image folder use 'folder:PATH' and pass classnames=.")


def imagenet_positions(classnames: Sequence[str]) -> list[int] | None:
    """Where each class sits in ImageNet-1k's label order (its sorted wnids) when every class name is an
    ImageNet-1k WordNet id (an ImageFolder of ``n01440764/``-style folders); None otherwise."""
    order = {w: i for i, w in enumerate(sorted(data_json(IMAGENET_REFERENCE)["names"]))}
    positions = [order.get(str(c)) for c in classnames]
    return None if not positions or None in positions else positions  # type: ignore[return-value]


def get_prompts(dataset: str, style: str = "paper", *, classnames: Sequence[str] | None = None) -> Prompts:
    """Class names and templates of ``dataset`` in prompt style ``style`` (``PROMPT_STYLES``).

    Registered datasets (and ``foolbox_*`` aliases) use the style's list (``paper``/``train``: the reference
    codes' names, ``ensemble``: pmgaft's curated names); ``classnames``, when also given (a loader's raw
    ``.classes``), must have the same length. Other names (``folder:PATH``) need ``classnames``, cleaned with the
    style's rules and combined with its generic template(s) -- except ImageNet WordNet ids (a folder of ImageNet's
    ``n########`` class folders, e.g. ImageNet train as an ImageFolder), which get the style's ImageNet names and
    template for those classes.
    """
    builder = get_style(style)
    key = resolve_dataset(dataset)
    if key is not None:
        names, source = builder.names(key)
        if classnames is not None and len(classnames) != len(names):
            raise _mismatch(dataset, names, classnames)
    elif classnames is None:
        raise _unknown(dataset)
    elif (positions := imagenet_positions(classnames)) is not None:
        imagenet, source = builder.names("imagenet")
        key, names = "imagenet", [imagenet[i] for i in positions]
        source = f"{source}, for the data's {len(names)} ImageNet wnid class folders"
    else:
        names, source = [str(c) for c in classnames], "the dataset's own class names (the loader's .classes)"
    out_names, templates = builder.build(key, names)
    return Prompts(dataset=dataset, style=style, classnames=out_names, templates=templates, names_source=source)
