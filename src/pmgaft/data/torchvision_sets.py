"""The paper's datasets that torchvision reads and that ship an official test split, and Country211 (the 16th set
of the test-time-counterattack evaluation, ``--protocol ttc``).

Each builder constructs the torchvision class without a transform and wraps what it found in
:class:`ImageDataset`: file-based sets as their file list (:class:`FileImages`: decoding, errors and cache
fingerprints see the paths), CIFAR/STL-10 as their uint8 arrays, PCAM through torchvision's h5 reader. Labels are
the class's label list (a private attribute for some classes: torchvision exposes no public one, and reading
labels through ``__getitem__`` would decode images).

MD5 checks: CIFAR-10/100, STL-10 and Flowers-102 hash their files on *every* construction (170 MB for CIFAR,
2.6 GB for STL-10's unlabelled file, needed even for the test split) and reject any copy that is not
byte-identical (format-faithful test fixtures, re-packed copies). The ``_NoMd5*`` subclasses check that the
split's files exist instead; the format readers still validate the contents, and ``download=True`` still
verifies the downloaded archive's md5. No other class here hashes at load time.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable

import pmgaft  # noqa: F401  (torchvision shim)
from torchvision import datasets as tvd

from pmgaft.data import classnames
from pmgaft.data.base import ArrayImages, FileImages, ImageDataset, TorchvisionImages
from pmgaft.data.spec import DatasetSpec, tv_root


class _NoMd5Cifar:
    """CIFAR without per-load md5 (see module docstring): the split's pickles and the meta file must exist."""

    root: str
    train: bool
    base_folder: str
    train_list: list[list[str]]
    test_list: list[list[str]]
    meta: dict[str, str]

    def _check_integrity(self) -> bool:
        names = [f for f, _ in (self.train_list if self.train else self.test_list)] + [self.meta["filename"]]
        return all(os.path.isfile(os.path.join(self.root, self.base_folder, f)) for f in names)

    def _load_meta(self) -> None:
        with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class _NoMd5CIFAR10(_NoMd5Cifar, tvd.CIFAR10):
    pass


class _NoMd5CIFAR100(_NoMd5Cifar, tvd.CIFAR100):
    pass


class _NoMd5STL10(tvd.STL10):
    """STL-10 without per-load md5: only the split's two binaries must exist (not the 2.6 GB unlabelled one)."""

    def _check_integrity(self) -> bool:
        prefix = "test" if self.split == "test" else "train"
        return all(os.path.isfile(os.path.join(self.root, self.base_folder, f"{prefix}_{xy}.bin")) for xy in "Xy")


class _NoMd5Flowers102(tvd.Flowers102):
    """Flowers-102 without per-load md5 of its two .mat files."""

    def _check_integrity(self) -> bool:
        return self._images_folder.is_dir() and all(
            (self._base_folder / self._file_dict[k][0]).is_file() for k in ("label", "setid"))


def _files(paths: Any, targets: Any, classes: Any, split: str) -> ImageDataset:
    return ImageDataset(FileImages(list(paths)), list(targets), list(classes), split=split)


def _cifar(cls: type, subdir: str) -> Callable[[Path, str, bool], ImageDataset]:
    def build(d: Path, split: str, download: bool) -> ImageDataset:
        ds = cls(tv_root(d, subdir), train=split == "train", download=download)
        names = [f for f, _ in (ds.train_list if split == "train" else ds.test_list)]
        images = ArrayImages(ds.data, origin=f"{d}/{'+'.join(names)}")  # [N, 32, 32, 3] uint8
        return ImageDataset(images, ds.targets, ds.classes, split=split)
    return build


def _stl10(d: Path, split: str, download: bool) -> ImageDataset:
    ds = _NoMd5STL10(tv_root(d, "stl10_binary"), split=split, download=download)
    images = ArrayImages(ds.data, origin=str(d / f"{split}_X.bin"), channels_first=True)  # [N, 3, 96, 96]
    return ImageDataset(images, ds.labels.tolist(), ds.classes, split=split)


def _pcam(d: Path, split: str, download: bool) -> ImageDataset:
    import h5py

    ds = tvd.PCAM(tv_root(d, "pcam"), split=split, download=download)
    with h5py.File(d / ds._FILES[split]["targets"][0]) as f:
        targets = f["y"][:, 0, 0, 0].tolist()  # [N, 1, 1, 1] in the official files
    images = TorchvisionImages(ds, files=[d / ds._FILES[split]["images"][0]])
    return ImageDataset(images, targets, classnames.PCAM, split=split)


def _labels_list(cls: type, subdir: str, split_map: dict[str, str] | None = None,
                 files: str = "_image_files", **kwargs: Any) -> Callable[[Path, str, bool], ImageDataset]:
    """Builder for classes keeping ``._labels``, ``.classes`` and a file list (Food-101, Pets, Flowers, DTD,
    Aircraft)."""
    def build(d: Path, split: str, download: bool) -> ImageDataset:
        ds = cls(tv_root(d, subdir), split=(split_map or {}).get(split, split), download=download, **kwargs)
        return _files(getattr(ds, files), ds._labels, ds.classes, split)
    return build


def _cars(d: Path, split: str, download: bool) -> ImageDataset:
    ds = tvd.StanfordCars(tv_root(d, "stanford_cars"), split=split)
    return _files([p for p, _ in ds._samples], [t for _, t in ds._samples], ds.classes, split)


def _country211(d: Path, split: str, download: bool) -> ImageDataset:
    ds = tvd.Country211(tv_root(d, "country211"), split="valid" if split == "val" else split, download=download)
    return _files([p for p, _ in ds.samples], ds.targets, ds.classes, split)  # classes: ISO 3166 alpha-2 codes


def _imagenet(d: Path, split: str, download: bool) -> ImageDataset:
    ds = tvd.ImageNet(str(d), split="val" if split == "test" else "train")
    out = _files([p for p, _ in ds.samples], ds.targets, [names[0] for names in ds.classes], split)
    out.wnids = list(ds.wnids)  # first WordNet synonym as the class name; the ids for the reference name list
    return out


_CAN_DOWNLOAD = "torchvision's download"
SPECS: list[DatasetSpec] = [
    DatasetSpec("cifar10", "CIFAR-10", 10, "cifar-10-batches-py", _cifar(_NoMd5CIFAR10, "cifar-10-batches-py"),
                layout="cifar-10-batches-py/ with data_batch_1..5, test_batch and batches.meta (python pickles)",
                files={"*": ("batches.meta",), "test": ("test_batch",),
                       "train": tuple(f"data_batch_{i}" for i in range(1, 6))},
                test_split="test_batch", sizes={"train": 50_000, "test": 10_000}, download=True, native_size=32, source=_CAN_DOWNLOAD),
    DatasetSpec("cifar100", "CIFAR-100", 100, "cifar-100-python", _cifar(_NoMd5CIFAR100, "cifar-100-python"),
                layout="cifar-100-python/ with train, test and meta (python pickles)",
                files={"*": ("meta",), "test": ("test",), "train": ("train",)},
                test_split="test (fine labels)", sizes={"train": 50_000, "test": 10_000}, download=True, native_size=32,
                source=_CAN_DOWNLOAD),
    DatasetSpec("stl10", "STL-10", 10, "stl10_binary", _stl10,
                layout="stl10_binary/ with {train,test}_X.bin, {train,test}_y.bin and class_names.txt",
                files={"*": ("class_names.txt",), "test": ("test_X.bin", "test_y.bin"),
                       "train": ("train_X.bin", "train_y.bin")},
                test_split="test; train = the labelled train images", sizes={"train": 5_000, "test": 8_000},
                download=True, native_size=96,
                source=_CAN_DOWNLOAD),
    DatasetSpec("food101", "Food-101", 101, "food-101", _labels_list(tvd.Food101, "food-101"),
                layout="food-101/meta/{train,test}.json and food-101/images/<class>/<id>.jpg",
                files={"*": ("images",), "test": ("meta/test.json",), "train": ("meta/train.json",)},
                test_split="test", sizes={"train": 75_750, "test": 25_250}, download=True, source=_CAN_DOWNLOAD),
    DatasetSpec("oxford_pets", "Oxford-IIIT Pets", 37, "oxford-iiit-pet",
                _labels_list(tvd.OxfordIIITPet, "oxford-iiit-pet", {"train": "trainval"}, files="_images"),
                layout="oxford-iiit-pet/annotations/{trainval,test}.txt and oxford-iiit-pet/images/<Breed>_<n>.jpg",
                files={"*": ("images",), "test": ("annotations/test.txt",), "train": ("annotations/trainval.txt",)},
                test_split="test; train = trainval", sizes={"train": 3_680, "test": 3_669}, download=True, source=_CAN_DOWNLOAD),
    DatasetSpec("flowers102", "Flowers-102", 102, "flowers-102",
                _labels_list(_NoMd5Flowers102, "flowers-102"),
                layout="flowers-102/{imagelabels.mat,setid.mat} and flowers-102/jpg/image_NNNNN.jpg",
                files={"*": ("jpg", "imagelabels.mat", "setid.mat")}, splits=("train", "val", "test"),
                test_split="tstid; train/val = trnid/valid", sizes={"train": 1_020, "val": 1_020, "test": 6_149},
                download=True,
                source=_CAN_DOWNLOAD),
    DatasetSpec("dtd", "DTD", 47, "dtd/dtd", _labels_list(tvd.DTD, "dtd/dtd"),
                layout="dtd/dtd/labels/{train,val,test}1.txt and dtd/dtd/images/<class>/<image>.jpg",
                files={"*": ("images",), "test": ("labels/test1.txt",), "train": ("labels/train1.txt",),
                       "val": ("labels/val1.txt",)}, splits=("train", "val", "test"),
                test_split="test1 (partition 1)", sizes={"train": 1_880, "val": 1_880, "test": 1_880}, download=True, source=_CAN_DOWNLOAD),
    DatasetSpec("fgvc_aircraft", "FGVC-Aircraft", 100, "fgvc-aircraft-2013b",
                _labels_list(tvd.FGVCAircraft, "fgvc-aircraft-2013b"),
                layout="fgvc-aircraft-2013b/data/{variants.txt,images_variant_<split>.txt,images/<id>.jpg}",
                files={"*": ("data/images", "data/variants.txt"), "test": ("data/images_variant_test.txt",),
                       "train": ("data/images_variant_train.txt",), "val": ("data/images_variant_val.txt",)},
                splits=("train", "val", "test"), test_split="test (variant level, 100 classes)",
                sizes={"train": 3_334, "val": 3_333, "test": 3_333},
                download=True, source=_CAN_DOWNLOAD),
    DatasetSpec("imagenet", "ImageNet", 1000, "imagenet", _imagenet, any_folder_name=True,
                layout="imagenet/meta.bin + imagenet/val/<wnid>/*.JPEG (train/<wnid>/ for train), or "
                       "imagenet/ILSVRC2012_devkit_t12.tar.gz + ILSVRC2012_img_val.tar, unpacked on first use",
                files={"*": ("meta.bin|ILSVRC2012_devkit_t12.tar.gz",), "test": ("val|ILSVRC2012_img_val.tar",),
                       "train": ("train|ILSVRC2012_img_train.tar",)},
                test_split="val", sizes={"train": 1_281_167, "test": 50_000}, per_class={"test": 50},
                source="https://image-net.org/download (ILSVRC2012_devkit_t12.tar.gz and ILSVRC2012_img_val.tar; "
                       "put them in the imagenet folder)",
                split_sources={"train": "https://image-net.org/download (free registration): "
                                        "ILSVRC2012_img_train.tar (138 GB) and ILSVRC2012_devkit_t12.tar.gz into the "
                                        "imagenet folder, unpacked to train/<wnid>/*.JPEG on first use; or pass "
                                        "--dataset folder:PATH for a folder of its 1000 wnid class folders"}),
    DatasetSpec("stanford_cars", "Stanford Cars", 196, "stanford_cars", _cars,
                layout="stanford_cars/{cars_test/,cars_test_annos_withlabels.mat,cars_train/} and "
                       "stanford_cars/devkit/{cars_meta.mat,cars_train_annos.mat}",
                files={"*": ("devkit/cars_meta.mat",), "test": ("cars_test", "cars_test_annos_withlabels.mat"),
                       "train": ("cars_train", "devkit/cars_train_annos.mat")},
                test_split="cars_test", sizes={"train": 8_144, "test": 8_041},
                source="a mirror of Stanford Cars (the original URL is gone, torchvision cannot download it) "
                       "arranged as torchvision.datasets.StanfordCars expects"),
    DatasetSpec("pcam", "PCAM", 2, "pcam", _pcam,
                layout="pcam/camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5",
                files={s: (f"camelyonpatch_level_2_split_{f}_x.h5", f"camelyonpatch_level_2_split_{f}_y.h5")
                       for s, f in (("train", "train"), ("val", "valid"), ("test", "test"))},
                splits=("train", "val", "test"), test_split="test; val = valid", sizes={"train": 262_144, "val": 32_768, "test": 32_768},
                download=True,
                native_size=96, source="torchvision's download (needs `pip install gdown`)"),
    DatasetSpec("country211", "Country211", 211, "country211", _country211,
                layout="country211/{train,valid,test}/<ISO 3166 alpha-2 code>/<id>.jpg (OpenAI's YFCC100m subset)",
                files={"train": ("train",), "val": ("valid",), "test": ("test",)}, splits=("train", "val", "test"),
                test_split="test (100 images per country); val = valid", download=True,
                sizes={"train": 31_650, "val": 10_550, "test": 21_100},
                per_class={"train": 150, "val": 50, "test": 100},
                source="torchvision's download (country211.tgz, 11 GB, from openaipublic.azureedge.net)"),
]
