"""The prompt-style registry: style name -> which names it starts from, how they are cleaned, how prompts are built."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from pmgaft.prompts.agft_train import build_agft_train, clean_agft_train
from pmgaft.prompts.classnames import classname_source, curated_classnames
from pmgaft.prompts.ensemble import build_ensemble, clean_ensemble
from pmgaft.prompts.paper import build_paper, build_train, clean_paper, paper_names, reference_names
from pmgaft.utils import lookup


def _curated(dataset: str) -> tuple[list[str], str]:
    return curated_classnames(dataset), classname_source(dataset)


@dataclass(frozen=True)
class PromptStyle:
    """A prompt style.

    ``names(dataset)``: for a registered dataset key, the names the style starts from (label order) and where
    they come from. ``build(dataset, names)``: dataset is the registered key, or None for an unknown set (then
    the style's generic template is used); names are that list or a loader's raw ``.classes``.
    """

    description: str
    clean: Callable[[str], str]
    build: Callable[[str | None, Sequence[str]], tuple[list[str], list[str]]]
    names: Callable[[str], tuple[list[str], str]]


PROMPT_STYLES: dict[str, PromptStyle] = {
    "paper": PromptStyle("reference evaluations (PROTOCOLS.md §A/§B): one prompt per class, per-dataset template and "
                         "class-name list", clean_paper, build_paper, paper_names),
    "ensemble": PromptStyle("CLIP_benchmark / OpenAI template ensembles", clean_ensemble, build_ensemble, _curated),
    "train": PromptStyle("reference training prompt 'This is a photo of a {}' for every dataset", clean_paper,
                         build_train, reference_names),
    "agft_train": PromptStyle("AGFT's training prompt 'This is a photo of a {}.' on the reference names, '_' and '-' "
                              "as spaces, case kept", clean_agft_train, build_agft_train, reference_names),
}


def get_style(style: str) -> PromptStyle:
    """``PROMPT_STYLES[style]`` or a PmgaftError listing the styles."""
    return lookup(PROMPT_STYLES, style, "prompt style")


def clean_classname(name: str, style: str = "paper") -> str:
    """A raw class name (``aquarium_fish``) as ``style`` writes it into prompts, without per-dataset fixes."""
    return get_style(style).clean(name)
