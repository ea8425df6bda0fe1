"""Evaluation-path calls: one PGD-k batch and one clean (no-grad) batch on a :class:`ZeroShotClassifier`.

Both run as ``pmgaft eval`` runs them: the classifier in eval mode with nothing trainable, the attack on an fp32
gradient of the summed loss (:func:`pmgaft.attacks.pgd`), the forward under the grid's
:class:`~pmgaft.evaluation.engine.Autocast` (fp32 logits) when a precision asks for it.
"""
from __future__ import annotations

from typing import Callable

import torch

from pmgaft.attacks import pgd
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
