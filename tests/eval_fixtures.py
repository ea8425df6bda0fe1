"""Helpers for the evaluation tests: a data root with miniature datasets, checkpoints, result-card access."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from dataset_fixtures import FIXTURES


def data_root(tmp: Path, *names: str) -> Path:
    """A data root holding the format-faithful fixtures of ``names`` (plus an empty folder ``empty/``)."""
    root = tmp / "data"
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        FIXTURES[name](root)
    (root / "empty").mkdir(exist_ok=True)
    return root


def micro_checkpoint(path: Path, seed: int = 1, model: str = "pmgaft-micro", **metadata: str) -> Path:
    """A full-CLIP safetensors checkpoint of ``model`` with pmgaft metadata, as training writes them."""
    from safetensors.torch import save_file

    from pmgaft.models import load_clip

    torch.manual_seed(seed)
    sd = {k: v.contiguous() for k, v in load_clip(model).model.state_dict().items()}
    meta = {"pmgaft_method": "pmgaft", "pmgaft_recipe": "paper", "pmgaft_model": model, "step": "10"}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path), metadata={**meta, **metadata})
    return path


def cards(out: Path) -> dict[str, dict[str, Any]]:
    """Result cards under ``out`` keyed by their path relative to ``out``."""
    return {str(p.relative_to(out)): json.loads(p.read_text()) for p in sorted(out.rglob("*.json"))
            if not p.name.endswith(".samples.json") and p.name != "clean.json" and "report" not in p.parts}


def without_run(card: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in card.items() if k != "run"}
