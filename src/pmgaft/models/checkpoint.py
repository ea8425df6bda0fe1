"""pmgaft's weights format: the full CLIP ``state_dict`` as safetensors, plus string metadata that rebuilds it.

A pmgaft checkpoint is loadable by :func:`pmgaft.models.load_clip` (which reads the metadata) and by
``open_clip.create_model_and_transforms(name, pretrained=path)`` (which ignores it). Metadata keys (all strings):

=======================  ======================================================================================
``pmgaft_model``         open_clip architecture (``ViT-B-32``)
``pmgaft_quick_gelu``    ``true``/``false``: the activation the weights were trained with (OpenAI CLIP: QuickGELU)
``pmgaft_normalization`` input mean/std the model was trained with (``clip`` or ``imagenet``)
``pmgaft_logit_scale``   zero-shot logit scale it was trained with (``model`` or a number; 1 = raw cosine)
``pmgaft_method`` ...    provenance: method, recipe, starting weights, training set, pmgaft version, ``step``,
                         ``epoch``, validation scores, ``pmgaft_config`` (JSON of the settings)
=======================  ======================================================================================

Checkpoints written before the activation/normalization keys existed carry them inside ``pmgaft_config``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pmgaft.errors import PmgaftError
from pmgaft.utils import atomic_write

FORMAT = "pmgaft.weights/2"
Normalization = tuple[tuple[float, ...], tuple[float, ...]]  # (mean, std)


@dataclass(frozen=True)
class ModelRecord:
    """What a checkpoint's metadata says about the model it holds (None: not recorded)."""

    arch: str | None = None
    quick_gelu: bool | None = None
    normalization: str | Normalization | None = None  # a NORMALIZATIONS name, or (mean, std) of a hub config
    logit_scale: str | float | None = None
    method: str | None = None
    recipe: str | None = None
    step: int | None = None
    train_dataset: str | None = None
    pretrained: str | None = None


def _bool(text: str | None) -> bool | None:
    return None if text is None else text.strip().lower() in ("1", "true", "yes")


def _scale(value: Any) -> str | float | None:
    if value is None or value == "model":
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def weights_metadata(*, model: str, quick_gelu: bool, normalization: str, logit_scale: str | float,
                     provenance: dict[str, Any], scores: dict[str, float] | None = None) -> dict[str, str]:
    """String metadata for :func:`save_weights`; ``provenance`` values are stringified (dicts as JSON)."""
    from pmgaft import __version__

    meta = {"format": "pt", "pmgaft_format": FORMAT, "pmgaft_version": __version__, "pmgaft_model": model,
            "pmgaft_quick_gelu": str(bool(quick_gelu)).lower(), "pmgaft_normalization": normalization,
            "pmgaft_logit_scale": str(logit_scale)}
    for key, value in provenance.items():
        meta[key] = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    meta.update({k: f"{v:.6f}" for k, v in (scores or {}).items()})
    return meta


def save_weights(path: str | Path, model: nn.Module, metadata: dict[str, str]) -> Path:
    """The full CLIP state_dict (contiguous CPU copies) as safetensors with string ``metadata``, atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors string metadata of ``path`` ({} for a safetensors file without any)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as err:  # SafetensorError: truncated or not a safetensors file
        raise PmgaftError(f"checkpoint {path} is not a readable safetensors file: {err}") from None


def model_record(metadata: dict[str, str]) -> ModelRecord:
    """Parse pmgaft metadata (any version) into a :class:`ModelRecord`; foreign files give an empty record."""
    if not any(k.startswith("pmgaft_") for k in metadata):
        return ModelRecord()
    try:
        config = json.loads(metadata.get("pmgaft_config", "{}")) or {}
    except ValueError:
        config = {}
    step = metadata.get("step", "")
    return ModelRecord(
        arch=metadata.get("pmgaft_model") or config.get("model"),
        quick_gelu=_bool(metadata.get("pmgaft_quick_gelu")),
        normalization=metadata.get("pmgaft_normalization") or config.get("normalization"),
        logit_scale=_scale(metadata.get("pmgaft_logit_scale", config.get("logit_scale"))),
        method=metadata.get("pmgaft_method"), recipe=metadata.get("pmgaft_recipe"),
        step=int(step) if step.isdigit() else None, train_dataset=metadata.get("pmgaft_dataset"),
        pretrained=metadata.get("pmgaft_pretrained"))


def checkpoint_record(path: str | Path) -> ModelRecord:
    """The :class:`ModelRecord` of a weights file (empty for non-safetensors and foreign files)."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return ModelRecord()
    return model_record(read_metadata(path))


def all_finite(model_or_state: nn.Module | dict[str, torch.Tensor]) -> bool:
    """True when every floating-point tensor of a model / state_dict is finite (no NaN or inf)."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    return all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())
