"""Evaluation-path calls: one PGD-k batch and one clean (no-grad) batch on a :class:`ZeroShotClassifier`, and
under a test-time defence: the defended prediction of a batch and one adaptive attack on it.

All run as ``pmgaft eval`` runs them: the classifier in eval mode with nothing trainable, the attack on an fp32
gradient of the summed loss (:func:`pmgaft.attacks.pgd`), the forward under the grid's
:class:`~pmgaft.evaluation.engine.Autocast` (fp32 logits) when a precision asks for it; the defence with its
default settings and per-sample noise (:mod:`pmgaft.defences`).
"""
from __future__ import annotations

from typing import Callable

import torch

from pmgaft.attacks import pgd, sample_seeds
from pmgaft.attacks.losses import cross_entropy
from pmgaft.defences import DEFENCES, TTC_ADAPTIVE, eot_pgd, stream_seeds
from pmgaft.evaluation.engine import Autocast
from pmgaft.models import ZeroShotClassifier


def _as_evaluated(model: ZeroShotClassifier, dtype: torch.dtype | None) -> Callable[[torch.Tensor], torch.Tensor]:
    return model if dtype is None else Autocast(model, dtype)


def pgd_call(model: ZeroShotClassifier, x: torch.Tensor, y: torch.Tensor, *, steps: int,
             autocast_dtype: torch.dtype | None = None, eps: float = 1 / 255) -> Callable[[], torch.Tensor]:
    """A no-argument call running PGD-``steps`` (L-inf, step = eps, random start) on the batch."""
    evaluated = _as_evaluated(model, autocast_dtype)
    return lambda: pgd(evaluated, x, y, eps=eps, step_size=eps, steps=steps)


def clean_call(model: ZeroShotClassifier, x: torch.Tensor,
               autocast_dtype: torch.dtype | None = None) -> Callable[[], torch.Tensor]:
    """A no-argument call predicting the batch's classes without gradients."""
    evaluated = _as_evaluated(model, autocast_dtype)

    def call() -> torch.Tensor:
        with torch.no_grad():
            return evaluated(x).argmax(1)
    return call


def defended_call(model: ZeroShotClassifier, x: torch.Tensor, *, defence: str,
                  autocast_dtype: torch.dtype | None = None) -> Callable[[], torch.Tensor]:
    """A no-argument call predicting the batch's classes under ``defence`` at its default settings."""
    evaluated = _as_evaluated(model, autocast_dtype)
    spec = DEFENCES[defence]
    settings, seeds = spec.settings(), stream_seeds(0, range(len(x)), "defence")

    def call() -> torch.Tensor:
        images = spec(evaluated, x, settings=settings, seeds=seeds).images
        with torch.no_grad():
            return evaluated(images).argmax(1)
    return call


def adaptive_call(model: ZeroShotClassifier, x: torch.Tensor, y: torch.Tensor, *, attack: str, steps: int,
                  autocast_dtype: torch.dtype | None = None, eps: float = 1 / 255) -> Callable[[], torch.Tensor]:
    """A no-argument call running one adaptive attack on TTC (defaults; one noise draw per step) for ``steps``."""
    evaluated = _as_evaluated(model, autocast_dtype)
    objective = TTC_ADAPTIVE[attack].objective(evaluated, cross_entropy, DEFENCES["ttc"].settings(), None)
    positions = range(len(x))
    return lambda: eot_pgd(objective, x, y, eps=eps, step_size=eps, steps=steps, draws=1,
                           start_seeds=sample_seeds(0, positions), draw_seeds=stream_seeds(0, positions, attack))
