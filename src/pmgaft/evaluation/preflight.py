"""Checks that run before any model or data is loaded, so a typo never costs a model load or leaves error cards.

One :class:`PmgaftError` lists every problem found: an unwritable results folder, unknown datasets, splits a
dataset does not have, data missing under the data root, checkpoints that are missing, unreadable or unsafe to
unpickle, unknown architectures or hub tags; with a test-time defence, attacks it cannot wrap and fine-tuned
models whose original image tower (the defence's tau reference) is unknown or unloadable. Missing data can instead be accepted (``allow_missing``): those
datasets then get error cards and the rest of the grid runs.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pmgaft.data import DATASETS
from pmgaft.data.folder import PREFIX as FOLDER_PREFIX
from pmgaft.errors import PmgaftError
from pmgaft.evaluation.defended import DefenceConfig, defence_problems, reference_spec
from pmgaft.evaluation.models import ModelSpec
from pmgaft.evaluation.protocols import Protocol
from pmgaft.models.files import probe_weights
from pmgaft.utils import did_you_mean


def check_writable(folder: Path) -> str | None:
    """None when files can be created in ``folder`` (created if needed), else what is wrong."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".pmgaft-write-test-")
        os.close(fd)
        os.unlink(probe)
        return None
    except OSError as err:
        return f"results folder {str(folder)!r} is not writable ({err.strerror or err}): choose another with --out"


def dataset_problems(protocol: Protocol, data_root: Path, download: bool) -> tuple[list[str], dict[str, str]]:
    """(typos and impossible splits, {dataset: why its data is missing})."""
    typos: list[str] = []
    missing: dict[str, str] = {}
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
        elif spec.locate(data_root, split) is None and not (download and spec.download):
            missing[name] = str(spec.not_found(data_root, split))
    return typos, missing


def model_problems(models: list[ModelSpec], trust: bool) -> list[str]:
    from pmgaft.models import list_models

    known = set(list_models())
    problems = []
    for spec in models:
        try:
            if spec.is_checkpoint:
                probe_weights(str(spec.pretrained), trust=trust)
            if spec.text_pretrained and Path(str(spec.text_pretrained)).expanduser().is_file():
                probe_weights(str(spec.text_pretrained), trust=trust)
            arch = spec.arch
            if arch not in known:
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
              defence: DefenceConfig | None = None) -> dict[str, str]:
    """Raise one PmgaftError listing every problem; returns the datasets accepted as missing (``allow_missing``)."""
    problems = [p for p in [check_writable(out)] if p]
    typos, missing = dataset_problems(protocol, data_root, download)
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
    return missing
