"""The prompt-style registry: style name -> how names are cleaned and (classnames, templates) are built."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pmgaft.prompts.ensemble import build_ensemble, clean_ensemble
from pmgaft.prompts.paper import build_paper, build_train, clean_paper
from pmgaft.utils import lookup


@dataclass(frozen=True)
class PromptStyle:
    """A prompt style. ``build(dataset, names)``: dataset is the registered key, or None for an unknown set
    (then the style's generic template is used); names are curated or raw class names in label order."""

    description: str
    clean: Callable[[str], str]
    build: Callable[[str | None, list[str]], tuple[list[str], list[str]]]


PROMPT_STYLES: dict[str, PromptStyle] = {
    "paper": PromptStyle("released PMG-AFT code: one prompt per class, per-dataset template", clean_paper,
                         build_paper),
    "ensemble": PromptStyle("CLIP_benchmark / OpenAI template ensembles", clean_ensemble, build_ensemble),
    "train": PromptStyle("released training prompt 'This is a photo of a {}' for every dataset", clean_paper,
                         build_train),
}


def get_style(style: str) -> PromptStyle:
    """``PROMPT_STYLES[style]`` or a PmgaftError listing the styles."""
    return lookup(PROMPT_STYLES, style, "prompt style")


def clean_classname(name: str, style: str = "paper") -> str:
    """A raw class name (``aquarium_fish``) as ``style`` writes it into prompts, without per-dataset fixes."""
    return get_style(style).clean(name)
