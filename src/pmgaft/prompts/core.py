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
from pmgaft.prompts.reference import IMAGENET_REFERENCE
from pmgaft.prompts.styles import get_style
from pmgaft.utils import did_you_mean


@dataclass(frozen=True)
class Prompts:
    """Class names (label order) and templates (each with one ``{}``) of one dataset in one prompt style.

    ``names_source`` says in one line where the class-name list comes from (for dry runs and result cards).
    ``label_map`` (None: the data's own labels) maps each raw label of the data to a class index here, or to None
    (its images are not scored): ``pmgaft.data.ImageDataset.relabel`` applies it; ``label_note`` says it in words.
    """

    dataset: str
    style: str
    classnames: list[str]
    templates: list[str]
    names_source: str = ""
    label_map: list[int | None] | None = None
    label_note: str = ""

    def __post_init__(self) -> None:
        bad = [t for t in self.templates if t.count("{}") != 1]
        if not self.classnames or not self.templates or bad:
            raise PmgaftError(f"prompts for {self.dataset!r} ({self.style}) need class names and templates with "
                              f"exactly one '{{}}'; got {len(self.classnames)} names, bad templates {bad[:3]}.")
        targets = {t for t in self.label_map or () if t is not None}
        if self.label_map is not None and targets != set(range(len(self.classnames))):
            raise PmgaftError(f"the label map of {self.dataset!r} ({self.style}) does not map onto its "
                              f"{len(self.classnames)} classes; fix the prompt data file.")

    @property
    def num_raw_classes(self) -> int:
        """How many classes the data has (more than ``num_classes`` when the label map merges or drops some)."""
        return len(self.label_map) if self.label_map is not None else len(self.classnames)

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def texts(self) -> list[list[str]]:
        """Every prompt, ``[class][template]``."""
        return [[t.format(c) for t in self.templates] for c in self.classnames]

    def to_dict(self) -> dict[str, Any]:
        """The record for result cards (the label-map fields only when there is a label map)."""
        out = asdict(self)
        if self.label_map is None:
            del out["label_map"], out["label_note"]
        return out


@dataclass(frozen=True)
class ShippedText:
    """Class names (label order) and templates shipped with the data itself -- a CLIP_benchmark webdataset's
    ``classnames.txt`` and ``zeroshot_classification_templates.txt`` (``{c}`` placeholders) -- and where from.

    Styles that reproduce CLIP_benchmark (``PromptStyle.uses_shipped_text``: ``ensemble``) use them as
    CLIP_benchmark does for such data; the other styles keep their own lists.
    """

    classnames: list[str]
    templates: list[str]
    source: str


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


def get_prompts(dataset: str, style: str = "paper", *, classnames: Sequence[str] | None = None,
                shipped: ShippedText | None = None) -> Prompts:
    """Class names and templates of ``dataset`` in prompt style ``style`` (``PROMPT_STYLES``).

    Registered datasets (and ``foolbox_*`` aliases) use the style's list (``paper``/``train``: the reference
    codes' names, ``ensemble``: pmgaft's curated names); ``classnames``, when also given (a loader's raw
    ``.classes``), must have the same length. Other names (``folder:PATH``) need ``classnames``, cleaned with the
    style's rules and combined with its generic template(s) -- except ImageNet WordNet ids (a folder of ImageNet's
    ``n########`` class folders, e.g. ImageNet train as an ImageFolder), which get the style's ImageNet names and
    template for those classes. A style may relabel a registered set (``Prompts.label_map``) or build from the
    loader's own ``classnames`` (``PromptStyle.loader_names``). ``shipped``: text that came with the data, used
    verbatim by the styles that reproduce CLIP_benchmark.
    """
    builder = get_style(style)
    if shipped is not None and builder.uses_shipped_text:
        templates = [t.replace("{c}", "{}") for t in shipped.templates]  # CLIP_benchmark formats with c=name
        return Prompts(dataset=dataset, style=style, classnames=list(shipped.classnames), templates=templates,
                       names_source=shipped.source)
    key = resolve_dataset(dataset)
    relabel = None
    if key is not None:
        names, source = builder.names(key)
        relabel = builder.relabel(key)
        if classnames is not None and len(classnames) != len(names):
            raise _mismatch(dataset, names, classnames)
        if classnames is not None and builder.loader_names(key):
            names = [str(c) for c in classnames]
    elif classnames is None:
        raise _unknown(dataset)
    elif (positions := imagenet_positions(classnames)) is not None:
        return _imagenet_folder(dataset, style, positions)
    else:
        names, source = [str(c) for c in classnames], "the dataset's own class names (the loader's .classes)"
    out_names, templates = builder.build(key, names)
    return Prompts(dataset=dataset, style=style, classnames=out_names, templates=templates, names_source=source,
                   label_map=list(relabel.mapping) if relabel else None, label_note=relabel.note if relabel else "")


def _imagenet_folder(dataset: str, style: str, positions: list[int]) -> Prompts:
    """A folder of ImageNet wnid class folders (``positions``: their ImageNet labels) named as the style names
    ImageNet, including its label map: a class the style drops (TTC's duplicate 'maillot') is dropped here too."""
    whole = get_prompts("imagenet", style)
    scored = whole.label_map or list(range(whole.num_classes))  # ImageNet label -> scored class (None: dropped)
    kept = [i for i, p in enumerate(positions) if scored[p] is not None]
    label_map = None
    if len(kept) < len(positions):
        new = {i: n for n, i in enumerate(kept)}
        label_map = [new.get(i) for i in range(len(positions))]
    return Prompts(dataset=dataset, style=style, classnames=[whole.classnames[scored[positions[i]]] for i in kept],
                   templates=whole.templates, label_map=label_map, label_note=whole.label_note if label_map else "",
                   names_source=f"{whole.names_source}, for the data's {len(positions)} ImageNet wnid class folders")
