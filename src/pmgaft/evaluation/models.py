"""Which models a grid evaluates: ``ModelSpec`` (label, architecture, weights) and its provenance record.

A spec is a hub tag / random init (``--model NAME [--pretrained TAG|PATH]``) or a checkpoint file
(``--checkpoint [LABEL=]PATH``). pmgaft training checkpoints carry safetensors metadata (``pmgaft_method``,
``pmgaft_recipe``, ``pmgaft_model``, ``step``); foreign checkpoints have none (method "unknown").
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pmgaft.errors import PmgaftError
from pmgaft.models import LoadedClip, load_clip
from pmgaft.models.checkpoint import read_metadata
from pmgaft.utils import file_sha256, seed_everything

_LABEL_OK = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(text: str) -> str:
    """``text`` as one path component: anything but letters, digits and ``._+-`` becomes ``_``."""
    return _LABEL_OK.sub("_", text).strip("._") or "_"


def checkpoint_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors string metadata of ``path`` ({} for other formats or files without any)."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return {}
    return read_metadata(path)


@dataclass(frozen=True)
class ModelSpec:
    """One model of the grid. ``pretrained``: open_clip tag, checkpoint path, or None (random init, seeded)."""

    label: str
    name: str | None
    pretrained: str | None = None
    is_checkpoint: bool = False
    text_pretrained: str | None = field(default=None, compare=False)

    @cached_property
    def metadata(self) -> dict[str, str]:
        return checkpoint_metadata(self.pretrained) if self.is_checkpoint and self.pretrained else {}

    @property
    def arch(self) -> str:
        arch = self.metadata.get("pmgaft_model") or self.name
        if not arch:
            raise PmgaftError(f"checkpoint {self.pretrained} has no 'pmgaft_model' metadata: pass its architecture "
                              f"with --model (e.g. --model ViT-B-32).")
        return arch

    @cached_property
    def file_sha256(self) -> str | None:
        return file_sha256(self.pretrained) if self.is_checkpoint and Path(str(self.pretrained)).is_file() else None

    def method(self) -> dict[str, Any]:
        """method / recipe / step / fine-tuning set as known from the checkpoint ("clip" for unmodified weights)."""
        if not self.is_checkpoint:
            return {"method": "clip" if self.pretrained else "random-init", "recipe": None, "step": None,
                    "train_dataset": None}
        md = self.metadata
        return {"method": md.get("pmgaft_method", "unknown"), "recipe": md.get("pmgaft_recipe"),
                "step": int(md["step"]) if str(md.get("step", "")).isdigit() else md.get("step"),
                "train_dataset": md.get("pmgaft_dataset")}

    def identity(self) -> dict[str, Any]:
        """What determines the weights without loading them (part of every cell's fingerprint)."""
        return {"label": self.label, "arch": self.arch, "pretrained": self.pretrained, "sha256": self.file_sha256,
                "text_pretrained": self.text_pretrained}  # an image-tower-only checkpoint's text tower

    def load(self, *, device: str, seed: int) -> LoadedClip:
        seed_everything(seed)  # random-init models are the same in every run
        if self.is_checkpoint:
            path = Path(str(self.pretrained))
            if not path.is_file():
                raise PmgaftError(f"checkpoint {path} does not exist (--checkpoint [LABEL=]PATH).")
            return load_clip(self.arch, path, device=device, text_pretrained=self.text_pretrained)
        return load_clip(self.arch, self.pretrained, device=device)


def parse_checkpoint(text: str, *, arch: str | None, text_pretrained: str | None = None) -> ModelSpec:
    """``[LABEL=]PATH`` -> a spec; the default label is ``<run dir>-<file stem>`` (``pmgaft-best``)."""
    label, sep, path = text.partition("=")
    if not sep or not label or "/" in label:
        label, path = "", text
    p = Path(path).expanduser()
    label = label or (f"{p.parent.name}-{p.stem}" if p.parent.name else p.stem)
    return ModelSpec(safe_name(label), arch, str(p), is_checkpoint=True, text_pretrained=text_pretrained)


def model_specs(model: str | None, pretrained: str | None, checkpoints: list[str], label: str | None = None
                ) -> list[ModelSpec]:
    """The grid's models: the base model (when pretrained is given or there is no checkpoint) + checkpoints."""
    specs: list[ModelSpec] = []
    if model and (pretrained is not None or not checkpoints):
        tag = None if pretrained is None else (Path(pretrained).stem if "/" in pretrained else pretrained)
        default = model if tag is None else f"{model}_{tag}"
        is_file = pretrained is not None and Path(pretrained).expanduser().is_file()
        specs.append(ModelSpec(safe_name(label or default), model, pretrained, is_checkpoint=is_file))
    tag = pretrained if pretrained and "/" not in pretrained and not Path(pretrained).is_file() else None
    specs += [parse_checkpoint(c, arch=model, text_pretrained=tag) for c in checkpoints]
    if not specs:
        raise PmgaftError("no model to evaluate: pass --model NAME [--pretrained TAG|PATH] and/or "
                          "--checkpoint [LABEL=]PATH.")
    labels = [s.label for s in specs]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise PmgaftError(f"model labels must be unique, got {dupes} twice: name them with LABEL=PATH.")
    return specs
