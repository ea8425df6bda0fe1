"""Evaluation protocols: named presets of prompts, preprocessing, logits, attacks, eps and sample counts.

``PROTOCOLS`` is keyed by the ``pmgaft eval --protocol`` string; every field can be overridden by a CLI flag.
eps and step sizes are in 1/255 units here (what users speak); :mod:`pmgaft.evaluation.grid` converts once.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pmgaft.data import PAPER_DATASETS


@dataclass(frozen=True)
class Protocol:
    """One evaluation recipe. ``n_samples`` None = the full test split; ``n_samples_per_dataset`` overrides it."""

    description: str
    datasets: tuple[str, ...] = PAPER_DATASETS
    attacks: tuple[str, ...] = ("pgd", "cw", "autoattack")
    eps: tuple[float, ...] = (1.0,)  # in 1/255 units
    steps: tuple[int, ...] = (100,)
    step_size: float = 1.0  # in 1/255 units
    prompts: str = "paper"
    transform: str = "clip"
    normalization: str = "clip"
    logit_scale: str | float = "model"
    n_samples: int | None = None
    n_samples_per_dataset: dict[str, int] = field(default_factory=dict)
    split: str = "test"
    seed: int = 0

    def samples_for(self, dataset: str) -> int | None:
        return self.n_samples_per_dataset.get(dataset, self.n_samples)

    def override(self, **changes: Any) -> "Protocol":
        """A copy with every non-None value in ``changes`` replacing the preset's."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PROTOCOLS: dict[str, Protocol] = {
    "paper": Protocol(
        "PMG-AFT paper / TGA-ZSR re-run: one prompt per class, full test sets, PGD-100 and CW-100 at eps=1/255 "
        "(step 1/255, random start), AutoAttack standard"),
    "official-code": Protocol(
        "the released PMG_AFT.py evaluation: PGD-10 at eps=1/255, Resize(256)+CenterCrop(224), ImageNet "
        "normalization, raw-cosine logits, its single prompts",
        attacks=("pgd",), steps=(10,), transform="official", normalization="imagenet", logit_scale=1.0),
    "fare": Protocol(
        "FARE (Schlarmann et al. 2024): CLIP_benchmark template ensembles, AutoAttack at eps=2/255 and 4/255 on "
        "1000 samples per set (5000 for ImageNet)",
        attacks=("autoattack",), eps=(2.0, 4.0), prompts="ensemble", n_samples=1000,
        n_samples_per_dataset={"imagenet": 5000}),
}
