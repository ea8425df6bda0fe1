"""Format-faithful miniature datasets, written under a data root, one writer per registered dataset.

Each writer lays files out exactly as the real download (and torchvision's reader) expects -- CIFAR pickles,
STL-10 column-major binaries, PCAM h5, Flowers/Cars .mat files, ImageNet's meta.bin, TinyImageNet's folders
-- with a few tiny images per split, and returns a :class:`Fixture`: the expected class names and, per split,
the expected labels in dataset order. Every image is a solid colour chosen by its label (:func:`color`), so
tests can check that each image comes back with its own label.
"""
from __future__ import annotations

import gzip
import json
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.io as sio
import torch
from PIL import Image

import pmgaft  # noqa: F401  (torchvision shim)
from pmgaft.data import classnames
from torchvision.datasets import Flowers102


@dataclass
class Fixture:
    classes: list[str]
    splits: dict[str, list[int]]  # split -> expected labels in dataset order
    size: tuple[int, int] = (224, 224)  # image H, W after the default transform
    gray: bool = False  # stored as grayscale: every channel equals color(label)[0]


def color(label: int) -> tuple[int, int, int]:
    """The solid RGB colour of every fixture image with this label."""
    return (40 + 53 * label) % 200 + 30, (90 + 71 * label) % 200 + 30, (150 + 37 * label) % 200 + 30


def image(label: int, size: tuple[int, int] = (10, 8), mode: str = "RGB") -> Image.Image:
    """A solid ``size`` (W, H) image in ``label``'s colour (mode "L": its red value as gray)."""
    im = Image.new("RGB", size, color(label))
    return im.convert("L").point(lambda _: color(label)[0]) if mode == "L" else im


def save(path: Path, label: int, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image(label, mode=mode).save(path, quality=95)


def _array(labels: list[int], side: int) -> np.ndarray:
    """[N, side, side, 3] uint8 solid images, HWC."""
    return np.stack([np.full((side, side, 3), color(t), dtype=np.uint8) for t in labels])


def _pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def _cifar_rows(labels: list[int]) -> np.ndarray:
    return _array(labels, 32).transpose(0, 3, 1, 2).reshape(len(labels), -1)  # [N, 3072], channel planes


def cifar10(root: Path) -> Fixture:
    d, splits = root / "cifar-10-batches-py", {"test": [0, 1, 2, 1], "train": [3, 4, 5, 6, 7]}
    _pickle(d / "batches.meta", {"label_names": classnames.CIFAR10, "num_vis": 3072})
    _pickle(d / "test_batch", {"data": _cifar_rows(splits["test"]), "labels": splits["test"]})
    for i, t in enumerate(splits["train"], 1):
        _pickle(d / f"data_batch_{i}", {"data": _cifar_rows([t]), "labels": [t]})
    return Fixture(classnames.CIFAR10, splits, (32, 32))


def cifar100(root: Path) -> Fixture:
    d, splits = root / "cifar-100-python", {"test": [5, 0, 99], "train": [1, 2]}
    _pickle(d / "meta", {"fine_label_names": classnames.CIFAR100, "coarse_label_names": ["c"] * 20})
    for split, labels in splits.items():
        _pickle(d / split, {"data": _cifar_rows(labels), "fine_labels": labels, "coarse_labels": [0] * len(labels)})
    return Fixture(classnames.CIFAR100, splits, (32, 32))


def stl10(root: Path) -> Fixture:
    d, splits = root / "stl10_binary", {"test": [0, 9, 3], "train": [1, 2]}
    d.mkdir(parents=True)
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (d / "class_names.txt").write_text("\n".join(names) + "\n")
    for split, labels in splits.items():  # column-major CHW planes, labels 1-based
        (d / f"{split}_X.bin").write_bytes(_array(labels, 96).transpose(0, 3, 2, 1).tobytes())
        (d / f"{split}_y.bin").write_bytes(bytes(t + 1 for t in labels))
    return Fixture(names, splits, (96, 96))


def pcam(root: Path) -> Fixture:
    import h5py

    d, splits = root / "pcam", {"test": [0, 1, 1, 0], "train": [1, 0], "val": [0, 1]}
    d.mkdir(parents=True)
    for split, labels in splits.items():
        stem = f"camelyonpatch_level_2_split_{'valid' if split == 'val' else split}"
        with h5py.File(d / f"{stem}_x.h5", "w") as f:
            f["x"] = _array(labels, 96)
        with h5py.File(d / f"{stem}_y.h5", "w") as f:
            f["y"] = np.array(labels, dtype=np.uint8).reshape(-1, 1, 1, 1)
    return Fixture(classnames.PCAM, splits, (96, 96))


def food101(root: Path) -> Fixture:
    d, classes = root / "food-101", ["apple_pie", "baby_back_ribs"]
    meta = {"test": {"apple_pie": ["apple_pie/101", "apple_pie/102"], "baby_back_ribs": ["baby_back_ribs/103"]},
            "train": {"apple_pie": ["apple_pie/201"], "baby_back_ribs": ["baby_back_ribs/202"]}}
    (d / "meta").mkdir(parents=True)
    (d / "meta" / "classes.txt").write_text("\n".join(classes) + "\n")
    for split, entries in meta.items():
        (d / "meta" / f"{split}.json").write_text(json.dumps(entries))
        for c, ids in entries.items():
            for rel in ids:
                save(d / "images" / f"{rel}.jpg", classes.index(c))
    return Fixture(classes, {"test": [0, 0, 1], "train": [0, 1]})


def oxford_pets(root: Path) -> Fixture:
    d = root / "oxford-iiit-pet"
    rows = {"test": [("Abyssinian_1", 1, 1), ("american_bulldog_7", 2, 2), ("Abyssinian_2", 1, 1)],
            "trainval": [("american_bulldog_3", 2, 2), ("Abyssinian_5", 1, 1)]}
    (d / "annotations").mkdir(parents=True)
    for split, entries in rows.items():
        lines = [f"{name} {cls} {species} 1" for name, cls, species in entries]
        (d / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
        for name, cls, _ in entries:
            save(d / "images" / f"{name}.jpg", cls - 1)
    return Fixture(["Abyssinian", "American Bulldog"], {"test": [0, 1, 0], "train": [1, 0]})


def flowers102(root: Path) -> Fixture:
    d, labels = root / "flowers-102", [1, 2, 102, 1, 2, 3, 3]  # 1-based, image_00001 .. image_00007
    ids = {"tstid": [5, 3, 1], "trnid": [2, 6], "valid": [4, 7]}
    d.mkdir(parents=True)
    sio.savemat(d / "imagelabels.mat", {"labels": np.array([labels])})
    sio.savemat(d / "setid.mat", {k: np.array([v]) for k, v in ids.items()})
    for i, t in enumerate(labels, 1):
        save(d / "jpg" / f"image_{i:05d}.jpg", t - 1)
    split_of = {"test": "tstid", "train": "trnid", "val": "valid"}
    return Fixture(list(Flowers102.classes), {s: [labels[i - 1] - 1 for i in ids[k]] for s, k in split_of.items()})


def dtd(root: Path) -> Fixture:
    d, classes = root / "dtd" / "dtd", ["banded", "zigzagged"]
    files = {"test": ["banded/banded_0001.jpg", "zigzagged/zigzagged_0002.jpg", "banded/banded_0003.jpg"],
             "train": ["zigzagged/zigzagged_0004.jpg", "banded/banded_0005.jpg"],
             "val": ["banded/banded_0006.jpg", "zigzagged/zigzagged_0007.jpg"]}
    (d / "labels").mkdir(parents=True)
    for split, rels in files.items():
        (d / "labels" / f"{split}1.txt").write_text("\n".join(rels) + "\n")
        for rel in rels:
            save(d / "images" / rel, classes.index(rel.split("/")[0]))
    return Fixture(classes, {s: [classes.index(r.split("/")[0]) for r in rels] for s, rels in files.items()})


def fgvc_aircraft(root: Path) -> Fixture:
    d, classes = root / "fgvc-aircraft-2013b" / "data", ["707-320", "A300B4", "Boeing 717"]
    rows = {"test": [("1025794", 0), ("1340192", 2), ("0056978", 1)], "train": [("1111111", 1), ("2222222", 2)],
            "val": [("3333333", 0), ("4444444", 1)]}
    d.mkdir(parents=True)
    (d / "variants.txt").write_text("\n".join(classes) + "\n")
    for split, entries in rows.items():
        (d / f"images_variant_{split}.txt").write_text("".join(f"{i} {classes[t]}\n" for i, t in entries))
        for i, t in entries:
            save(d / "images" / f"{i}.jpg", t)
    return Fixture(classes, {s: [t for _, t in e] for s, e in rows.items()})


def stanford_cars(root: Path) -> Fixture:
    d = root / "stanford_cars"
    classes = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi R8 Coupe 2012"]
    rows = {"test": [("00001.jpg", 3), ("00002.jpg", 1), ("00003.jpg", 2)], "train": [("00001.jpg", 2),
                                                                                      ("00002.jpg", 1)]}
    (d / "devkit").mkdir(parents=True)
    names = np.empty((1, len(classes)), dtype=object)
    names[0, :] = classes
    sio.savemat(d / "devkit" / "cars_meta.mat", {"class_names": names})
    where = {"test": (d / "cars_test_annos_withlabels.mat", d / "cars_test"),
             "train": (d / "devkit" / "cars_train_annos.mat", d / "cars_train")}
    fields = [(f, "O") for f in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")]
    for split, entries in rows.items():
        annotations = np.zeros((1, len(entries)), dtype=fields)
        for i, (fname, cls) in enumerate(entries):  # classes are 1-based in the .mat files
            annotations[0, i] = (1, 1, 9, 7, cls, fname)
            save(where[split][1] / fname, cls - 1)
        sio.savemat(where[split][0], {"annotations": annotations})
    return Fixture(classes, {s: [c - 1 for _, c in e] for s, e in rows.items()})


def imagenet(root: Path) -> Fixture:
    d = root / "imagenet"
    synonyms = {"n01440764": ("tench", "Tinca tinca"), "n01443537": ("goldfish", "Carassius auratus"),
                "n01484850": ("great white shark", "white shark")}
    files = {"val": [("n01484850", "ILSVRC2012_val_00000001"), ("n01440764", "ILSVRC2012_val_00000002"),
                     ("n01443537", "ILSVRC2012_val_00000003"), ("n01440764", "ILSVRC2012_val_00000004")],
             "train": [("n01443537", "n01443537_1"), ("n01484850", "n01484850_2"), ("n01440764", "n01440764_3")]}
    d.mkdir(parents=True)
    wnids = sorted(synonyms)
    torch.save((synonyms, [w for w, _ in files["val"]]), d / "meta.bin")  # what parse_devkit_archive writes
    for split, entries in files.items():  # every class has images in both splits, as in the real data
        for wnid, stem in entries:
            save(d / split / wnid / f"{stem}.JPEG", wnids.index(wnid))
    order = {s: [wnids.index(w) for w, _ in sorted(e)] for s, e in files.items()}
    return Fixture([synonyms[w][0] for w in wnids], {"test": order["val"], "train": order["train"]})


def tinyimagenet(root: Path) -> Fixture:
    d, wnids = root / "tiny-imagenet-200", ["n02124075", "n01443537"]  # wnids.txt is not sorted
    d.mkdir(parents=True)
    (d / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (d / "words.txt").write_text("n00001740\tentity\nn01443537\tgoldfish, Carassius auratus\n"
                                 "n02124075\tEgyptian cat\n")
    labels = {"n01443537": 0, "n02124075": 1}  # sorted wnids
    val = [("val_0.JPEG", "n02124075"), ("val_1.JPEG", "n01443537"), ("val_2.JPEG", "n02124075")]
    (d / "val").mkdir()
    (d / "val" / "val_annotations.txt").write_text("".join(f"{f}\t{w}\t0\t0\t8\t8\n" for f, w in val))
    for f, w in val:
        save(d / "val" / "images" / f, labels[w])
    for w in wnids:
        (d / "train" / w).mkdir(parents=True)
        (d / "train" / w / f"{w}_boxes.txt").write_text(f"{w}_0.JPEG\t0\t0\t8\t8\n")
        for i in range(2):
            save(d / "train" / w / "images" / f"{w}_{i}.JPEG", labels[w])
    return Fixture(["goldfish", "Egyptian cat"], {"test": [labels[w] for _, w in val], "train": [0, 0, 1, 1]})


def _folders(base: Path, files: dict[str, int], classes: list[str], **saves: str) -> Fixture:
    """Image files at ``base/<rel>`` with labels; the expected order is sorted by path (split 'all')."""
    for rel, label in files.items():
        save(base / rel, label, **({"mode": saves[rel]} if rel in saves else {}))
    return Fixture(classes, {"all": [files[rel] for rel in sorted(files, key=lambda r: str(base / r))]})


def sun397(root: Path) -> Fixture:
    d = root / "SUN397"
    d.mkdir()
    (d / "ClassName.txt").write_text("/a/abbey\n/a/apartment_building/outdoor\n/b/bedroom\n")
    files = {"a/abbey/sun_aaa.jpg": 0, "a/abbey/sun_aab.jpg": 0, "a/abbey/sun_aac.jpg": 0,
             "a/apartment_building/outdoor/sun_bbb.jpg": 1, "a/apartment_building/outdoor/sun_bbc.jpg": 1,
             "b/bedroom/sun_ccc.jpg": 2, "b/bedroom/sun_ccd.jpg": 2}
    return _folders(d, files, ["abbey", "apartment_building/outdoor", "bedroom"])


def eurosat(root: Path) -> Fixture:
    classes = ["AnnualCrop", "Forest", "SeaLake"]
    files = {f"{c}/{c}_{i}.jpg": k for k, c in enumerate(classes) for i in (1, 2, 3)}
    return _folders(root / "eurosat" / "2750", files, classes)


def caltech101(root: Path) -> Fixture:
    d = root / "caltech101" / "101_ObjectCategories"
    save(d / "BACKGROUND_Google" / "image_0001.jpg", 5)  # not a class: torchvision drops it
    files = {f"{c}/image_{i:04d}.jpg": k for k, c in enumerate(["Faces", "accordion"]) for i in (1, 2, 3)}
    return _folders(d, files, ["Faces", "accordion"], **{"accordion/image_0002.jpg": "L"})  # one gray image


def caltech256(root: Path) -> Fixture:
    folders = ["001.ak47", "002.american-flag", "003.backpack"]
    files = {f"{c}/{k + 1:03d}_{i:04d}.jpg": k for k, c in enumerate(folders) for i in (1, 2)}
    return _folders(root / "caltech256" / "256_ObjectCategories", files, ["ak47", "american-flag", "backpack"])


def country211(root: Path) -> Fixture:
    """torchvision's Country211 layout: an ImageFolder per split (``valid`` on disk), class folders = ISO codes."""
    codes, d = ["AD", "FR", "XK"], root / "country211"  # sorted, as ImageFolder orders them
    splits = {"train": [0, 1, 2, 2], "val": [0, 1, 2], "test": [2, 0, 1, 1]}
    for split, labels in splits.items():
        for i, t in enumerate(labels):
            save(d / ("valid" if split == "val" else split) / codes[t] / f"{i:06d}.jpg", t)
    return Fixture(codes, {s: sorted(labels) for s, labels in splits.items()})


def _idx(path: Path, array: np.ndarray) -> None:
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def fashion_mnist(root: Path) -> Fixture:
    d, splits = root / "fashion-mnist", {"test": [9, 0, 4], "train": [1, 2]}
    d.mkdir()
    for split, labels in splits.items():
        prefix = "t10k" if split == "test" else "train"
        _idx(d / f"{prefix}-images-idx3-ubyte.gz", np.stack([np.full((28, 28), color(t)[0]) for t in labels]))
        _idx(d / f"{prefix}-labels-idx1-ubyte.gz", np.array(labels))
    return Fixture(classnames.FASHION_MNIST, splits, (28, 28), gray=True)


FIXTURES: dict[str, Callable[[Path], Fixture]] = {
    "tinyimagenet": tinyimagenet, "cifar10": cifar10, "cifar100": cifar100, "stl10": stl10, "sun397": sun397,
    "food101": food101, "oxford_pets": oxford_pets, "flowers102": flowers102, "dtd": dtd, "eurosat": eurosat,
    "fgvc_aircraft": fgvc_aircraft, "imagenet": imagenet, "caltech101": caltech101, "caltech256": caltech256,
    "stanford_cars": stanford_cars, "pcam": pcam, "country211": country211, "fashion_mnist": fashion_mnist,
}

# the bundled offline sets are tested on their real data: expected size per split
BUNDLED: dict[str, dict[str, int]] = {
    "mnist": {"test": 1000, "train": 4000}, "digits": {"test": 359, "train": 1438},
    **{f"foolbox_{s}": {"test": 20} for s in ("imagenet", "cifar10", "cifar100", "mnist", "fashion_mnist")},
}
