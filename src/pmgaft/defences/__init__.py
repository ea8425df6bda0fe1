"""Test-time defences of a CLIP zero-shot classifier, the ``DEFENCES`` registry, and their adaptive attacks.

A defence is a function of the classifier and [0, 1] images, like the attacks: it returns the images the
classifier is then applied to. Every registry entry is a :class:`DefenceSpec` -- one signature to run it, the
settings it takes (defaults in image units), which attacks it can wrap, its adaptive attacks and its cost -- so
the evaluation grid never branches on a defence's name::

    spec = DEFENCES["ttc"]
    settings = spec.settings(eps=4 / 255)  # defaults filled in, validated
    out = spec(classifier, x, settings=settings, seeds=stream_seeds(0, positions, "defence"))
    pred = classifier(out.images).argmax(1)
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from pmgaft.attacks import AttackSpec, sample_seeds
from pmgaft.defences.adaptive import TTC_ADAPTIVE, AdaptiveAttack, adaptive_settings, eot_pgd
from pmgaft.defences.ttc import (DEFAULTS, Counterattack, ImageEncoder, check_ttc_args, counterattack, defend,
                                 step_weights, tau_statistic, ttc, ttc_cost)
from pmgaft.errors import PmgaftError


@dataclass(frozen=True)
class DefenceSpec:
    """One registered defence. ``defaults``: the settings it takes (image units); ``fixed``: settings the entry
    pins (random-noise is TTC with 0 steps). The callables receive the resolved settings."""

    name: str
    description: str
    run: Callable[..., Counterattack]  # (model, x, *, reference, seeds, **settings) -> Counterattack
    defaults: Mapping[str, float]
    fixed: Mapping[str, float] = field(default_factory=dict)
    adaptive: tuple[AdaptiveAttack, ...] = ()
    check: Callable[..., None] = lambda **settings: None
    cost: Callable[[dict[str, Any], bool], dict[str, int]] = lambda s, separate: {"forwards": 0, "backwards": 0}
    uses_reference: Callable[[dict[str, Any]], bool] = lambda s: False  # needs the original tower on fine-tunes
    randomized: Callable[[dict[str, Any]], bool] = lambda s: True  # EOT needs more than one draw

    def __call__(self, model: Any, x: torch.Tensor, *, settings: dict[str, Any],
                 reference: ImageEncoder | None = None, seeds: torch.Tensor | None = None) -> Counterattack:
        return self.run(model, x, reference=reference, seeds=seeds, **settings)

    def settings(self, **given: float | int | None) -> dict[str, Any]:
        """The defaults with every non-None ``given`` value applied (image units), validated."""
        given = {k: v for k, v in given.items() if v is not None}
        pinned = sorted(k for k in given if k in self.fixed)
        foreign = sorted(k for k in given if k not in self.defaults and k not in self.fixed)
        if pinned or foreign:
            raise PmgaftError(f"defence {self.name!r} does not take {', '.join(pinned + foreign)} "
                              f"({self.description}; its settings: {', '.join(self.defaults)}).")
        out = {**self.defaults, **given, **self.fixed}
        self.check(**out)
        return out

    def can_wrap(self, attack: AttackSpec) -> bool:
        """Clean images, and attacks the adaptive attacks can re-run on the defended classifier (a PGD loss)."""
        return attack.is_clean or attack.streamed

    def adaptive_attacks(self, settings: dict[str, Any]) -> list[AdaptiveAttack]:
        """The adaptive attacks that can change the outcome under these settings."""
        return [a for a in self.adaptive if a.applies(settings)]


def _ttc(model: Any, x: torch.Tensor, *, reference: ImageEncoder | None = None, seeds: torch.Tensor | None = None,
         **settings: Any) -> Counterattack:
    return counterattack(model, x, reference=reference, seeds=seeds, **{**DEFAULTS, **settings})


def _ttc_check(**settings: Any) -> None:
    check_ttc_args(**{**DEFAULTS, **settings})


DEFENCES: dict[str, DefenceSpec] = {spec.name: spec for spec in (
    DefenceSpec("ttc", "TTC test-time counterattacks (Xing et al., CVPR 2025): tau-gated sign-gradient ascent "
                "away from the input's own embedding", _ttc, defaults=dict(DEFAULTS),
                adaptive=tuple(TTC_ADAPTIVE.values()), check=_ttc_check,
                cost=lambda s, separate: ttc_cost(int(s["steps"]), separate),
                uses_reference=lambda s: int(s["steps"]) > 0, randomized=lambda s: s["eps"] > 0),
    DefenceSpec("random-noise", "TTC's random-noise baseline (TTC with 0 steps): X + U(-eps, eps) noise",
                _ttc, defaults={"eps": DEFAULTS["eps"]}, fixed={"steps": 0}, adaptive=(TTC_ADAPTIVE["e2e"],),
                check=_ttc_check, cost=lambda s, separate: ttc_cost(0, separate),
                randomized=lambda s: s["eps"] > 0),
)}


def stream_seeds(seed: int, positions: torch.Tensor | Sequence[int], stream: str) -> torch.Tensor:
    """Per-sample seeds of one named random stream: keyed by (run seed, dataset position) like the attacks'
    random starts (:func:`pmgaft.attacks.sample_seeds`), but independent of them and of every other stream."""
    tag = int.from_bytes(hashlib.sha256(stream.encode()).digest()[:8], "little") >> 1
    return sample_seeds(tag, sample_seeds(seed, positions))


__all__ = ["DEFAULTS", "DEFENCES", "TTC_ADAPTIVE", "AdaptiveAttack", "Counterattack", "DefenceSpec", "ImageEncoder",
           "adaptive_settings", "check_ttc_args", "counterattack", "defend", "eot_pgd", "step_weights",
           "stream_seeds", "tau_statistic", "ttc", "ttc_cost"]
