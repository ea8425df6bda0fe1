"""Prompts and class names as data: ``get_prompts(dataset, style)`` -> ``Prompts(classnames, templates)``.

Styles (``PROMPT_STYLES``): ``paper`` = the released PMG-AFT code's single prompt per dataset, ``ensemble`` =
CLIP_benchmark / OpenAI template ensembles, ``train`` = the fine-tuning prompt "This is a photo of a {}".
Class names are curated per dataset in torchvision's label order (``classnames.py`` says where each list comes
from); the JSON files in ``data/`` hold what no installed package ships.
"""
from pmgaft.prompts.classnames import (
    ALIASES,
    CLASSNAME_SOURCES,
    DATASETS,
    FOLDER_PREFIX,
    curated_classnames,
    known_datasets,
    resolve_dataset,
)
from pmgaft.prompts.cleaning import NAME_FIXES
from pmgaft.prompts.core import Prompts, get_prompts
from pmgaft.prompts.styles import PROMPT_STYLES, PromptStyle, clean_classname

__all__ = [
    "ALIASES",
    "CLASSNAME_SOURCES",
    "DATASETS",
    "FOLDER_PREFIX",
    "NAME_FIXES",
    "PROMPT_STYLES",
    "PromptStyle",
    "Prompts",
    "clean_classname",
    "curated_classnames",
    "get_prompts",
    "known_datasets",
    "resolve_dataset",
]
