"""Evaluation-path calls: one PGD-k batch and one clean (no-grad) batch on a :class:`ZeroShotClassifier`.

Both run as ``pmgaft eval`` runs them: the classifier in eval mode with nothing trainable, the attack on an fp32
gradient of the summed loss (:func:`pmgaft.attacks.pgd`), autocast for the forward when a precision asks for it.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch

from pmgaft.attacks import pgd
from pmgaft.models import ZeroShotClassifier


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def pgd_call(model: ZeroShotClassifier, x: torch.Tensor, y: torch.Tensor, *, steps: int,
             autocast_dtype: torch.dtype | None = None, eps: float = 1 / 255) -> Callable[[], torch.Tensor]:
    """A no-argument call running PGD-``steps`` (L-inf, step = eps, random start) on the batch."""
    device = x.device

    def call() -> torch.Tensor:
        with _autocast(device, autocast_dtype):
            return pgd(model, x, y, eps=eps, step_size=eps, steps=steps)
    return call


def clean_call(model: ZeroShotClassifier, x: torch.Tensor,
               autocast_dtype: torch.dtype | None = None) -> Callable[[], torch.Tensor]:
    """A no-argument call predicting the batch's classes without gradients."""
    def call() -> torch.Tensor:
        with torch.no_grad(), _autocast(x.device, autocast_dtype):
            return model(x).argmax(1)
    return call
