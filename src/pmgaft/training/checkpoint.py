"""A run directory's checkpoints: each one an atomic commit that a kill at any point cannot half-write.

Layout of a run directory ``RUN``::

    RUN/config.yaml                     the resolved settings (no out_dir: a copied folder resumes in place)
    RUN/checkpoints/step-000030/        one complete checkpoint, committed by renaming its temp folder:
        weights.safetensors               pmgaft's weights format (:mod:`pmgaft.models.checkpoint`)
        state.pt                          optimizer, scheduler, scaler, RNG, data position (weights_only-safe)
        manifest.json                     step and file sizes, written last
    RUN/last.safetensors                the newest checkpoint's weights (a hard link, or a copy)
    RUN/best.safetensors                the weights the validation picked (a hard link, or a copy)
    RUN/log.jsonl, RUN/tb/, RUN/prompts.json, RUN/summary.json

A checkpoint is written into ``checkpoints/.tmp-step-...``, every file and the folder fsynced, then renamed into
place: it is visible complete or not at all, and the previous one is untouched. ``last``/``best`` are replaced
atomically after the commit. ``--resume`` takes the newest complete checkpoint; temporaries of an interrupted
write are removed on the next start. Only the newest ``keep_checkpoints`` step folders (and the best) are kept.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from pmgaft.errors import PmgaftError
from pmgaft.models import checkpoint as models_checkpoint
from pmgaft.training import faults
from pmgaft.training.config import TrainConfig
from pmgaft.training.state import read_state, write_state

LAST, BEST, CONFIG, LOG, TENSORBOARD = "last.safetensors", "best.safetensors", "config.yaml", "log.jsonl", "tb"
CHECKPOINTS, WEIGHTS, STATE, MANIFEST = "checkpoints", "weights.safetensors", "state.pt", "manifest.json"
LEGACY_STATE = "train_state.pt"  # pmgaft < 0.3 wrote a pickle with numpy RNG state here
_PREFIX, _TMP = "step-", ".tmp-"
read_metadata = models_checkpoint.read_metadata


@dataclass(frozen=True)
class Checkpoint:
    """One committed checkpoint folder."""

    path: Path
    step: int

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS

    def read_state(self) -> dict[str, Any]:
        return read_state(self.path / STATE)


def weights_metadata(config: TrainConfig, step: int, epoch: float, scores: dict[str, float], *,
                     quick_gelu: bool) -> dict[str, str]:
    """pmgaft's weights metadata (:mod:`pmgaft.models.checkpoint`) for a checkpoint of this run."""
    return models_checkpoint.weights_metadata(
        model=config.model, quick_gelu=quick_gelu, normalization=config.normalization,
        logit_scale=config.logit_scale, scores=scores,
        provenance={"pmgaft_method": config.method, "pmgaft_recipe": config.recipe,
                    "pmgaft_pretrained": str(config.pretrained), "pmgaft_dataset": config.dataset, "step": step,
                    "epoch": f"{epoch:.4f}", "pmgaft_config": config.result_keys()})


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's entries to disk (a rename is durable once its folder is synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _incomplete(path: Path, step: int) -> str | None:
    """Why the folder ``path`` is not a complete checkpoint of ``step`` (None: it is)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"no readable {MANIFEST} ({type(err).__name__})"
    if manifest.get("step") != step:
        return f"{MANIFEST} says step {manifest.get('step')}"
    for name, size in files.items():
        if not (path / name).is_file() or (path / name).stat().st_size != size:
            return f"{name} is missing or has the wrong size"
    return None


def checkpoints(run: Path) -> list[Checkpoint]:
    """The complete checkpoints of ``run``, newest first (a damaged folder is skipped with a warning)."""
    found = []
    for path in (run / CHECKPOINTS).glob(f"{_PREFIX}*"):
        if path.is_dir() and path.name[len(_PREFIX):].isdigit():
            step = int(path.name[len(_PREFIX):])
            reason = _incomplete(path, step)
            if reason is None:
                found.append(Checkpoint(path, step))
            else:
                warnings.warn(f"skipping checkpoint {path}: {reason}.", stacklevel=2)
    return sorted(found, key=lambda c: c.step, reverse=True)


def latest_checkpoint(run: Path) -> Checkpoint | None:
    """The newest complete checkpoint of ``run``, or None."""
    if (run / LEGACY_STATE).is_file() and not (run / CHECKPOINTS).is_dir():
        raise PmgaftError(f"{run} was written by an older pmgaft ({LEGACY_STATE}: a pickle of numpy objects, which "
                          f"only an unsafe load reads): it cannot be resumed safely. Continue from its weights in a "
                          f"new run (--pretrained {run / LAST} --out-dir NEW) or start again.")
    found = checkpoints(run)
    return found[0] if found else None


def remove_stale(run: Path) -> list[Path]:
    """Delete the temporaries an interrupted write left behind (checkpoint folders and ``.*.tmp`` files)."""
    stale = [p for p in (run / CHECKPOINTS).glob(f"{_TMP}*")] + [p for p in run.glob(".*.tmp") if p.is_file()]
    for path in stale:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return stale


def commit(run: Path, step: int, model: nn.Module, metadata: dict[str, str], state: dict[str, Any]) -> Checkpoint:
    """Write weights, state and manifest of ``step`` into a temp folder and rename it into place."""
    final = run / CHECKPOINTS / f"{_PREFIX}{step:06d}"
    tmp = run / CHECKPOINTS / f"{_TMP}{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    models_checkpoint.save_weights(tmp / WEIGHTS, model, metadata)
    _fsync(tmp / WEIGHTS)
    faults.point("checkpoint-file")
    write_state(tmp / STATE, state)
    _fsync(tmp / STATE)
    faults.point("checkpoint-file")
    sizes = {name: (tmp / name).stat().st_size for name in (WEIGHTS, STATE)}
    (tmp / MANIFEST).write_text(json.dumps({"step": step, "files": sizes}, indent=2) + "\n")
    _fsync(tmp / MANIFEST)
    _fsync(tmp)
    faults.point("checkpoint-file")
    if final.exists():  # a damaged folder of the same step (skipped when resuming): replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync(final.parent)
    faults.point("checkpoint-commit")
    return Checkpoint(final, step)


def publish(run: Path, checkpoint: Checkpoint, name: str) -> None:
    """Point ``RUN/name`` (last/best.safetensors) at the checkpoint's weights, atomically."""
    if (run / name).is_file() and os.path.samefile(checkpoint.weights, run / name):
        return  # already points there (rename onto a hard link of the same file would do nothing)
    tmp = run / f".{name}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.link(checkpoint.weights, tmp)
    except OSError:  # no hard links on this filesystem
        shutil.copyfile(checkpoint.weights, tmp)
        _fsync(tmp)
    os.replace(tmp, run / name)
    _fsync(run)
    faults.point("publish")


def prune(run: Path, keep: int, protect: int | None) -> None:
    """Delete all but the newest ``keep`` checkpoints (and the one of step ``protect``, the best)."""
    for old in checkpoints(run)[keep:]:
        if old.step != protect:
            shutil.rmtree(old.path)


def holds_run(run: Path) -> bool:
    """Whether ``run`` already holds a run with a checkpoint (a fresh start there is refused)."""
    return (run / LEGACY_STATE).is_file() or any((run / CHECKPOINTS).glob(f"{_PREFIX}*"))
