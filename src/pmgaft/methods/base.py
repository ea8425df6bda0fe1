"""What every training method shares: the train-time attack settings and the :class:`Method` interface.

A method is a small object with two calls, both on [0, 1] images ``x [B, 3, H, W]`` and labels ``y [B]``:

* ``attack(target, original, x, y, settings, seeds) -> x_adv`` -- the train-time adversary. The default is
  the paper's: PGD-2, eps = step = 1/255, L-inf, uniform random start, CE on the target's zero-shot logits.
  ``seeds [B]`` gives each image its own random start (:func:`pmgaft.attacks.pgd.sample_seeds`; training keys
  them by seed, step and dataset position), so the adversary does not depend on how a batch is split across
  micro-batches or processes; None draws the batch's starts from a fixed seed.
  The target is attacked in the mode the loop holds it in (train mode): CLIP's ViT has no dropout and no
  batch norm, so train and eval mode compute the same function and the choice does not matter.
  ``settings.reduction`` picks the attack's arithmetic: "sum" (pmgaft's, per-sample gradients) or "mean" (the
  released codes' batch-mean CE; with ``--precision fp16`` its gradients underflow as theirs did).
* ``losses(target, original, x, x_adv, y) -> {"name": scalar, ..., "total": scalar}`` -- named terms; the loop
  back-propagates ``total`` and logs every term.

``target`` is the :class:`~pmgaft.models.ZeroShotClassifier` being trained; ``original`` the frozen pre-trained
copy (eval mode, ``requires_grad=False``; used under ``torch.no_grad``), or None when ``needs_original`` is False.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from pmgaft.attacks import pgd
from pmgaft.models import ZeroShotClassifier


@dataclass(frozen=True)
class AttackSettings:
    """The train-time PGD, in image units (the CLI converts from 1/255)."""

    eps: float = 1 / 255
    step_size: float = 1 / 255
    steps: int = 2
    random_start: bool = True
    reduction: str = "sum"  # "mean": the released codes' batch-mean objective (see pmgaft.attacks.pgd)


class Method:
    """Base class: CE-PGD against the target as the attack; subclasses define :meth:`losses`."""

    name: ClassVar[str] = ""
    needs_original: ClassVar[bool] = False
    trainable: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {}  # config settings this method changes (between recipe and YAML)

    @classmethod
    def from_config(cls, config: Any) -> "Method":
        """Build from a :class:`~pmgaft.training.TrainConfig` (methods read the keys they need)."""
        return cls()

    def attack(self, target: ZeroShotClassifier, original: ZeroShotClassifier | None, x: torch.Tensor,
               y: torch.Tensor, settings: AttackSettings, seeds: torch.Tensor | None = None) -> torch.Tensor:
        return pgd(target, x, y, eps=settings.eps, step_size=settings.step_size, steps=settings.steps, loss="ce",
                   random_start=settings.random_start, sample_seeds=seeds, reduction=settings.reduction)

    def losses(self, target: ZeroShotClassifier, original: ZeroShotClassifier | None, x: torch.Tensor,
               x_adv: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def hparams(self) -> dict[str, Any]:
        """The method's own settings, for logs and checkpoint metadata."""
        return {}


def target_logits_pair(target: ZeroShotClassifier, x_adv: torch.Tensor,
                       x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_adv, z_clean) [B, C] each, from one forward of the target on the concatenated batch [2B, ...]."""
    logits = target(torch.cat([x_adv, x]))
    return logits[: len(x)], logits[len(x):]


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), y)
