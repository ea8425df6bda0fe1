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
* ``agft`` -- AGFT's evaluation (CVPR 2026; YuboCui/AGFT validate.py, utils.py, clip_dataset.py): 15 sets, whole
  Caltech/EuroSAT/SUN397, test splits elsewhere, no subsampling; Resize(224) + CenterCrop(224), CIFAR/STL-10
  attacked at native size and upsampled inside the model with torchvision's (antialiased) bicubic resize; its one
  prompt per set, Caltech-101's two face folders as one "person" class; CLIP mean/std, 100 x cosine; PGD-20 and
  CW (the margin capped at kappa = 0) at eps = step = 1/255 with a random start, scored on the final iterate of
  every image; its "AA" (``apgd-ce-dlr-eot``); the average is the plain mean of the 15, ImageNet included.
* ``ttc`` -- the test-time-counterattack evaluation (CVPR 2025; Sxing2/CLIP-Test-time-Counterattacks): the 15 sets
  and Country211, all R256/C224 (CIFAR/STL-10 too), ImageNet with 999 classes (the duplicate "maillot" class
  n03710637 and its images dropped); its prompts; CLIP mean/std, 100 x cosine; PGD-10 (summed CE) and CW (kappa =
  50) at eps = step = 1/255 scored on the final iterate; APGD-CE + APGD-DLR at 100 iterations (``apgd-ce-dlr``);
  the average is the plain mean of the 16.

``averaged`` names the sets a protocol's own average is over (tables add that row); None keeps pmgaft's
zero-shot rule (every set but TinyImageNet and the model's training set).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pmgaft.data import DATASETS, PAPER_DATASETS, reference_split

REFERENCE_SPLIT = "reference"  # the split each reference protocol scores: whole unsplit sets, else test
# AGFT's main.py --val_dataset default, in its order (Country211, TinyImageNet, ImageNet-R/-Sketch commented out)
AGFT_DATASETS = ("caltech101", "caltech256", "cifar10", "cifar100", "dtd", "eurosat", "fgvc_aircraft", "flowers102",
                 "food101", "imagenet", "oxford_pets", "pcam", "stanford_cars", "stl10", "sun397")
# TTC's utils.py DATASETS in its order, without its last entry tinyImageNet (the AFT victims' training set, left
# out of TTC's zero-shot average; add it with --datasets ... tinyimagenet)
TTC_DATASETS = ("cifar10", "cifar100", "stl10", "imagenet", "caltech101", "caltech256", "oxford_pets", "flowers102",
                "fgvc_aircraft", "stanford_cars", "sun397", "country211", "food101", "eurosat", "dtd", "pcam")


@dataclass(frozen=True)
class Protocol:
    """One evaluation recipe. ``n_samples`` None = every image of the split; ``n_samples_per_dataset`` overrides
    it. ``normalization`` / ``logit_scale`` None = each model's own (what it was trained with; CLIP's when not
    recorded). ``split`` is a split name or ``"reference"``. ``benchmark_splits``: the protocol scores
    CLIP_benchmark's own test sets, so on a Hugging Face hub copy (``--source hub``) it takes CLIP_benchmark's
    test split where that holds other images than the registered one (VTAB EuroSAT and Caltech-101, SUN397
    whole); the other protocols refuse such a copy. ``cw_kappa``: the CW margin capped at kappa (None:
    uncapped). ``resize_antialias``: the model's inner resize of smaller images antialiased (torchvision's tensor
    Resize). ``averaged``: the sets the protocol's own average is over (None: pmgaft's zero-shot rule)."""

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
    cw_kappa: float | None = None
    resize_antialias: bool = False
    averaged: tuple[str, ...] | None = None

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
    Protocol("agft", "AGFT's evaluation (CVPR 2026): its 15 sets and prompts, Resize(224)+CenterCrop(224) with "
             "CIFAR/STL at native size, CLIP mean/std and 100 x cosine, PGD-20 and CW (kappa 0) at 1/255 scored on "
             "the final iterate, its 'AA' (APGD-CE + APGD-DLR, 10 iterations, EOT-20); the mean of the 15 sets, "
             "ImageNet included",
             datasets=AGFT_DATASETS, attacks=("pgd", "cw", "apgd-ce-dlr-eot"), steps=(20,), prompts="agft",
             transform="agft", normalization="clip", logit_scale=100.0, scoring="final", cw_kappa=0.0,
             resize_antialias=True, averaged=AGFT_DATASETS),
    Protocol("ttc", "the test-time-counterattack evaluation (CVPR 2025): AGFT's 15 sets and Country211, "
             "Resize(256)+CenterCrop(224) for every set, 999-class ImageNet, its prompts, CLIP mean/std and "
             "100 x cosine, PGD-10 and CW (kappa 50) at 1/255 scored on the final iterate, APGD-CE + APGD-DLR at "
             "100 iterations; the mean of the 16 sets",
             datasets=TTC_DATASETS, attacks=("pgd", "cw", "apgd-ce-dlr"), steps=(10,), prompts="ttc",
             transform="ttc", normalization="clip", logit_scale=100.0, scoring="final", cw_kappa=50.0,
             averaged=TTC_DATASETS),
)}
