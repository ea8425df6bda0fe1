"""Evaluation protocols: named presets of data, prompts, preprocessing, logits, attacks, eps and scoring.

``PROTOCOLS`` is keyed by the ``pmgaft eval --protocol`` string; every field can be overridden by a flag.
eps and step sizes are in 1/255 units here (what users speak); the grid converts once.

* ``tga-zsr`` -- the reference run behind the 16-set table everyone compares with (docs/protocols.md): whole
  SUN397/EuroSAT/Caltech, test splits elsewhere, every image resized to the model's input *before* the attack,
  the reference prompts and ImageNet name list, CLIP mean/std and 100 x cosine for every model, PGD-100 at
  1/255 scored on the **final iterate over all images**.
* ``official-code`` -- the released PMG-AFT ``validate()`` on full sets: ImageNet mean/std and raw cosine
  logits for every model, PGD-10, CIFAR/STL attacked at their native 32/96 px, final-iterate scoring.
* ``paper`` -- the PMG-AFT paper's own description: tga-zsr's data, prompts and preprocessing; PGD-100, CW-100 and
  AutoAttack at 1/255; each model with the normalization and logit scale it was trained with; **worst-case**
  scoring (a sample is robust only if clean-correct and correct at every iterate -- AutoAttack's convention),
  which lets PGD stop attacking a sample as soon as it is fooled.
* ``fare`` -- FARE / RobustVLM: CLIP_benchmark template ensembles, AutoAttack at 2/255 and 4/255 on 1000
  images per set (ImageNet 5000). On the Hugging Face hub copies (``--source hub``) it scores CLIP_benchmark's own
  test splits with the copies' own class names and templates, as CLIP_benchmark does.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pmgaft.data import DATASETS, PAPER_DATASETS, reference_split

REFERENCE_SPLIT = "reference"  # the split each reference protocol scores: whole unsplit sets, else test


@dataclass(frozen=True)
class Protocol:
    """One evaluation recipe. ``n_samples`` None = every image of the split; ``n_samples_per_dataset`` overrides
    it. ``normalization`` / ``logit_scale`` None = each model's own (what it was trained with; CLIP's when not
    recorded). ``split`` is a split name or ``"reference"``. ``benchmark_splits``: the protocol scores
    CLIP_benchmark's own test sets, so on a Hugging Face hub copy (``--source hub``) it takes CLIP_benchmark's
    test split where that holds other images than the registered one (VTAB EuroSAT and Caltech-101, SUN397
    whole); the other protocols refuse such a copy."""

    name: str
    description: str
    datasets: tuple[str, ...] = PAPER_DATASETS
    attacks: tuple[str, ...] = ("pgd", "cw", "autoattack")
    eps: tuple[float, ...] = (1.0,)  # in 1/255 units
    steps: tuple[int, ...] = (100,)
    step_size: float = 1.0  # in 1/255 units
    prompts: str = "paper"
    transform: str = "tga-zsr"
    normalization: str | None = None
    logit_scale: str | float | None = None
    n_samples: int | None = None
    n_samples_per_dataset: dict[str, int] = field(default_factory=dict)
    split: str = REFERENCE_SPLIT
    scoring: str = "worst"  # "worst" (any iterate; early exit) or "final" (final iterate, every image)
    attack_reduction: str = "sum"  # PGD objective over a batch: "sum" (pmgaft) or "mean" (the released codes)
    seed: int = 0
    benchmark_splits: bool = False

    def samples_for(self, dataset: str) -> int | None:
        return self.n_samples_per_dataset.get(dataset, self.n_samples)

    def split_for(self, dataset: str) -> str:
        if self.split != REFERENCE_SPLIT:
            return self.split
        return reference_split(dataset) if dataset in DATASETS else "test"

    def override(self, **changes: Any) -> "Protocol":
        """A copy with every non-None value in ``changes`` replacing the preset's."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("paper", "the PMG-AFT paper's description: the 16 sets as the table scores them, one prompt per "
             "class, PGD-100, CW-100 and AutoAttack at 1/255, each model's own normalization and logit scale, "
             "worst-case scoring (robust = clean-correct and never fooled; early exit)"),
    Protocol("tga-zsr", "the 16-set table's run (TGA-ZSR, NeurIPS 2024) exactly: its data, prompts and 224 px "
             "preprocessing, CLIP mean/std and 100 x cosine for every model, PGD-100 at 1/255 scored on the final "
             "iterate of every image",
             attacks=("pgd",), normalization="clip", logit_scale=100.0, scoring="final"),
    Protocol("official-code", "the released PMG_AFT.py validate() on full sets: PGD-10 at 1/255, ImageNet mean/std "
             "and raw-cosine logits for every model, CIFAR/STL at native size, final-iterate scoring",
             attacks=("pgd",), steps=(10,), transform="official", normalization="imagenet", logit_scale=1.0,
             scoring="final"),
    Protocol("fare", "FARE / RobustVLM (Schlarmann et al. 2024): CLIP_benchmark template ensembles, AutoAttack at "
             "2/255 and 4/255 on 1000 images per set (ImageNet 5000)",
             attacks=("autoattack",), eps=(2.0, 4.0), prompts="ensemble", transform="clip", split="test",
             n_samples=1000, n_samples_per_dataset={"imagenet": 5000}, benchmark_splits=True),
)}
