"""Reference prompt styles: one prompt per class exactly as a reference evaluation code writes it, read from data.

A :class:`ReferenceStyle` is one JSON file in ``data/`` (``paper.json``, ``agft.json``, ``ttc.json``) with a
``default`` entry and per-dataset entries; each entry says which raw class-name list the reference starts from
(``names``), how it cleans them, its template, and optionally a **label map** (``label_map``: ``merge`` raw classes
into another one, ``drop`` classes with their images), for references that score a dataset with fewer classes
than the data has (AGFT's Caltech-101 with "Faces" and "Faces_easy" as one "person" class; TTC's 999-class
ImageNet). Keys of an entry:

* ``names``: ``curated`` (pmgaft's curated list), ``imagenet_reference`` (``imagenet_reference_names.json`` of
  the dataset's wnids; label-map keys are then wnids), ``raw`` (``raw_classnames``: the raw names written in the
  entry, else in ``paper.json``'s entry of the dataset) or ``loader`` (the dataset loader's own ``.classes``,
  verbatim; pmgaft's curated list stands in when no loader names are given, e.g. in a dry run);
* ``renames`` (a raw name -> the reference's wording), ``fixes`` (:data:`~pmgaft.prompts.cleaning.NAME_FIXES`),
  then ``lower`` (default true) and ``replace`` (characters turned into spaces); whitespace runs are collapsed
  (CLIP's tokenizer does the same, so no token changes);
* ``classnames``: the reference's final strings verbatim (no cleaning), already in the scored label order;
* ``template``; ``names_source`` (one line naming where the strings come from); ``label_map``;
* ``same_as``: the dataset's whole entry is that of another file (e.g. ``paper``: both codes carry the same
  dataset classes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from pmgaft.errors import PmgaftError
from pmgaft.prompts._sources import data_json
from pmgaft.prompts.classnames import classname_source, curated_classnames
from pmgaft.prompts.cleaning import NAME_FIXES, clean
from pmgaft.utils import lookup

IMAGENET_REFERENCE = "imagenet_reference_names"  # data/<this>.json


def imagenet_reference_names(wnids: Sequence[str]) -> list[str]:
    """The reference codes' ImageNet names (``imagenet_classes_names.txt``, third column) of ``wnids``.

    For a loader's ``.wnids`` (ImageNet, TinyImageNet): ``build_paper("tinyimagenet", imagenet_reference_names(
    ds.wnids))`` gives that loader's reference prompts.
    """
    names: dict[str, str] = data_json(IMAGENET_REFERENCE)["names"]
    unknown = [w for w in wnids if w not in names]
    if unknown:
        raise PmgaftError(f"{unknown[:3]} are not ImageNet-1k WordNet ids (n########) listed in "
                          f"prompts/data/{IMAGENET_REFERENCE}.json; check the dataset's wnids.txt / class folders.")
    return [names[w] for w in wnids]


def imagenet_wnids(dataset: str) -> list[str]:
    """The wnids of ImageNet (all 1000) or TinyImageNet (its 200) in label order (sorted, as ImageFolder)."""
    if dataset == "tinyimagenet":
        return sorted(data_json("classnames")["tinyimagenet"])
    return sorted(data_json(IMAGENET_REFERENCE)["names"])


@dataclass(frozen=True)
class LabelMap:
    """How a reference relabels a dataset: ``mapping[raw label]`` = the scored class index, or None (the image is
    dropped); ``kept[j]`` = the raw label whose name class ``j`` takes; ``note`` says it in words."""

    mapping: tuple[int | None, ...]
    kept: tuple[int, ...]
    note: str

    @classmethod
    def build(cls, keys: Sequence[str], merge: dict[str, str], drop: Sequence[str], note: str) -> "LabelMap":
        unknown = sorted((set(merge) | set(merge.values()) | set(drop)) - set(keys))
        if unknown or set(merge.values()) & (set(merge) | set(drop)):
            raise PmgaftError(f"label map {note!r} names classes the dataset does not have or merges into a removed "
                              f"class: {unknown[:3]}; fix the prompt data file.")
        kept = [i for i, k in enumerate(keys) if k not in merge and k not in drop]
        index = {keys[i]: j for j, i in enumerate(kept)}
        return cls(tuple(None if k in drop else index[merge.get(k, k)] for k in keys), tuple(kept), note)


def _curated(dataset: str, config: dict[str, Any]) -> tuple[list[str], str, list[str]]:
    names = curated_classnames(dataset)
    return names, classname_source(dataset), names


def _imagenet_reference(dataset: str, config: dict[str, Any]) -> tuple[list[str], str, list[str]]:
    wnids = imagenet_wnids(dataset)
    return imagenet_reference_names(wnids), (f"reference ImageNet name list (imagenet_classes_names.txt, third "
                                             f"column) of its {len(wnids)} wnids: pmgaft prompts/data/"
                                             f"{IMAGENET_REFERENCE}.json"), wnids


def _raw(dataset: str, config: dict[str, Any]) -> tuple[list[str], str, list[str]]:
    names = config.get("raw_classnames") or data_json("paper")["datasets"][dataset]["raw_classnames"]
    return list(names), "the raw class names in pmgaft's prompt data (paper.json unless the entry has its own)", names


def _loader(dataset: str, config: dict[str, Any]) -> tuple[list[str], str, list[str]]:
    names = curated_classnames(dataset)
    return names, (f"the loader's own class names, verbatim (torchvision .classes; without the data, "
                   f"{classname_source(dataset)} stands in)"), names


# "names" of an entry -> (dataset, entry) -> (raw names in label order, where they come from, label-map keys)
NAME_PROVIDERS: dict[str, Callable[[str, dict[str, Any]], tuple[list[str], str, list[str]]]] = {
    "curated": _curated,
    "imagenet_reference": _imagenet_reference,
    "raw": _raw,
    "loader": _loader,
}


class ReferenceStyle:
    """The prompt style written in ``data/<file>.json`` (see the module docstring)."""

    def __init__(self, file: str) -> None:
        self.file = file

    def config(self, dataset: str | None) -> dict[str, Any]:
        """The entry of ``dataset`` over the file's default (the default alone for None or unlisted sets)."""
        data = data_json(self.file)
        entry = data["datasets"].get(dataset or "", {})
        if "same_as" in entry:  # another reference file's entry, whole (the same code base's prompts)
            return ReferenceStyle(entry["same_as"]).config(dataset)
        return {**data["default"], **entry}

    def provided(self, dataset: str) -> tuple[list[str], str, list[str]]:
        """(raw names in label order, where they come from, the keys a label map names: the names or wnids)."""
        config = self.config(dataset)
        return lookup(NAME_PROVIDERS, config["names"], "class-name provider")(dataset, config)

    def names(self, dataset: str) -> tuple[list[str], str]:
        """The raw names the rule starts from (label order) and, in one line, where the final strings come from."""
        names, source, _ = self.provided(dataset)
        return names, self.config(dataset).get("names_source", source)

    def loader_names(self, dataset: str) -> bool:
        """Whether the reference uses the loader's own ``.classes`` (pass them to ``build``)."""
        return self.config(dataset)["names"] == "loader"

    def relabel(self, dataset: str) -> LabelMap | None:
        """The reference's label map of ``dataset`` (None: scored with the data's own labels)."""
        spec = self.config(dataset).get("label_map")
        if not spec:
            return None
        return LabelMap.build(self.provided(dataset)[2], spec.get("merge", {}), spec.get("drop", []), spec["note"])

    def clean(self, name: str) -> str:
        """A raw name as the file's default rule writes it (no per-dataset fixes)."""
        return apply_rule(self.config(None), [name])[0]

    def build(self, dataset: str | None, names: Sequence[str]) -> tuple[list[str], list[str]]:
        """(class names in scored label order, [template]) from the raw ``names`` in the data's label order."""
        config = self.config(dataset)
        if "classnames" in config:  # the reference's own final strings
            return list(config["classnames"]), [config["template"]]
        out = apply_rule(config, names)
        relabel = self.relabel(dataset) if dataset is not None else None
        return ([out[i] for i in relabel.kept] if relabel else out), [config["template"]]


def apply_rule(config: dict[str, Any], names: Sequence[str]) -> list[str]:
    """``renames``, then ``fixes``, then lower-case (``lower``) and ``replace`` characters by spaces."""
    renames: dict[str, str] = config.get("renames", {})
    fixes = [NAME_FIXES[fix] for fix in config.get("fixes", [])]
    out = []
    for name in names:
        name = renames.get(name, name)
        for fix in fixes:
            name = fix(name)
        out.append(clean(name, lower=config.get("lower", True), replace=config["replace"]))
    return out
