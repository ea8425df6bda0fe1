"""The 'paper' and 'train' prompt styles: the reference evaluations' single prompt per class.

'paper' is the evaluation prompt of the tga-zsr and official-code protocols (docs/protocols.md): a per-dataset template
("A surface with a {} texture." for DTD ...) applied to the reference's own class-name list with its clean-up
(``data/paper.json`` documents each choice and its source). 'train' is the fine-tuning prompt "This is a photo
of a {}" with ``refine_classname`` cleaning on the same lists, for every dataset.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from pmgaft.errors import PmgaftError
from pmgaft.prompts._sources import data_json
from pmgaft.prompts.classnames import classname_source, curated_classnames
from pmgaft.prompts.cleaning import NAME_FIXES, clean
from pmgaft.utils import lookup

IMAGENET_REFERENCE = "imagenet_reference_names"  # data/<this>.json


def paper_config(dataset: str | None) -> dict[str, Any]:
    """The reference prompt settings for ``dataset`` (its default for None or sets it does not name)."""
    data = data_json("paper")
    return {**data["default"], **data["datasets"].get(dataset or "", {})}


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


def _imagenet_wnids(dataset: str) -> list[str]:
    if dataset == "tinyimagenet":  # its 200 wnids, label order = sorted (ImageFolder)
        return sorted(data_json("classnames")["tinyimagenet"])
    return sorted(data_json(IMAGENET_REFERENCE)["names"])


def _curated(dataset: str, config: dict[str, Any]) -> tuple[list[str], str]:
    return curated_classnames(dataset), classname_source(dataset)


def _imagenet_reference(dataset: str, config: dict[str, Any]) -> tuple[list[str], str]:
    wnids = _imagenet_wnids(dataset)
    return imagenet_reference_names(wnids), (f"reference ImageNet name list (imagenet_classes_names.txt, third "
                                             f"column) of its {len(wnids)} wnids: pmgaft prompts/data/"
                                             f"{IMAGENET_REFERENCE}.json")


def _raw(dataset: str, config: dict[str, Any]) -> tuple[list[str], str]:
    return list(config["raw_classnames"]), config["names_source"]


# paper.json "names" -> (dataset, its config) -> (names in label order, where they come from)
NAME_PROVIDERS: dict[str, Callable[[str, dict[str, Any]], tuple[list[str], str]]] = {
    "curated": _curated,
    "imagenet_reference": _imagenet_reference,
    "raw": _raw,
}


def reference_names(dataset: str) -> tuple[list[str], str]:
    """The list the reference rule starts from for a registered ``dataset``, and its source in one line."""
    config = paper_config(dataset)
    return lookup(NAME_PROVIDERS, config["names"], "class-name provider")(dataset, config)


def paper_names(dataset: str) -> tuple[list[str], str]:
    """``reference_names``, with the source of the verbatim strings for the sets that have them."""
    names, source = reference_names(dataset)
    return names, paper_config(dataset).get("names_source", source)


def _apply(config: dict[str, Any], names: Sequence[str]) -> list[str]:
    renames: dict[str, str] = config.get("renames", {})
    fixes = [NAME_FIXES[fix] for fix in config.get("fixes", [])]
    out = []
    for name in names:
        name = renames.get(name, name)
        for fix in fixes:
            name = fix(name)
        out.append(clean(name, lower=True, replace=config["replace"]))
    return out


def clean_paper(name: str) -> str:
    """The reference ``refine_classname``: lower-case, ``_ - /`` -> space."""
    return clean(name, lower=True, replace=data_json("paper")["default"]["replace"])


def build_paper(dataset: str | None, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(class names, [template]) as the reference evaluates ``dataset``, from its raw ``names`` in label order
    (a loader's ``.classes``; for ImageNet/TinyImageNet :func:`imagenet_reference_names` of its ``.wnids``)."""
    config = paper_config(dataset)
    if "classnames" in config:  # the reference's own final strings (EuroSAT, PCAM)
        return list(config["classnames"]), [config["template"]]
    return _apply(config, names), [config["template"]]


def build_train(dataset: str | None, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(class names, [template]) of the reference training prompt; ``dataset`` does not matter."""
    config = data_json("paper")["train"]
    return _apply(config, names), [config["template"]]
