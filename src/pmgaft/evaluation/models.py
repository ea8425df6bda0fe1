"""Which models a grid evaluates: ``ModelSpec`` (label, architecture, weights) and its provenance record.

A spec is a hub tag / random init (``--model NAME [--pretrained TAG|PATH]``), a checkpoint file
(``--checkpoint [LABEL=]PATH``) or a hub model (``--model`` or ``--checkpoint`` ``hf-hub:ORG/NAME``,
``local-dir:PATH`` or a catalogue name such as ``fare4-clip``: config and weights from open_clip's hub folder).
pmgaft checkpoints carry metadata (architecture, activation, normalization, logit scale, method, recipe, step:
:mod:`pmgaft.models.checkpoint`); foreign checkpoints have none (method "unknown"), and an image-tower-only one
(FARE, the TeCoA lineage's releases) takes its text tower from the base weights given with ``--pretrained``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pmgaft.errors import PmgaftError
from pmgaft.models import (HubModel, LoadedClip, ModelRecord, checkpoint_record, hub_label, hub_name, hub_record,
                           load_clip, resolve_hub)
from pmgaft.utils import file_sha256, seed_everything

_LABEL_OK = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(text: str) -> str:
    """``text`` as one path component: anything but letters, digits and ``._+-`` becomes ``_``."""
    return _LABEL_OK.sub("_", text).strip("._") or "_"


@dataclass(frozen=True)
class ModelSpec:
    """One model of the grid. ``pretrained``: open_clip tag, checkpoint path, or None (random init, seeded; for a
    hub model ``name``: the hub folder's own weights)."""

    label: str
    name: str | None
    pretrained: str | None = None
    is_checkpoint: bool = False
    text_pretrained: str | None = field(default=None, compare=False)  # base weights of an image-tower-only file
    quick_gelu: bool | None = field(default=None, compare=False)  # None: decided from the weights
    trust_checkpoint: bool = field(default=False, compare=False)

    @cached_property
    def hub(self) -> HubModel | None:
        """The resolved hub folder when the weights come from one (fetched into the Hugging Face cache)."""
        return resolve_hub(self.name) if self.pretrained is None and hub_name(self.name) is not None else None

    @cached_property
    def record(self) -> ModelRecord:
        if self.hub is not None:
            return hub_record(self.hub)
        return checkpoint_record(self.pretrained) if self.is_checkpoint and self.pretrained else ModelRecord()

    @property
    def arch(self) -> str:
        arch = self.record.arch or self.name
        if not arch:
            raise PmgaftError(f"checkpoint {self.pretrained} records no architecture: pass it with --model "
                              f"(e.g. --model ViT-B-32).")
        return arch

    @cached_property
    def file_sha256(self) -> str | None:
        if self.hub is not None:
            return file_sha256(self.hub.weights)
        return file_sha256(self.pretrained) if self.is_checkpoint and Path(str(self.pretrained)).is_file() else None

    def method(self) -> dict[str, Any]:
        """method / recipe / step / fine-tuning set as known from the checkpoint ("clip" for unmodified weights)."""
        if not self.is_checkpoint and self.hub is None:
            return {"method": "clip" if self.pretrained else "random-init", "recipe": None, "step": None,
                    "train_dataset": None}
        r = self.record
        return {"method": r.method or "unknown", "recipe": r.recipe, "step": r.step, "train_dataset": r.train_dataset}

    def identity(self) -> dict[str, Any]:
        """What determines the model without loading it (part of every cell's fingerprint); for a hub
        architecture also its ``open_clip_config.json``, which the weights file's sha256 does not cover (its
        ``quick_gelu`` decides the activation)."""
        identity = {"label": self.label, "arch": self.arch, "pretrained": self.pretrained,
                    "sha256": self.file_sha256, "text_pretrained": self.text_pretrained, "quick_gelu": self.quick_gelu}
        if hub_name(self.arch) is not None:
            identity["hub_config"] = (self.hub or resolve_hub(self.arch, weights=False)).config
        return identity

    def load(self, *, device: str, seed: int) -> LoadedClip:
        seed_everything(seed)  # random-init models are the same in every run
        text = self.text_pretrained if self.is_checkpoint else None
        return load_clip(self.arch, self.pretrained, device=device, text_pretrained=text, quick_gelu=self.quick_gelu,
                         trust_checkpoint=self.trust_checkpoint)


def parse_checkpoint(text: str, *, arch: str | None, text_pretrained: str | None = None, **options: Any) -> ModelSpec:
    """``[LABEL=]PATH`` -> a spec; the default label is ``<run dir>-<file stem>`` (``pmgaft-best``). PATH may be a
    hub model (``hf-hub:ORG/NAME``, ``local-dir:PATH``, a catalogue name): its label defaults to its short name."""
    label, sep, path = text.partition("=")
    if not sep or not label or "/" in label or ":" in label:
        label, path = "", text
    hub = hub_name(path)
    if hub is not None:
        return ModelSpec(safe_name(label or hub_label(hub)), hub, None, **options)
    p = Path(path).expanduser()
    label = label or (f"{p.parent.name}-{p.stem}" if p.parent.name else p.stem)
    return ModelSpec(safe_name(label), arch, str(p), is_checkpoint=True, text_pretrained=text_pretrained, **options)


def _is_file(value: str | None) -> bool:
    return value is not None and ("/" in value or Path(value).expanduser().is_file())


def _check_pretrained(model: str | None, pretrained: str | None) -> None:
    if pretrained is not None and hub_name(pretrained) is not None:
        raise PmgaftError(f"--pretrained {pretrained}: a hub model is named with --model or --checkpoint "
                          f"(--pretrained takes an open_clip tag or a weights file).")
    if pretrained is not None and model and hub_name(model) is not None and not _is_file(pretrained):
        raise PmgaftError(f"--model {model} carries its own weights: drop --pretrained {pretrained} (or give a "
                          f"weights file of its architecture).")


def model_specs(model: str | None, pretrained: str | None, checkpoints: list[str], label: str | None = None, *,
                quick_gelu: bool | None = None, trust_checkpoint: bool = False) -> list[ModelSpec]:
    """The grid's models: the base model (when pretrained is given or there is no checkpoint) + checkpoints.

    ``pretrained`` (a tag or a file) is also the base weights of image-tower-only checkpoints.
    """
    options = {"quick_gelu": quick_gelu, "trust_checkpoint": trust_checkpoint}
    _check_pretrained(model, pretrained)
    model = hub_name(model) or model
    specs: list[ModelSpec] = []
    if model and (pretrained is not None or not checkpoints):
        tag = None if pretrained is None else (Path(pretrained).stem if _is_file(pretrained) else pretrained)
        name = hub_label(model) if hub_name(model) is not None else model
        default = name if tag is None else f"{name}_{tag}"
        specs.append(ModelSpec(safe_name(label or default), model, pretrained, is_checkpoint=_is_file(pretrained),
                               **options))
    specs += [parse_checkpoint(c, arch=model, text_pretrained=pretrained, **options) for c in checkpoints]
    if not specs:
        raise PmgaftError("no model to evaluate: pass --model NAME [--pretrained TAG|PATH] and/or "
                          "--checkpoint [LABEL=]PATH.")
    labels = [s.label for s in specs]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise PmgaftError(f"model labels must be unique, got {dupes} twice: name them with LABEL=PATH.")
    return specs
