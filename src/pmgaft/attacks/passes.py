"""What an attack costs per image, in model passes: the numbers a cost estimate multiplies measured seconds by.

An attack runs as one or more *stages* (PGD: one; AutoAttack: APGD-CE, then APGD-T, FAB-T and Square on the
images still robust). Each stage costs ``gradients`` passes (forward + gradient w.r.t. the input: one attack
step) and ``forwards`` passes (forward only: a query, a check) per image it attacks. ``pmgaft bench`` measures the
seconds of both kinds (``pgd_step``, ``clean_forward``); every :class:`~pmgaft.attacks.AttackSpec` says, through
its ``passes`` metadata, how many of each it runs for a given step count and class count.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Passes:
    """Model passes per image of one attack stage."""

    gradients: float = 0.0  # forward + input-gradient passes
    forwards: float = 0.0  # forward-only passes

    def __add__(self, other: "Passes") -> "Passes":
        return Passes(self.gradients + other.gradients, self.forwards + other.forwards)

    def __mul__(self, factor: float) -> "Passes":
        return Passes(self.gradients * factor, self.forwards * factor)

    __rmul__ = __mul__


def iterative_passes(steps: int, num_classes: int) -> tuple[Passes, ...]:
    """PGD-style attacks: one stage of ``steps`` gradient steps on every image, whatever the class count."""
    return (Passes(gradients=steps),)
