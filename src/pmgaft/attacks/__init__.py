"""Adversarial attacks on ``model(x in [0, 1]) -> logits`` callables, and the ``ATTACKS`` registry.

Every registry entry is an :class:`AttackSpec`: a callable with one signature (so code never branches on the
attack's name to run it) plus the metadata evaluation needs -- whether it is iterative (its steps and step size
are part of a result cell), the PGD objective the streaming engine uses, which scorings it supports, and the
model passes it costs per image (what ``pmgaft reproduce`` multiplies measured seconds by)::

    x_adv, info = ATTACKS["pgd"](model, x, y, eps=1/255, step_size=1/255, steps=100, seed=0)
    ATTACKS["autoattack"].iterative  # False: parameter-free
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

import torch

from pmgaft.attacks.autoattack import AA_VERSIONS, autoattack, autoattack_info, autoattack_passes, plan_autoattack
from pmgaft.attacks.losses import ATTACK_LOSSES, AttackLoss, cross_entropy, margin, squared_l2
from pmgaft.attacks.passes import Passes, iterative_passes
from pmgaft.attacks.pgd import check_attack_args, pgd, project, sample_seeds
from pmgaft.attacks.stream import StreamResult, pgd_stream

SCORINGS = ("worst", "final")  # any iterate misclassified -> not robust (AutoAttack) | the final iterate only


class Attack(Protocol):
    def __call__(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
                 eps: float, step_size: float, steps: int, seed: int,
                 sample_seeds: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]: ...


@dataclass(frozen=True)
class AttackSpec:
    """One registered attack: how to run it on a batch, and what evaluation needs to know about it."""

    name: str
    description: str
    run: Attack
    iterative: bool = False  # steps / step_size are settings of the attack (and part of a result cell)
    loss: str | None = None  # the PGD objective, for attacks pmgaft's streaming PGD engine runs
    scorings: tuple[str, ...] = ("worst",)  # which scorings its result supports
    is_clean: bool = False  # "none": no perturbation (the clean pass)
    describe: Callable[[int], dict[str, Any]] = lambda num_classes: {}  # its settings, for result cards
    loss_params: Mapping[str, str] = field(default_factory=dict)  # loss keyword -> the setting (protocol field)
    # (steps, num_classes) -> model passes per image of each stage it runs, in order (later stages see only the
    # images still robust); None: not known, and a cost estimate refuses the attack
    passes: Callable[[int, int], tuple[Passes, ...]] | None = None

    def __call__(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
                 eps: float, step_size: float, steps: int, seed: int,
                 sample_seeds: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
        return self.run(model, x, y, eps=eps, step_size=step_size, steps=steps, seed=seed, sample_seeds=sample_seeds)

    @property
    def streamed(self) -> bool:
        return self.loss is not None

    def loss_settings(self, settings: Any) -> dict[str, Any]:
        """The loss parameters ``settings`` (e.g. a protocol) sets for this attack, e.g. ``{"kappa": 0.0}``."""
        values = {key: getattr(settings, attr, None) for key, attr in self.loss_params.items()}
        return {key: value for key, value in values.items() if value is not None}

    def objective(self, settings: Any) -> str | AttackLoss:
        """The PGD objective with the parameters of ``settings`` bound (its name when there are none)."""
        params = self.loss_settings(settings)
        return functools.partial(ATTACK_LOSSES[self.loss], **params) if params else self.loss  # type: ignore

    def params(self) -> tuple[str, ...]:
        """The settings the attack uses (the others are ignored)."""
        return () if self.is_clean else ("eps", "steps", "step_size") if self.iterative else ("eps",)


def _none(model, x, y, *, eps, step_size, steps, seed, sample_seeds=None):
    return x.detach(), {}


def _pgd_with(loss: str) -> Attack:
    def run(model, x, y, *, eps, step_size, steps, seed, sample_seeds=None):
        x_adv = pgd(model, x, y, eps=eps, step_size=step_size, steps=steps, loss=loss, seed=seed,
                    sample_seeds=sample_seeds)
        return x_adv, _pgd_info(loss)()
    return run


def _pgd_info(loss: str) -> Callable[..., dict[str, Any]]:
    return lambda num_classes=0: {"loss": loss, "norm": "linf", "random_start": True}


def _autoattack_version(version: str) -> Attack:
    def run(model, x, y, *, eps, step_size, steps, seed, sample_seeds=None):
        return autoattack(model, x, y, eps=eps, seed=seed, version=version)  # parameter-free
    return run


ATTACKS: dict[str, AttackSpec] = {spec.name: spec for spec in (
    AttackSpec("none", "no attack: clean accuracy", _none, scorings=SCORINGS, is_clean=True,
               passes=lambda steps, c: ()),  # the clean pass every evaluation makes anyway
    AttackSpec("pgd", "PGD (Madry et al.), CE loss, L-inf, uniform random start", _pgd_with("ce"), iterative=True,
               loss="ce", scorings=SCORINGS, describe=_pgd_info("ce"), passes=iterative_passes),
    AttackSpec("cw", "PGD on the Carlini-Wagner margin loss (the 'CW' rows of later papers; capped at the "
               "protocol's cw_kappa when set)", _pgd_with("cw"), iterative=True, loss="cw", scorings=SCORINGS,
               describe=_pgd_info("cw"), loss_params={"kappa": "cw_kappa"}, passes=iterative_passes),
    AttackSpec("autoattack", "AutoAttack standard: APGD-CE, APGD-T, FAB-T, Square (class-count rules applied)",
               _autoattack_version("standard"), describe=lambda c: autoattack_info(c, "standard"),
               passes=lambda steps, c: autoattack_passes(c, "standard")),
    AttackSpec("apgd-ce-dlr", "TGA-ZSR's and TTC's 'AutoAttack' option: APGD-CE + APGD-DLR, 1 restart, 100 "
               "iterations (APGD-CE only for 2 classes)", _autoattack_version("tga-zsr"),
               describe=lambda c: autoattack_info(c, "tga-zsr"),
               passes=lambda steps, c: autoattack_passes(c, "tga-zsr")),
    AttackSpec("apgd-ce-dlr-eot", "AGFT's 'AA' option: APGD-CE + APGD-DLR, 10 iterations, EOT-20, 1 restart "
               "(APGD-CE only for 2 classes); not AutoAttack", _autoattack_version("agft"),
               describe=lambda c: autoattack_info(c, "agft"), passes=lambda steps, c: autoattack_passes(c, "agft")),
)}

__all__ = ["AA_VERSIONS", "ATTACKS", "ATTACK_LOSSES", "Attack", "AttackSpec", "Passes", "SCORINGS", "StreamResult",
           "autoattack", "autoattack_info", "autoattack_passes", "check_attack_args", "cross_entropy",
           "iterative_passes", "margin", "pgd", "pgd_stream", "plan_autoattack", "project", "sample_seeds",
           "squared_l2"]
