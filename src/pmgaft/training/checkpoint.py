"""Checkpoints: weights as safetensors in open_clip's key layout, plus a training-state file for ``--resume``.

Files under the run directory (all written atomically: temp file + rename):

* ``last.safetensors`` / ``best.safetensors`` -- the full CLIP state_dict (loadable by ``load_clip(name, path)``
  and by ``open_clip.create_model_and_transforms(name, pretrained=path)``), with safetensors metadata
  ``pmgaft_method, pmgaft_recipe, pmgaft_model, pmgaft_pretrained, pmgaft_dataset, pmgaft_version, step,
  epoch, val_clean, val_robust, pmgaft_config`` (JSON of the resolved config); all strings.
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
from pmgaft.training.config import TrainConfig
from pmgaft.utils import atomic_torch_save, atomic_write

LAST, BEST, STATE = "last.safetensors", "best.safetensors", "train_state.pt"
CONFIG, LOG, TENSORBOARD = "config.yaml", "log.jsonl", "tb"


def weights_metadata(config: TrainConfig, step: int, epoch: float, scores: dict[str, float]) -> dict[str, str]:
    from pmgaft import __version__

    meta = {"pmgaft_method": config.method, "pmgaft_recipe": config.recipe, "pmgaft_model": config.model,
            "pmgaft_pretrained": str(config.pretrained), "pmgaft_dataset": config.dataset,
            "pmgaft_version": __version__, "step": str(step), "epoch": f"{epoch:.4f}",
            "pmgaft_config": json.dumps(config.result_keys()), "format": "pt"}
    meta.update({k: f"{v:.6f}" for k, v in scores.items()})
    return meta


def save_weights(path: Path, model: nn.Module, metadata: dict[str, str]) -> Path:
    """The full CLIP state_dict (contiguous CPU copies) as safetensors with string ``metadata``."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors string metadata of a checkpoint (training and evaluation both read it through here)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as err:  # SafetensorError: truncated or not a safetensors file
        raise PmgaftError(f"checkpoint {path} is not a readable safetensors file: {err}") from None


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
