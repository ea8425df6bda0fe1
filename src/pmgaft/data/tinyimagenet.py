"""TinyImageNet (the fine-tuning set) read as-is from the standard ``tiny-imagenet-200`` layout.

Layout::

    tiny-imagenet-200/wnids.txt                    200 WordNet ids
    tiny-imagenet-200/words.txt                    "<wnid>\\t<synonym>, <synonym>, ..." (all of WordNet)
    tiny-imagenet-200/train/<wnid>/images/*.JPEG   500 per class  -> split "train"
    tiny-imagenet-200/val/images/*.JPEG            10,000         -> split "test"
    tiny-imagenet-200/val/val_annotations.txt      "<file>\\t<wnid>\\t<box>"

The official ``test/`` folder has no labels, so ``"test"`` is the val set (as in the paper). A val folder
already re-arranged into ``val/<wnid>/...`` (as the released code's ImageFolder needs) is read too. Labels
follow the *sorted* wnids, as torchvision's ImageFolder on ``train/`` (the released code) orders them;
``.classes`` are the first synonym in words.txt, ``.wnids`` the ids.
"""
from __future__ import annotations

from pathlib import Path

from pmgaft.data.base import FileImages, ImageDataset
from pmgaft.data.spec import DatasetSpec
from pmgaft.errors import PmgaftError

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
_IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in _IMAGE_SUFFIXES


def _read_wnids(d: Path) -> tuple[list[str], list[str]]:
    wnids = sorted({line.strip() for line in (d / "wnids.txt").read_text().splitlines() if line.strip()})
    names: dict[str, str] = {}
    with open(d / "words.txt") as f:
        for line in f:
            wnid, _, words = line.rstrip("\n").partition("\t")
            names[wnid] = words.split(",")[0].strip()
    return wnids, [names.get(w) or w for w in wnids]


def _folder_samples(base: Path, index: dict[str, int]) -> list[tuple[Path, int]]:
    """``base/<wnid>/**/image`` for every wnid (train/, or a val/ re-arranged into class folders)."""
    return [(p, label) for wnid, label in index.items() if (base / wnid).is_dir()
            for p in sorted((base / wnid).rglob("*")) if _is_image(p)]


def _val_samples(d: Path, index: dict[str, int]) -> list[tuple[Path, int]]:
    val = d / "val"
    annotations = val / "val_annotations.txt"
    if not annotations.is_file():
        return _folder_samples(val, index)
    samples = []
    for n, line in enumerate(annotations.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or parts[1] not in index:
            raise PmgaftError(f"{annotations}:{n}: expected '<file>\\t<wnid>\\t...' with a wnid from wnids.txt, "
                              f"got {line!r}")
        samples.append((val / "images" / parts[0], index[parts[1]]))
    return sorted(samples)


def _build(d: Path, split: str, download: bool) -> ImageDataset:
    if download and not (d / "wnids.txt").is_file():
        download_tinyimagenet(d.parent)
    wnids, classes = _read_wnids(d)
    index = {w: i for i, w in enumerate(wnids)}
    samples = _folder_samples(d / "train", index) if split == "train" else _val_samples(d, index)
    out = ImageDataset(FileImages([p for p, _ in samples]), [t for _, t in samples], classes, split=split)
    out.wnids = wnids
    return out


def download_tinyimagenet(root: Path) -> None:
    """Fetch and unpack the official zip into ``root/tiny-imagenet-200`` (md5-checked)."""
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(URL, download_root=str(root), md5=MD5, remove_finished=True)


SPECS: list[DatasetSpec] = [
    DatasetSpec("tinyimagenet", "TinyImageNet", 200, "tiny-imagenet-200", _build, any_folder_name=True,
                layout="tiny-imagenet-200/{wnids.txt,words.txt,train/<wnid>/images/*.JPEG,val/images/*.JPEG,"
                       "val/val_annotations.txt}",
                files={"*": ("wnids.txt", "words.txt"), "test": ("val",), "train": ("train",)},
                test_split="val (the official test folder has no labels)", download=True,
                sizes={"train": 100_000, "test": 10_000},
                source=URL, zero_shot=False),
]
