"""Prompts and class names as data: ``get_prompts(dataset, style)`` -> ``Prompts(classnames, templates)``.

Styles (``PROMPT_STYLES``): ``paper`` = the reference evaluations' single prompt per class (docs/protocols.md,
tga-zsr: per-dataset template and class-name list, e.g. the reference ImageNet name list), ``ensemble`` =
CLIP_benchmark / OpenAI template ensembles on curated names, ``train`` = the fine-tuning prompt "This is a photo
of a {}" on the reference lists, ``agft`` / ``ttc`` = the single prompts of AGFT's and the test-time-counterattack
evaluations (which may merge or drop classes: ``Prompts.label_map``). Lists are in torchvision's label order;
``Prompts.names_source`` says where each comes from; the JSON files in ``data/`` hold what no installed package
ships.
"""
from pmgaft.prompts.classnames import (
    ALIASES,
    CLASSNAME_SOURCES,
    DATASETS,
    FOLDER_PREFIX,
    classname_source,
    curated_classnames,
    known_datasets,
    resolve_dataset,
)
from pmgaft.prompts.cleaning import NAME_FIXES
from pmgaft.prompts.core import Prompts, ShippedText, get_prompts
from pmgaft.prompts.paper import imagenet_reference_names
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
    "ShippedText",
    "classname_source",
    "clean_classname",
    "curated_classnames",
    "get_prompts",
    "imagenet_reference_names",
    "known_datasets",
    "resolve_dataset",
]
