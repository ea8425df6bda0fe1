"""A checkpoint's training state as plain data, so that it loads with ``torch.load(weights_only=True)``.

The state holds tensors, numbers, strings, lists and dicts only: the optimizer / scheduler / grad-scaler state
dicts (already plain), the RNG states converted from their native types (numpy's key array becomes an int64
tensor, python's state tuple a list), the step, the best validation scores, the data order's position and the
config. Nothing in it can execute code when read, and every RNG state is restored exactly.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pmgaft.errors import PmgaftError

FORMAT = "pmgaft.train_state/2"


def rng_state() -> dict[str, Any]:
    """torch, CUDA, numpy and python RNG states as tensors, numbers and lists."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": {"version": int(version), "state": list(internal), "gauss": gauss}}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (CUDA states only where CUDA is available)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def write_state(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` of the plain ``state`` (the caller fsyncs and commits it)."""
    torch.save({"format": FORMAT, **state}, path)


def read_state(path: Path) -> dict[str, Any]:
    """The state at ``path``, read with ``weights_only=True`` (never runs code from the file)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise PmgaftError(f"cannot read the training state {path}: {type(err).__name__}: "
                          f"{' '.join(str(err).split())[:300]}. Remove that checkpoint folder to resume from the "
                          f"one before it.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise PmgaftError(f"{path} is not a pmgaft training state ({FORMAT}); remove that checkpoint folder to "
                          f"resume from the one before it.")
    return state
