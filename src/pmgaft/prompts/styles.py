"""The prompt-style registry: style name -> which names it starts from, how they are cleaned, how prompts are built."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from pmgaft.prompts.agft_train import build_agft_train, clean_agft_train
from pmgaft.prompts.classnames import classname_source, curated_classnames
from pmgaft.prompts.ensemble import build_ensemble, clean_ensemble
from pmgaft.prompts.paper import PAPER, build_train, clean_paper, reference_names
from pmgaft.prompts.reference import LabelMap, ReferenceStyle
from pmgaft.utils import lookup


def _curated(dataset: str) -> tuple[list[str], str]:
    return curated_classnames(dataset), classname_source(dataset)


@dataclass(frozen=True)
class PromptStyle:
    """A prompt style.

    ``names(dataset)``: for a registered dataset key, the names the style starts from (label order) and where
    they come from. ``build(dataset, names)``: dataset is the registered key, or None for an unknown set (then
    the style's generic template is used); names are that list or a loader's raw ``.classes``.
    ``relabel(dataset)``: the style's label map of a registered set (None: the data's own labels).
    ``loader_names(dataset)``: build from the loader's ``.classes`` when they are given, not from ``names``.
    ``uses_shipped_text``: class names and templates that come with the data (a CLIP_benchmark webdataset's text
    files) replace the style's own, as CLIP_benchmark itself uses them.
    """

    description: str
    clean: Callable[[str], str]
    build: Callable[[str | None, Sequence[str]], tuple[list[str], list[str]]]
    names: Callable[[str], tuple[list[str], str]]
    relabel: Callable[[str], LabelMap | None] = lambda dataset: None
    loader_names: Callable[[str], bool] = lambda dataset: False
    uses_shipped_text: bool = False

    @classmethod
    def reference(cls, description: str, style: ReferenceStyle) -> "PromptStyle":
        """A style read from a reference data file (:mod:`pmgaft.prompts.reference`)."""
        return cls(description, style.clean, style.build, style.names, style.relabel, style.loader_names)


AGFT = ReferenceStyle("agft")
TTC = ReferenceStyle("ttc")


PROMPT_STYLES: dict[str, PromptStyle] = {
    "paper": PromptStyle.reference("reference evaluations (the 16-set table's re-run and the released PMG-AFT code): "
                                   "one prompt per class, per-dataset template and class-name list", PAPER),
    "ensemble": PromptStyle("CLIP_benchmark / OpenAI template ensembles (a CLIP_benchmark webdataset's own "
                            "classnames.txt and templates when the data ships them)", clean_ensemble,
                            build_ensemble, _curated, uses_shipped_text=True),
    "train": PromptStyle("reference training prompt 'This is a photo of a {}' for every dataset", clean_paper,
                         build_train, reference_names),
    "agft": PromptStyle.reference("AGFT's evaluation (its clip_dataset.py): one prompt per class, per-dataset "
                                  "template and names; Caltech-101 'Faces' + 'Faces_easy' scored as one 'person'",
                                  AGFT),
    "ttc": PromptStyle.reference("the test-time-counterattack evaluation: one prompt per class, 'This is a photo of "
                                 "a {}.' on the loaders' raw names unless the set carries its own prompts; "
                                 "999-class ImageNet", TTC),
    "agft_train": PromptStyle("AGFT's training prompt 'This is a photo of a {}.' on the reference names, '_' and '-' "
                              "as spaces, case kept", clean_agft_train, build_agft_train, reference_names),
}


def get_style(style: str) -> PromptStyle:
    """``PROMPT_STYLES[style]`` or a PmgaftError listing the styles."""
    return lookup(PROMPT_STYLES, style, "prompt style")


def clean_classname(name: str, style: str = "paper") -> str:
    """A raw class name (``aquarium_fish``) as ``style`` writes it into prompts, without per-dataset fixes."""
    return get_style(style).clean(name)
