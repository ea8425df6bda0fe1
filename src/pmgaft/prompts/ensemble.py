"""The 'ensemble' prompt style: CLIP_benchmark's / OpenAI's template ensembles per dataset.

``data/ensemble.json`` maps each dataset to a template source (``provider:argument``); the providers below read
the installed packages (clip-benchmark's JSON, open_clip's metadata) or our own hand-written lists.
"""
from __future__ import annotations

from typing import Callable

from pmgaft.prompts._sources import clip_benchmark_templates, data_json, open_clip_metadata
from pmgaft.prompts.cleaning import clean
from pmgaft.utils import lookup

GENERIC = "_generic"  # the source used for datasets without one (folder:PATH ...)


def _here(_: str, dataset: str) -> list[str]:
    return list(data_json("ensemble")["templates"][dataset])


# provider name -> (argument, dataset) -> templates
TEMPLATE_PROVIDERS: dict[str, Callable[[str, str], list[str]]] = {
    "clip_benchmark": lambda key, _: clip_benchmark_templates(key),
    "open_clip": lambda attr, _: open_clip_metadata(attr),
    "here": _here,
}


def ensemble_templates(dataset: str | None) -> list[str]:
    """The template ensemble of ``dataset`` (the generic one for None and datasets without a source)."""
    sources: dict[str, str] = data_json("ensemble")["sources"]
    key = dataset if dataset in sources else GENERIC
    provider, _, argument = sources[key].partition(":")
    return lookup(TEMPLATE_PROVIDERS, provider, "template provider")(argument, key)


def clean_ensemble(name: str) -> str:
    """clip-benchmark's cleaning: ``_`` -> space; case, punctuation and years kept."""
    return clean(name, lower=False, replace="_")


def build_ensemble(dataset: str | None, names: list[str]) -> tuple[list[str], list[str]]:
    """(class names, templates) for CLIP-style prompt ensembling."""
    return [clean_ensemble(n) for n in names], ensemble_templates(dataset)
