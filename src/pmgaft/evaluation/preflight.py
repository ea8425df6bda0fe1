"""Checks that run before any model or data is loaded, so a typo never costs a model load or leaves error cards.

One :class:`PmgaftError` lists every problem found: an unwritable results folder, unknown datasets, splits a
dataset does not have, data missing under the data root (or a hub copy missing from the Hugging Face cache, one
that holds other images than the protocol scores, or one whose class names the protocol's prompts cannot use),
checkpoints that are missing, unreadable or unsafe to unpickle, unknown architectures or hub tags; with a test-time
defence, attacks it cannot wrap and fine-tuned models whose original image tower (the defence's tau reference) is
unknown or unloadable. Missing data can instead be accepted (``allow_missing``): those datasets then get error
cards and the rest of the grid runs.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pmgaft.data import DATASETS, HUB_SOURCES
from pmgaft.data.folder import PREFIX as FOLDER_PREFIX
from pmgaft.data.sources import DEFAULT_SOURCE, choose_source
from pmgaft.data.spec import DatasetSpec
from pmgaft.errors import PmgaftError
from pmgaft.evaluation.defended import DefenceConfig, defence_problems, reference_spec
from pmgaft.evaluation.models import ModelSpec
from pmgaft.evaluation.protocols import Protocol
from pmgaft.models.files import probe_weights
from pmgaft.utils import did_you_mean


def check_writable(folder: Path, *, what: str = "results folder", flag: str = "--out") -> str | None:
    """None when files can be created in ``folder`` (created if needed), else what is wrong (``what``: the folder
    in words, ``flag``: the option that chooses another)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".pmgaft-write-test-")
        os.close(fd)
        os.unlink(probe)
        return None
    except OSError as err:
        return f"{what} {str(folder)!r} is not writable ({err.strerror or err}): choose another with {flag}"


def dataset_problems(protocol: Protocol, data_root: Path, download: bool,
                     source: str = DEFAULT_SOURCE) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """(typos and impossible splits, {dataset: why its data is missing}, {dataset: "torchvision" or "hub"}).

    ``source`` (``--source``) picks each set's copy (:func:`pmgaft.data.sources.choose_source`); a hub copy that
    holds other images than the protocol scores, or lacks the loader's class names its prompts are written with,
    counts as missing, with the sentence saying what to get instead.
    """
    typos: list[str] = []
    missing: dict[str, str] = {}
    chosen: dict[str, str] = {}
    for name in protocol.datasets:
        if name.startswith(FOLDER_PREFIX):
            if not Path(name[len(FOLDER_PREFIX):]).expanduser().is_dir():
                missing[name] = f"folder {name[len(FOLDER_PREFIX):]!r} does not exist"
            continue
        spec = DATASETS.get(name)
        if spec is None:
            typos.append(f"unknown dataset {name!r}.{did_you_mean(name, DATASETS)}")
            continue
        split = protocol.split_for(name)
        if split not in spec.splits:
            typos.append(f"dataset {name!r} has no split {split!r} (valid: {', '.join(spec.splits)})")
            continue
        choice = choose_source(spec, split, data_root, source, download=download,
                               benchmark_split=protocol.benchmark_splits, who=f"protocol {protocol.name!r}",
                               prompts=protocol.prompts)
        if choice.source is None:
            missing[name] = choice.why_not
        else:
            chosen[name] = choice.source
    return typos, missing, chosen


def model_problems(models: list[ModelSpec], trust: bool) -> list[str]:
    from pmgaft.models import hub_name, list_models, resolve_hub

    known = set(list_models())
    problems = []
    for spec in models:
        try:
            if spec.is_checkpoint:
                probe_weights(str(spec.pretrained), trust=trust)
            if spec.hub is not None:  # fetches the hub model's files into the cache (or says what is missing)
                probe_weights(spec.hub.weights, trust=trust)
            if spec.text_pretrained and Path(str(spec.text_pretrained)).expanduser().is_file():
                probe_weights(str(spec.text_pretrained), trust=trust)
            arch = spec.arch
            if hub_name(arch) is not None:
                resolve_hub(arch, weights=False)  # a checkpoint of a hub architecture: its config must be there
            elif arch not in known:
                problems.append(f"{spec.label}: unknown model {arch!r}.{did_you_mean(arch, known)}")
            elif spec.pretrained and not spec.is_checkpoint:
                import open_clip

                tags = open_clip.list_pretrained_tags_by_model(arch)
                if spec.pretrained not in tags:
                    problems.append(f"{spec.label}: model {arch!r} has no pretrained weights tagged "
                                    f"{spec.pretrained!r}.{did_you_mean(spec.pretrained, tags)}")
        except PmgaftError as err:
            problems.append(f"{spec.label}: {err}")
    return problems


def _reference(spec: ModelSpec, defence: DefenceConfig) -> ModelSpec | None:
    try:
        return reference_spec(spec, defence)
    except PmgaftError:  # reported by defence_problems
        return None


def preflight(models: list[ModelSpec], protocol: Protocol, *, out: Path, data_root: Path, download: bool,
              trust_checkpoint: bool = False, allow_missing: bool = False,
              source: str = DEFAULT_SOURCE,
              defence: DefenceConfig | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """Raise one PmgaftError listing every problem; returns the datasets accepted as missing (``allow_missing``)
    and the copy each other registered dataset is read from (``{name: "torchvision" or "hub"}``)."""
    problems = [p for p in [check_writable(out)] if p]
    typos, missing, chosen = dataset_problems(protocol, data_root, download, source)
    problems += typos + model_problems(models, trust_checkpoint)
    problems += defence_problems(models, protocol, defence)
    if defence is not None:  # the original image towers the defence's tau is computed with
        references = {r.pretrained: r for m in models for r in [_reference(m, defence)] if r is not None}
        problems += model_problems(list(references.values()), trust_checkpoint)
    if missing and not allow_missing:
        problems += [f"{why}" for why in missing.values()]
        if len(missing) < len(protocol.datasets):
            problems.append(f"to evaluate the other datasets anyway (the missing ones get error cards), pass "
                            f"--allow-missing; `pmgaft datasets --data-root {data_root}` shows what is present")
    if problems:
        head = "cannot start: " if len(problems) == 1 else f"cannot start, {len(problems)} problems:\n  - "
        raise PmgaftError(head + "\n  - ".join(problems))
    return missing, chosen
