"""The paper's datasets that ship without a train/test split: SUN397, Caltech-101, Caltech-256, EuroSAT.

torchvision reads the whole set; :mod:`pmgaft.data.splits` cuts a documented deterministic 70/30 split per
class (seed 0), and ``split="all"`` gives the whole set (what the released PMG-AFT code evaluates on).
"""
from __future__ import annotations

import re
from pathlib import Path

import pmgaft  # noqa: F401  (torchvision shim)
from torchvision import datasets as tvd
from torchvision.datasets.folder import pil_loader

from pmgaft.data.base import ImageDataset, TorchvisionImages
from pmgaft.data.spec import DatasetSpec, tv_root
from pmgaft.data.splits import TEST_FRACTION, UNSPLIT_SPLITS, split_view

_SPLIT_NOTE = (f"none official: a deterministic per-class split, {TEST_FRACTION:.0%} test (seed 0); "
               f"'all' = the whole set, as the released code evaluates")


def _sun397(d: Path, split: str, download: bool) -> ImageDataset:
    ds = tvd.SUN397(tv_root(d, "SUN397"), download=download, loader=pil_loader)
    # torchvision lists files in rglob order, which depends on the file system: sort for a stable split
    order = sorted(range(len(ds._image_files)), key=lambda i: str(ds._image_files[i]))
    ds._image_files = [ds._image_files[i] for i in order]
    ds._labels = [ds._labels[i] for i in order]
    return split_view(ImageDataset(TorchvisionImages(ds), ds._labels, ds.classes), split)


def _caltech101(d: Path, split: str, download: bool) -> ImageDataset:
    ds = tvd.Caltech101(str(tv_root(d, "caltech101/101_ObjectCategories")), download=download)
    return split_view(ImageDataset(TorchvisionImages(ds), ds.y, ds.categories), split)


def _caltech256(d: Path, split: str, download: bool) -> ImageDataset:
    ds = tvd.Caltech256(str(tv_root(d, "caltech256/256_ObjectCategories")), download=download)
    # folder "001.ak47" -> class "ak47" (the number is a file-system index, not part of the name)
    out = ImageDataset(TorchvisionImages(ds), ds.y, [re.sub(r"^\d+\.", "", c) for c in ds.categories])
    out.categories = list(ds.categories)
    return split_view(out, split)


def _eurosat(d: Path, split: str, download: bool) -> ImageDataset:
    ds = tvd.EuroSAT(str(tv_root(d, "eurosat/2750")), download=download, loader=pil_loader)
    return split_view(ImageDataset(TorchvisionImages(ds), ds.targets, ds.classes), split)


SPECS: list[DatasetSpec] = [
    DatasetSpec("sun397", "SUN397", 397, "SUN397", _sun397,
                layout="SUN397/ClassName.txt and SUN397/<letter>/<class>[/<sub>]/sun_*.jpg",
                files={"*": ("ClassName.txt",)}, splits=UNSPLIT_SPLITS, test_split=_SPLIT_NOTE, download=True,
                source="torchvision's download"),
    DatasetSpec("eurosat", "EuroSAT", 10, "eurosat/2750", _eurosat,
                layout="eurosat/2750/<Class>/<Class>_<n>.jpg", splits=UNSPLIT_SPLITS, test_split=_SPLIT_NOTE,
                download=True, source="torchvision's download"),
    DatasetSpec("caltech101", "Caltech-101", 101, "caltech101/101_ObjectCategories", _caltech101,
                layout="caltech101/101_ObjectCategories/<class>/image_NNNN.jpg (BACKGROUND_Google is dropped)",
                splits=UNSPLIT_SPLITS, test_split=_SPLIT_NOTE, download=True, source="torchvision's download"),
    DatasetSpec("caltech256", "Caltech-256", 257, "caltech256/256_ObjectCategories", _caltech256,
                layout="caltech256/256_ObjectCategories/NNN.<class>/NNN_MMMM.jpg (257 classes with clutter)",
                splits=UNSPLIT_SPLITS, test_split=_SPLIT_NOTE, download=True, source="torchvision's download"),
]
