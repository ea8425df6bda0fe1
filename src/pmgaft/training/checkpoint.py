"""Checkpoints: weights as safetensors in open_clip's key layout, plus a training-state file for ``--resume``.

Files under the run directory (all written atomically: temp file + rename):

* ``last.safetensors`` / ``best.safetensors`` -- pmgaft's weights format (:mod:`pmgaft.models.checkpoint`):
  the full CLIP state_dict plus the metadata that rebuilds the model exactly (architecture, activation,
  normalization, logit scale) and its provenance (method, recipe, step, validation scores, config).
* ``train_state.pt`` -- optimizer, scheduler, grad scaler, step, RNG states (torch, CUDA, numpy, python), the
  best validation score so far, and the result-determining config (a resume with other settings is refused).
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pmgaft.errors import PmgaftError
from pmgaft.models import checkpoint as models_checkpoint
from pmgaft.training.config import TrainConfig
from pmgaft.utils import atomic_torch_save

LAST, BEST, STATE = "last.safetensors", "best.safetensors", "train_state.pt"
CONFIG, LOG, TENSORBOARD = "config.yaml", "log.jsonl", "tb"


def weights_metadata(config: TrainConfig, step: int, epoch: float, scores: dict[str, float], *,
                     quick_gelu: bool) -> dict[str, str]:
    """pmgaft's weights metadata (:mod:`pmgaft.models.checkpoint`) for a checkpoint of this run."""
    return models_checkpoint.weights_metadata(
        model=config.model, quick_gelu=quick_gelu, normalization=config.normalization,
        logit_scale=config.logit_scale, scores=scores,
        provenance={"pmgaft_method": config.method, "pmgaft_recipe": config.recipe,
                    "pmgaft_pretrained": str(config.pretrained), "pmgaft_dataset": config.dataset, "step": step,
                    "epoch": f"{epoch:.4f}", "pmgaft_config": config.result_keys()})


save_weights = models_checkpoint.save_weights
read_metadata = models_checkpoint.read_metadata


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: Path, *, step: int, config: TrainConfig, optimizer: torch.optim.Optimizer,
               scheduler: Any, scaler: Any, best: dict[str, float] | None) -> Path:
    return atomic_torch_save(path, {"step": step, "config": config.result_keys(), "best": best,
                                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                    "scaler": scaler.state_dict(), "rng": rng_state()})


def load_state(out_dir: Path, config: TrainConfig) -> dict[str, Any]:
    """The training state of ``out_dir``, checked against ``config`` and ``last.safetensors``."""
    path = out_dir / STATE
    if not path.is_file() or not (out_dir / LAST).is_file():
        raise PmgaftError(f"cannot resume: {out_dir} has no {STATE} and {LAST} (start without --resume).")
    state = torch.load(path, map_location="cpu", weights_only=False)
    saved, now = state["config"], config.result_keys()
    diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if diff:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in diff[:6])
        raise PmgaftError(f"cannot resume {out_dir} with a different config ({details}); use the saved settings "
                          f"(see {out_dir / CONFIG}) or a new --out-dir.")
    step = int(read_metadata(out_dir / LAST).get("step", -1))
    if step != state["step"]:
        raise PmgaftError(f"{out_dir}: {LAST} is from step {step} but {STATE} from step {state['step']} (an "
                          f"interrupted save); restart without --resume or in a new --out-dir.")
    return state
