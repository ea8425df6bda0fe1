"""The 'paper' and 'train' prompt styles: the released PMG-AFT code's single prompt per class.

'paper' is the evaluation prompt: a per-dataset template ("A surface with a {} texture." for DTD ...) with the
released code's class-name handling (``data/paper.json`` documents each choice and its source). 'train' is the
fine-tuning prompt "This is a photo of a {}" with ``refine_classname`` cleaning, the same for every dataset.
"""
from __future__ import annotations

from typing import Any

from pmgaft.prompts._sources import data_json
from pmgaft.prompts.cleaning import NAME_FIXES, clean


def paper_config(dataset: str | None) -> dict[str, Any]:
    """The released code's prompt settings for ``dataset`` (its default for None or sets it does not name)."""
    data = data_json("paper")
    return {**data["default"], **data["datasets"].get(dataset or "", {})}


def _apply(config: dict[str, Any], names: list[str]) -> list[str]:
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
    """The released ``refine_classname``: lower-case, ``_ - /`` -> space."""
    return clean(name, lower=True, replace=data_json("paper")["default"]["replace"])


def build_paper(dataset: str | None, names: list[str]) -> tuple[list[str], list[str]]:
    """(class names, [template]) as the released code evaluates ``dataset``."""
    config = paper_config(dataset)
    if "classnames" in config:  # the released code's own final strings (EuroSAT, PCAM)
        return list(config["classnames"]), [config["template"]]
    return _apply(config, names), [config["template"]]


def build_train(dataset: str | None, names: list[str]) -> tuple[list[str], list[str]]:
    """(class names, [template]) of the released training prompt; ``dataset`` does not matter."""
    config = data_json("paper")["train"]
    return _apply(config, names), [config["template"]]
