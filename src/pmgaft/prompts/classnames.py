"""Curated class names of every registered dataset, in the label order of its torchvision dataset class.

Sources, in order of preference (see ``data/classnames.json`` ``_sources`` for the hand-transcribed lists):

- open_clip ``IMAGENET_CLASSNAMES`` (OpenAI's curated ImageNet names) for ImageNet;
- clip-benchmark's ``en_classnames.json`` for Caltech-101, EuroSAT, Flowers-102, Pets, PCAM, Country211, MNIST.
  Its lists are already in torchvision's label order (unlike openai/CLIP's ``data/prompts.md``, whose EuroSAT and
  Pets lists are in TFDS order) except Caltech-101: clip-benchmark's own Caltech101 keeps ``BACKGROUND_Google`` as
  label 0, torchvision drops it, so we drop clip-benchmark's ``background`` entry;
- torchvision ``FashionMNIST.classes`` for Fashion-MNIST;
- our ``classnames.json`` for the rest (CIFAR, STL-10, SUN397, Food-101, DTD, Aircraft, Cars, Caltech-256,
  TinyImageNet, whose names are open_clip's ImageNet names of its 200 wnids).

The foolbox sample sets reuse their parent set's names (``ALIASES``); ``folder:PATH`` datasets have none.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pmgaft.errors import PmgaftError
from pmgaft.prompts._sources import clip_benchmark_classnames, data_json, open_clip_metadata
from pmgaft.utils import did_you_mean

FOLDER_PREFIX = "folder:"

# foolbox's sample images are drawn from these sets and labelled in their label space
ALIASES: dict[str, str] = {
    "foolbox_imagenet": "imagenet",
    "foolbox_cifar10": "cifar10",
    "foolbox_cifar100": "cifar100",
    "foolbox_mnist": "mnist",
    "foolbox_fashion_mnist": "fashion_mnist",
}


@dataclass(frozen=True)
class NameSource:
    """Where one dataset's curated names come from: ``load()`` reads them, ``description`` says from where."""

    load: Callable[[], list[str]]
    description: str

    def __call__(self) -> list[str]:
        return self.load()


def _ours(key: str) -> NameSource:
    return NameSource(lambda: list(data_json("classnames")[key]),
                      f"pmgaft prompts/data/classnames.json[{key!r}]: {data_json('classnames')['_sources'][key]}")


def _clip_benchmark(key: str, start: int = 0, note: str = "") -> NameSource:
    return NameSource(lambda: clip_benchmark_classnames(key)[start:], f"clip-benchmark en_classnames.json[{key!r}]{note}")


def _imagenet() -> list[str]:
    return open_clip_metadata("IMAGENET_CLASSNAMES")


def _tinyimagenet() -> list[str]:
    wnid_to_name = data_json("classnames")["tinyimagenet"]
    return [wnid_to_name[wnid] for wnid in sorted(wnid_to_name)]  # ImageFolder's label order: sorted wnids


def _fashion_mnist() -> list[str]:
    from torchvision.datasets import FashionMNIST

    return list(FashionMNIST.classes)


CLASSNAME_SOURCES: dict[str, NameSource] = {
    "cifar10": _ours("cifar10"),
    "cifar100": _ours("cifar100"),
    "stl10": _ours("stl10"),
    "sun397": _ours("sun397"),
    "food101": _ours("food101"),
    "oxford_pets": _clip_benchmark("pets"),
    "flowers102": _clip_benchmark("flowers"),
    "dtd": _ours("dtd"),
    "eurosat": _clip_benchmark("eurosat"),
    "fgvc_aircraft": _ours("fgvc_aircraft"),
    "imagenet": NameSource(_imagenet, "open_clip IMAGENET_CLASSNAMES (OpenAI's curated ImageNet names)"),
    "caltech101": _clip_benchmark("caltech101", start=1, note=" without its BACKGROUND_Google class"),
    "caltech256": _ours("caltech256"),
    "stanford_cars": _ours("stanford_cars"),
    "pcam": _clip_benchmark("pcam"),  # label 1 = metastatic tissue
    "country211": _clip_benchmark("country211"),  # in the sorted order of its ISO-code folders
    "tinyimagenet": NameSource(_tinyimagenet, f"pmgaft prompts/data/classnames.json['tinyimagenet']: "
                                              f"{data_json('classnames')['_sources']['tinyimagenet']}"),
    "fashion_mnist": NameSource(_fashion_mnist, "torchvision FashionMNIST.classes"),
    "mnist": _clip_benchmark("mnist"),
    "digits": _clip_benchmark("mnist", note=" (scikit-learn's 8x8 digits, labels 0-9)"),
}

DATASETS: tuple[str, ...] = tuple(CLASSNAME_SOURCES)


def known_datasets() -> list[str]:
    """Every dataset name with curated prompts: registered sets and their aliases."""
    return [*CLASSNAME_SOURCES, *ALIASES]


def resolve_dataset(name: str) -> str | None:
    """The registered set behind ``name`` (aliases followed); None for ``folder:...`` and unknown names."""
    if name.startswith(FOLDER_PREFIX):
        return None
    key = ALIASES.get(name, name)
    return key if key in CLASSNAME_SOURCES else None


def classname_source(dataset: str) -> str:
    """Where the curated names of a registered dataset (or alias) come from, in one line."""
    key = resolve_dataset(dataset)
    if key is None:
        raise PmgaftError(f"unknown dataset {dataset!r}.{did_you_mean(dataset, known_datasets())}")
    return CLASSNAME_SOURCES[key].description


def curated_classnames(dataset: str) -> list[str]:
    """Curated names of a registered dataset (or alias), in label order; PmgaftError for unknown names."""
    key = resolve_dataset(dataset)
    if key is None:
        raise PmgaftError(f"unknown dataset {dataset!r}.{did_you_mean(dataset, known_datasets())}")
    return list(CLASSNAME_SOURCES[key]())
