"""What the registry knows about one dataset, and how it finds the data on disk.

A :class:`DatasetSpec` is plain data plus one ``build`` function. Finding the data and explaining what is
missing live here, so every loader fails the same way: a :class:`~pmgaft.errors.PmgaftError` that names the
dataset, the folder looked at, the files missing there, the expected layout and how to get it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

from pmgaft.errors import PmgaftError

if TYPE_CHECKING:
    from pmgaft.data.base import ImageDataset

# (dataset_dir, split, download) -> ImageDataset without a transform
Builder = Callable[[Path, str, bool], "ImageDataset"]


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset.

    ``subdir`` is where the data lives under the data root (``root/subdir`` is the *dataset folder* the builder
    receives). ``files`` maps a split (``"*"``: every split) to the paths, relative to the dataset folder, that
    must exist before loading; ``"a|b"`` accepts either, ``*`` is a glob. ``test_split`` says which official
    split ``"test"`` means. ``native_size`` is set for sets whose images are small and fixed: the default
    transform keeps them at that size (the classifier upsamples inside the model). ``zero_shot``: a zero-shot test
    set (the paper's 15, and Country211). ``offline``: the data ships with an installed package (or a Debian package),
    no data root needed; these are for smoke tests, CI and the quickstart, not part of the paper's protocol.
    ``any_folder_name``: the data root may itself be the dataset folder, whatever its name (own readers and
    torchvision's ImageNet take the dataset folder directly; other torchvision classes append fixed names).
    ``sizes``: the standard image count of each split on the official data (``None``: not known without the
    data, e.g. the 70/30 split of an unsplit set), so a dry run can print counts before any download.
    ``per_class``: for splits where every class has the same number of images (ImageNet val: 50), that number
    (what a dry run subtracts for a class a protocol drops).
    ``split_sources``: how to get a split that ``source`` does not cover (ImageNet's train images).
    """

    name: str
    display_name: str
    num_classes: int
    subdir: str
    build: Builder = field(repr=False, compare=False)
    layout: str = ""
    splits: tuple[str, ...] = ("train", "test")
    test_split: str = "the official test split"
    files: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    download: bool = False
    source: str = ""
    native_size: int | None = None
    zero_shot: bool = True
    offline: bool = False
    any_folder_name: bool = False
    candidates: Callable[[Path], list[Path]] | None = field(default=None, repr=False, compare=False)
    sizes: Mapping[str, int | None] = field(default_factory=dict, compare=False)
    per_class: Mapping[str, int] = field(default_factory=dict, compare=False)
    split_sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def role(self) -> str:
        """``zero-shot`` (the paper's 15 test sets, Country211), ``fine-tune`` (TinyImageNet) or ``offline``."""
        return "zero-shot" if self.zero_shot else ("offline" if self.offline else "fine-tune")

    def size(self, split: str) -> int | None:
        """The standard image count of ``split`` (None when it depends on the data on disk)."""
        return self.sizes.get(split)

    def size_without(self, split: str, dropped_classes: int) -> int | None:
        """The standard count of ``split`` without ``dropped_classes`` whole classes (None when not known)."""
        if not dropped_classes:
            return self.size(split)
        total, each = self.size(split), self.per_class.get(split)
        return None if total is None or each is None else total - dropped_classes * each

    def describe_split(self, split: str) -> str:
        """``"test_batch (10,000 images)"``: which official split ``split`` is, with its standard count."""
        what = self.test_split if split == "test" else ("the whole set" if split == "all" else split)
        n = self.size(split)
        return f"{what} ({n:,} images)" if n is not None else f"{what} (count depends on the data on disk)"

    def required(self, split: str) -> tuple[str, ...]:
        return tuple(self.files.get("*", ())) + tuple(self.files.get(split, ()))

    def dataset_dirs(self, root: Path) -> list[Path]:
        """Folders that may hold the data, most likely first."""
        if self.candidates is not None:
            return self.candidates(root)
        dirs = [root / self.subdir]
        if self.any_folder_name:
            dirs.append(root)
        first = Path(self.subdir).parts[0]
        if root.name == first:  # the user pointed at the dataset folder instead of the data root
            dirs.append(root.parent / self.subdir)
        return dirs

    def missing_files(self, dataset_dir: Path, split: str) -> list[str]:
        if not dataset_dir.is_dir():
            return [f"{dataset_dir.name}/"]
        return [f for f in self.required(split) if not any(_exists(dataset_dir, alt) for alt in f.split("|"))]

    def locate(self, root: str | Path, split: str = "test") -> Path | None:
        """The dataset folder under ``root`` holding everything ``split`` needs, or None."""
        for d in self.dataset_dirs(Path(root).expanduser()):
            if not self.missing_files(d, split):
                return d
        return None

    def fix(self, root: str | Path, split: str = "") -> str:
        """How to get the data (of ``split``, when it has its own source): the clause every error ends with."""
        if split in self.split_sources:
            return f"get it from {self.split_sources[split]}"
        if self.download:
            offline = f"; offline: {self.source}" if self.offline and self.source else ""
            return (f"download it with `pmgaft datasets --data-root {root} --download {self.name}` "
                    f"or load_dataset(..., download=True){offline}")
        return f"get it from {self.source}"

    def not_found(self, root: str | Path, split: str) -> PmgaftError:
        where = self.dataset_dirs(Path(root).expanduser())[0]
        missing = ", ".join(self.missing_files(where, split)) or "nothing"
        return PmgaftError(f"dataset {self.name!r} ({split} split) not found under {where}: missing {missing}; "
                           f"expected {self.layout} ({self.fix(root, split)})")

    def unreadable(self, root: str | Path, where: Path, err: BaseException, download: bool = False) -> PmgaftError:
        action = "downloaded to or read from" if download else "read from"
        return PmgaftError(f"dataset {self.name!r} could not be {action} {where}: {type(err).__name__}: {err}; "
                           f"expected {self.layout} ({self.fix(root)})")


def _exists(folder: Path, pattern: str) -> bool:
    if any(c in pattern for c in "*?["):
        return next(folder.glob(pattern), None) is not None
    return (folder / pattern).exists()


def tv_root(dataset_dir: Path, subdir: str) -> Path:
    """The root torchvision wants (it appends ``subdir`` itself)."""
    for _ in Path(subdir).parts:
        dataset_dir = dataset_dir.parent
    return dataset_dir
