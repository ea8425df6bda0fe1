"""What an export says about the model: where its weights come from, how it was built and trained.

:func:`find_source` takes a run directory (its ``best.safetensors``, else ``last.safetensors``, and its
``config.yaml``) or a weights file (inside a run directory its ``config.yaml`` is found too).
:func:`model_facts` gathers the facts the model card and ``robustness.json`` state, from the loaded model, the
run's settings (or the checkpoint's recorded ones) and open_clip's pretrained table (the base model's hub id).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pmgaft.errors import PmgaftError
from pmgaft.models import NORMALIZATIONS, LoadedClip, hub_name, read_metadata
from pmgaft.models.hub_folder import HF_HUB
from pmgaft.utils import file_sha256

RUN_WEIGHTS = ("best.safetensors", "last.safetensors")  # in the order an export prefers them
RUN_CONFIG = "config.yaml"


@dataclass(frozen=True)
class Source:
    """The weights file to export and, when it belongs to a run, the run's folder and settings."""

    weights: Path
    run: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the training settings ({} when unknown)


def find_source(path: str | Path) -> Source:
    """A run directory or a weights file -> :class:`Source` (a PmgaftError when there is nothing to export)."""
    path = Path(path).expanduser()
    if path.is_dir():
        weights = next((path / n for n in RUN_WEIGHTS if (path / n).is_file()), None)
        if weights is None:
            raise PmgaftError(f"{path} holds no checkpoint ({' or '.join(RUN_WEIGHTS)}): train it first (pmgaft "
                              f"train --out-dir {path}) or pass a weights file.")
        return Source(weights, path, _run_config(path) or _recorded_config(weights))
    if not path.is_file():
        raise PmgaftError(f"{path} does not exist: pass a run directory (holding best.safetensors) or a weights "
                          f"file.")
    # RUN/best.safetensors, or RUN/checkpoints/step-N/weights.safetensors
    run = next((p for p in (path.parent, path.parent.parent.parent) if (p / RUN_CONFIG).is_file()), None)
    return Source(path, run, (_run_config(run) if run else {}) or _recorded_config(path))


def _run_config(run: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load((run / RUN_CONFIG).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise PmgaftError(f"{run / RUN_CONFIG} cannot be read: {err}") from None
    return config if isinstance(config, dict) else {}


def _recorded_config(weights: Path) -> dict[str, Any]:
    """The settings a pmgaft checkpoint records in its metadata ({} for other files)."""
    if weights.suffix != ".safetensors":
        return {}
    try:
        return json.loads(read_metadata(weights).get("pmgaft_config", "{}")) or {}
    except ValueError:
        return {}


@dataclass(frozen=True)
class ModelFacts:
    """Everything the card and robustness.json state about the exported model."""

    name: str  # the model's name in the card (the hub repo's name, or the folder's)
    architecture: str
    quick_gelu: bool
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    normalization: str  # a pmgaft name ("clip", "imagenet") or "custom"
    logit_scale: str | float
    weights_hash: str  # pmgaft's hash of the loaded tensors (what result cards record)
    source_sha256: str  # sha256 of the exported checkpoint file
    source: str  # the checkpoint, as given
    method: str | None
    recipe: str | None
    step: int | None
    train_dataset: str | None
    base: str | None  # what the weights were fine-tuned from ("ViT-B-32 openai", "hf-hub:...")
    base_model: str | None  # its Hugging Face repo id, when it has one
    config: dict[str, Any]


def model_facts(loaded: LoadedClip, source: Source, name: str) -> ModelFacts:
    record, config = loaded.record, source.config
    norm = loaded.normalization or "clip"  # pmgaft's default for weights that do not record theirs
    mean, std = NORMALIZATIONS[norm] if isinstance(norm, str) else norm
    model = str(config.get("model") or record.arch or loaded.name)
    pretrained = config.get("pretrained", record.pretrained)
    pretrained = None if pretrained in (None, "None", "none") else str(pretrained)
    return ModelFacts(
        name=name, architecture=loaded.name, quick_gelu=loaded.quick_gelu, image_size=loaded.image_size,
        mean=tuple(mean), std=tuple(std), normalization=norm if isinstance(norm, str) else "custom",
        logit_scale=loaded.logit_scale if loaded.logit_scale is not None else "model",
        weights_hash=loaded.weights_hash, source_sha256=file_sha256(source.weights), source=str(source.weights),
        method=config.get("method") or record.method, recipe=config.get("recipe") or record.recipe,
        step=record.step, train_dataset=config.get("dataset") or record.train_dataset,
        base=_base(model, pretrained), base_model=base_model_id(model, pretrained), config=config)


def _base(model: str, pretrained: str | None) -> str | None:
    if hub_name(model) is not None and pretrained is None:
        return hub_name(model)
    return f"{model} {pretrained}" if pretrained else None


def base_model_id(model: str, pretrained: str | None) -> str | None:
    """The Hugging Face repo id of the weights a run started from: a hub model's own repo, or the repo open_clip
    downloads tag ``pretrained`` of ``model`` from (``timm/vit_base_patch32_clip_224.openai``); None otherwise."""
    import open_clip

    hub = hub_name(model)
    if hub is not None:
        return hub[len(HF_HUB):] if hub.startswith(HF_HUB) and pretrained is None else None
    if not pretrained:
        return None
    repo = (open_clip.get_pretrained_cfg(model, pretrained) or {}).get("hf_hub", "")
    return "/".join(repo.strip("/").split("/")[:2]) or None
