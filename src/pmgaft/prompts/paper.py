"""The 'paper' and 'train' prompt styles: the reference evaluations' single prompt per class.

'paper' is the evaluation prompt of the tga-zsr and official-code protocols (docs/protocols.md): a per-dataset template
("A surface with a {} texture." for DTD ...) applied to the reference's own class-name list with its clean-up
(``data/paper.json`` documents each choice and its source; read by :class:`~pmgaft.prompts.reference.ReferenceStyle`).
'train' is the fine-tuning prompt "This is a photo of a {}" with ``refine_classname`` cleaning on the same lists,
for every dataset.
"""
from __future__ import annotations

from typing import Any, Sequence

from pmgaft.prompts._sources import data_json
from pmgaft.prompts.cleaning import clean
from pmgaft.prompts.reference import ReferenceStyle, apply_rule, imagenet_reference_names

PAPER = ReferenceStyle("paper")
__all__ = ["PAPER", "build_paper", "build_train", "clean_paper", "imagenet_reference_names", "paper_config",
           "paper_names", "reference_names"]


def paper_config(dataset: str | None) -> dict[str, Any]:
    """The reference prompt settings for ``dataset`` (its default for None or sets it does not name)."""
    return PAPER.config(dataset)


def reference_names(dataset: str) -> tuple[list[str], str]:
    """The list the reference rule starts from for a registered ``dataset``, and its source in one line."""
    names, source, _ = PAPER.provided(dataset)
    return names, source


def paper_names(dataset: str) -> tuple[list[str], str]:
    """``reference_names``, with the source of the verbatim strings for the sets that have them."""
    return PAPER.names(dataset)


def clean_paper(name: str) -> str:
    """The reference ``refine_classname``: lower-case, ``_ - /`` -> space."""
    return clean(name, lower=True, replace=PAPER.config(None)["replace"])


def build_paper(dataset: str | None, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(class names, [template]) as the reference evaluates ``dataset``, from its raw ``names`` in label order
    (a loader's ``.classes``; for ImageNet/TinyImageNet :func:`imagenet_reference_names` of its ``.wnids``)."""
    return PAPER.build(dataset, names)


def build_train(dataset: str | None, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(class names, [template]) of the reference training prompt; ``dataset`` does not matter."""
    config = data_json("paper")["train"]
    return apply_rule(config, names), [config["template"]]
