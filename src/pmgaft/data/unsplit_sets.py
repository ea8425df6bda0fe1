"""The paper's datasets that ship without a train/test split: SUN397, Caltech-101, Caltech-256, EuroSAT.

torchvision reads the whole set; :mod:`pmgaft.data.splits` cuts a documented deterministic 70/30 split per
class (seed 0), and ``split="all"`` gives the whole set: what both reference protocols score (docs/protocols.md,
tga-zsr, official-code). ``"all"`` builds no split, so it costs only torchvision's file listing.

Standard sizes (``DatasetSpec.sizes["all"]``) are what torchvision's class enumerates on the official archive:
SUN397 108,754 (every ``sun_*.jpg`` under ``SUN397/``, its rglob; the count in torchvision's docstring);
EuroSAT 27,000 (every image of the 10 class folders of the RGB release); Caltech-101 8,677 (torchvision counts
every entry of the 101 class folders; ``BACKGROUND_Google``'s 467 are dropped); Caltech-256 30,607 (the ``.jpg``
files of the 257 folders, ``257.clutter`` included). The 70/30 ``train``/``test`` counts depend on the per-class
counts of the data on disk: ``None`` (unknown without the data).
"""
from __future__ import annotations

import re
from pathlib import Path

import pmgaft  # noqa: F401  (torchvision shim)
from torchvision import datasets as tvd

from pmgaft.data.base import FileImages, ImageDataset
from pmgaft.data.spec import DatasetSpec, tv_root
from pmgaft.data.splits import TEST_FRACTION, UNSPLIT_SPLITS, split_view

_UNKNOWN = {"train": None, "test": None}
_SPLIT_NOTE = (f"none official: a deterministic per-class split, {TEST_FRACTION:.0%} test (seed 0); "
               f"'all' = the whole set, as both reference protocols score it")


def _sun397(d: Path, split: str, download: bool) -> ImageDataset:
    ds = tvd.SUN397(tv_root(d, "SUN397"), download=download)
    # torchvision lists files in rglob order, which depends on the file system: sort for a stable split
    order = sorted(range(len(ds._image_files)), key=lambda i: str(ds._image_files[i]))
    whole = ImageDataset(FileImages([ds._image_files[i] for i in order]), [ds._labels[i] for i in order],
                         ds.classes)
    return split_view(whole, split)


def _caltech(ds: tvd.Caltech101 | tvd.Caltech256, folder: str, name: str) -> FileImages:
    """The files torchvision's Caltech classes read: ``<folder>/<category>/`` + ``name(label, k)``."""
    base = Path(ds.root) / folder
    return FileImages([base / ds.categories[y] / name(y, k) for y, k in zip(ds.y, ds.index)])


def _caltech101(d: Path, split: str, download: bool) -> ImageDataset:
    ds = tvd.Caltech101(str(tv_root(d, "caltech101/101_ObjectCategories")), download=download)
    images = _caltech(ds, "101_ObjectCategories", lambda y, k: f"image_{k:04d}.jpg")
    return split_view(ImageDataset(images, ds.y, ds.categories), split)


def _caltech256(d: Path, split: str, download: bool) -> ImageDataset:
    ds = tvd.Caltech256(str(tv_root(d, "caltech256/256_ObjectCategories")), download=download)
    images = _caltech(ds, "256_ObjectCategories", lambda y, k: f"{y + 1:03d}_{k:04d}.jpg")
    # folder "001.ak47" -> class "ak47" (the number is a file-system index, not part of the name)
    out = ImageDataset(images, ds.y, [re.sub(r"^\d+\.", "", c) for c in ds.categories])
    out.categories = list(ds.categories)
    return split_view(out, split)


def _eurosat(d: Path, split: str, download: bool) -> ImageDataset:
    ds = tvd.EuroSAT(str(tv_root(d, "eurosat/2750")), download=download)
    return split_view(ImageDataset(FileImages([p for p, _ in ds.samples]), ds.targets, ds.classes), split)


SPECS: list[DatasetSpec] = [
    DatasetSpec("sun397", "SUN397", 397, "SUN397", _sun397,
                layout="SUN397/ClassName.txt and SUN397/<letter>/<class>[/<sub>]/sun_*.jpg",
                files={"*": ("ClassName.txt",)}, splits=UNSPLIT_SPLITS, test_split=_SPLIT_NOTE, download=True,
                sizes={"all": 108_754, **_UNKNOWN}, source="torchvision's download"),
    DatasetSpec("eurosat", "EuroSAT", 10, "eurosat/2750", _eurosat,
                layout="eurosat/2750/<Class>/<Class>_<n>.jpg", splits=UNSPLIT_SPLITS, test_split=_SPLIT_NOTE,
                sizes={"all": 27_000, **_UNKNOWN}, download=True, source="torchvision's download"),
    DatasetSpec("caltech101", "Caltech-101", 101, "caltech101/101_ObjectCategories", _caltech101,
                layout="caltech101/101_ObjectCategories/<class>/image_NNNN.jpg (BACKGROUND_Google is dropped)",
                splits=UNSPLIT_SPLITS, test_split=_SPLIT_NOTE, sizes={"all": 8_677, **_UNKNOWN}, download=True,
                source="torchvision's download"),
    DatasetSpec("caltech256", "Caltech-256", 257, "caltech256/256_ObjectCategories", _caltech256,
                layout="caltech256/256_ObjectCategories/NNN.<class>/NNN_MMMM.jpg (257 classes with clutter)",
                splits=UNSPLIT_SPLITS, test_split=_SPLIT_NOTE, sizes={"all": 30_607, **_UNKNOWN}, download=True,
                source="torchvision's download"),
]
