"""AutoAttack (Croce & Hein, ICML 2020, https://arxiv.org/abs/2003.01690) through the ``pyautoattack`` package.

The reference attack: an ensemble of APGD-CE, APGD-T (targeted DLR), FAB-T and Square. Class-count rules:
with 2 classes only APGD-CE runs (the DLR losses need >= 3 classes, targeted DLR >= 4); targeted attacks never
ask for more than C-1 target classes. Two reduced versions that papers report under the name "AutoAttack" run
APGD-CE then APGD-DLR (each on the samples still robust), 1 restart -- not standard AutoAttack:
``version="tga-zsr"`` (TGA-ZSR's and TTC's evaluation option: 100 iterations each) and ``version="agft"``
(AGFT's "AA": 10 iterations each, EOT over 20 gradients; on a deterministic classifier the 20 gradients are
identical, so its result equals 1 draw at 20x the cost -- kept for fidelity). The attacks that ran are returned
with the images, for the result file.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch

from pmgaft.attacks.passes import Passes
from pmgaft.attacks.pgd import check_attack_args
from pmgaft.errors import PmgaftError

AA_VERSIONS = ("standard", "plus", "rand", "tga-zsr", "agft")
# versions run as AutoAttack(version="custom") with APGD-CE + APGD-DLR: the APGD settings of each
CUSTOM_APGD: dict[str, dict[str, int]] = {"tga-zsr": {"n_iter": 100, "eot_iter": 1},
                                          "agft": {"n_iter": 10, "eot_iter": 20}}
# what pyautoattack runs in the versions whose cost is modelled (AutoAttack.__init__ and _set_version; 1 restart
# per attack): APGD-CE/-DLR iterations and EOT draws, APGD-T/FAB-T iterations per target class, Square's queries
APGD_SETTINGS: dict[str, dict[str, int]] = {"standard": {"n_iter": 100, "eot_iter": 1},
                                            "rand": {"n_iter": 100, "eot_iter": 20}, **CUSTOM_APGD}
TARGETED_ITERATIONS = 100
SQUARE_QUERIES = 5000


class _Callable(torch.nn.Module):
    """Hands AutoAttack a module whose eval()/train() touch nothing: we never flip the caller's mode."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        object.__setattr__(self, "fn", fn)  # not a registered submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x).float()


def plan_autoattack(num_classes: int, version: str = "standard") -> tuple[list[str], int]:
    """Which attacks can run for ``num_classes`` and how many target classes the targeted ones get."""
    if version not in AA_VERSIONS:
        raise PmgaftError(f"unknown AutoAttack version {version!r}; use one of {AA_VERSIONS}.")
    if num_classes < 2:
        raise PmgaftError(f"AutoAttack needs at least 2 classes, got {num_classes}.")
    n_target = min(9, num_classes - 1)
    if version == "standard":
        attacks = ["apgd-ce", "apgd-t", "fab-t", "square"]
    elif version == "plus":
        attacks = ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]
    else:  # "rand", and the reduced versions (APGD-CE + APGD-DLR, 1 restart: CUSTOM_APGD)
        attacks = ["apgd-ce", "apgd-dlr"]
    if num_classes < 4:  # targeted DLR uses the 3rd and 4th largest logits
        attacks = [a for a in attacks if a != "apgd-t"]
    if num_classes < 3:  # 2 classes: DLR needs a 3rd logit; APGD-CE alone, as in the paper's PCAM rows
        attacks = ["apgd-ce"]
    return attacks, n_target


def autoattack_info(num_classes: int, version: str = "standard", norm: str = "Linf") -> dict:
    """What :func:`autoattack` runs for ``num_classes`` classes (for result cards)."""
    attacks, n_target = plan_autoattack(num_classes, version)
    apgd = {"apgd_n_iter": CUSTOM_APGD[version]["n_iter"], "apgd_eot_iter": CUSTOM_APGD[version]["eot_iter"],
            "apgd_restarts": 1} if version in CUSTOM_APGD else {}
    return {"attacks": attacks, "n_target_classes": n_target, "version": version, "norm": norm, **apgd}


def autoattack_passes(num_classes: int, version: str = "standard") -> tuple[Passes, ...]:
    """Model passes per image of each attack :func:`autoattack` runs for ``num_classes``, in order; each after the
    first attacks only the images still robust. An APGD iteration is one gradient pass per EOT draw; a FAB-T
    iteration one gradient pass and one forward check; a Square query one forward pass."""
    attacks, n_target = plan_autoattack(num_classes, version)
    if version not in APGD_SETTINGS:
        raise PmgaftError(f"no cost model for AutoAttack version {version!r} (5 restarts, untargeted FAB); "
                          f"versions with one: {', '.join(APGD_SETTINGS)}.")
    apgd = Passes(gradients=APGD_SETTINGS[version]["n_iter"] * APGD_SETTINGS[version]["eot_iter"])
    targeted = n_target * TARGETED_ITERATIONS
    stages = {"apgd-ce": apgd, "apgd-dlr": apgd, "apgd-t": Passes(gradients=targeted),
              "fab-t": Passes(gradients=targeted, forwards=targeted), "square": Passes(forwards=SQUARE_QUERIES)}
    return tuple(stages[attack] for attack in attacks)


def autoattack(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *, eps: float,
               version: str = "standard", norm: str = "Linf", seed: int = 0, batch_size: int = 250,
               num_classes: int | None = None) -> tuple[torch.Tensor, dict]:
    """Run AutoAttack; returns ``(x_adv, info)`` with ``info["attacks"]`` the attacks that ran.

    ``num_classes`` defaults to the model's output width on the first sample.
    """
    check_attack_args(x, eps=eps)
    try:
        from pyautoattack import AutoAttack
        from pyautoattack.autopgd_base import APGDAttack
    except ImportError:
        raise PmgaftError("AutoAttack needs the pyautoattack package: pip install --no-deps pyautoattack") from None
    x = x.detach().float()
    wrapped = _Callable(model)
    if num_classes is None:
        with torch.no_grad():
            num_classes = int(wrapped(x[:1]).shape[1])
    attacks, n_target = plan_autoattack(num_classes, version)
    custom = version in CUSTOM_APGD
    aa = AutoAttack(wrapped, version="custom" if custom else version, norm=norm, eps=eps, seed=seed,
                    device=x.device, attacks=attacks if custom else None)
    aa.attacks_to_run = attacks  # the version's settings, minus what the class count rules out
    if custom:  # a fresh APGD: its step-size schedule is derived from n_iter at construction
        aa.apgd = APGDAttack(wrapped, n_restarts=1, eps=eps, norm=norm, seed=seed, rho=.75, device=x.device,
                             logger=aa.logger, **CUSTOM_APGD[version])
    aa.apgd_targeted.n_target_classes = n_target
    aa.fab.n_target_classes = n_target
    aa_logger = logging.getLogger("auto-attack")
    level = aa_logger.level
    aa_logger.setLevel(logging.WARNING)
    try:
        x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    finally:
        aa_logger.setLevel(level)
    return x_adv.detach(), autoattack_info(num_classes, version, norm)
