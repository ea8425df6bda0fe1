"""Hugging Face hub copies of the paper's test sets: which repository, which of its splits, how many images.

CLIP_benchmark publishes webdataset copies of its sets as dataset repositories ``clip-benchmark/wds_<name>``
(``<split>/0.tar`` .. ``<split>/(N-1).tar``, ``<split>/nshards.txt`` holding N, ``classnames.txt`` and
``zeroshot_classification_templates.txt`` with ``{c}`` placeholders; LAION-AI/CLIP_benchmark
``webdataset_builder.py`` writes them, ``datasets/builder.py::build_wds_dataset`` reads them). TinyImageNet and
Caltech-256 have no such copy; their hub sources are parquet repositories (``image`` and ``label`` columns).

Each :class:`HubSource` says, per *registered* split, where the same images are in the copy (``splits``; the order
of the images may differ, so a seeded subset picks other images than on the torchvision copy) and how many there
are (checked against what is read). ``benchmark_test`` is CLIP_benchmark's own test split where no registered split
holds the same images: the VTAB test splits of EuroSAT (5,400 of TFDS ``eurosat/rgb``) and Caltech-101 (6,084, 102
classes with ``background``), which only a protocol that scores CLIP_benchmark's sets may use (the reference
protocols score these sets whole, through torchvision).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

WDS, PARQUET = "wds", "parquet"
ALL_PARTS = "*"  # a parquet split made of every split of the repository


@dataclass(frozen=True)
class HubSplit:
    """Images of a hub copy: the copy's own split(s) ``parts`` (read in order), ``size`` images, what they are."""

    parts: tuple[str, ...]
    size: int
    description: str


@dataclass(frozen=True)
class HubSource:
    """The hub copy of registered dataset ``dataset``.

    ``format``: ``wds`` (tar shards) or ``parquet``. ``splits``: registered split -> the same images in the copy.
    ``benchmark_test``: CLIP_benchmark's test split where it holds other images than every registered split.
    ``own_classes``: the copy's label space is not the registered one (Caltech-101's VTAB copy keeps
    ``background``): it is used with its own class names, never mapped. ``class_ids``: the registered classes'
    ids in label order, for copies that name classes by id (TinyImageNet's WordNet ids).
    """

    dataset: str
    repo: str
    format: str
    splits: Mapping[str, HubSplit] = field(default_factory=dict)
    benchmark_test: HubSplit | None = None
    own_classes: bool = False
    class_ids: Callable[[], list[str]] | None = field(default=None, repr=False, compare=False)

    def split_for(self, split: str, benchmark: bool = False) -> HubSplit | None:
        """The copy's images for registered ``split``; with ``benchmark``, CLIP_benchmark's test for ``test``."""
        if split in self.splits:
            return self.splits[split]
        return self.benchmark_test if benchmark and split == "test" else None

    def all_splits(self) -> list[HubSplit]:
        """Every split this table names (what ``pmgaft datasets --download NAME --source hub`` fetches)."""
        found = [*self.splits.values(), *([self.benchmark_test] if self.benchmark_test else [])]
        return list(dict.fromkeys(found))

    def holds(self) -> str:
        """What the copy holds, in words: ``"the VTAB test split ... (5,400 images)"``."""
        return "; ".join(f"{s.description} ({s.size:,} images)" for s in self.all_splits())


def _tinyimagenet_wnids() -> list[str]:
    from pmgaft.prompts._sources import data_json

    return sorted(data_json("classnames")["tinyimagenet"])  # the registered label order: sorted wnids


def _wds(dataset: str, name: str, size: int, what: str = "the official test split", **kw: Any) -> HubSource:
    return HubSource(dataset, f"clip-benchmark/wds_{name}", WDS, {"test": HubSplit(("test",), size, what)}, **kw)


_SUN397_ALL = HubSplit(("test",), 108_754, "the whole set (CLIP_benchmark's SUN397 'test' is every image)")
HUB_SOURCES: dict[str, HubSource] = {s.dataset: s for s in (
    HubSource("tinyimagenet", "zh-plus/tiny-imagenet", PARQUET,
              {"test": HubSplit(("valid",), 10_000, "the val images (the 'valid' split)")},
              class_ids=_tinyimagenet_wnids),
    _wds("cifar10", "vtab-cifar10", 10_000),
    _wds("cifar100", "vtab-cifar100", 10_000),
    _wds("stl10", "stl10", 8_000),
    HubSource("sun397", "clip-benchmark/wds_sun397", WDS, {"all": _SUN397_ALL}, benchmark_test=_SUN397_ALL),
    _wds("food101", "food101", 25_250),
    _wds("oxford_pets", "vtab-pets", 3_669),
    _wds("flowers102", "vtab-flowers", 6_149, "the official test split (tstid)"),
    _wds("dtd", "vtab-dtd", 1_880, "test1 (partition 1)"),
    HubSource("eurosat", "clip-benchmark/wds_vtab-eurosat", WDS, benchmark_test=HubSplit(
        ("test",), 5_400, "the VTAB test split: the last 20% of TFDS eurosat/rgb, not the whole set")),
    _wds("fgvc_aircraft", "fgvc_aircraft", 3_333, "the official test split (variant level)"),
    _wds("imagenet", "imagenet1k", 50_000, "val"),
    HubSource("caltech101", "clip-benchmark/wds_vtab-caltech101", WDS, own_classes=True, benchmark_test=HubSplit(
        ("test",), 6_084, "the VTAB test split: TFDS caltech101 test, 102 classes with 'background'")),
    HubSource("caltech256", "ilee0022/Caltech-256", PARQUET,
              {"all": HubSplit((ALL_PARTS,), 30_607, "the whole set (its train, validation and test together)")}),
    _wds("stanford_cars", "cars", 8_041),
    _wds("pcam", "vtab-pcam", 32_768),
)}
