"""One dataset type for every loader: ``(image [3, H, W] float in [0, 1], int label)`` plus cheap metadata.

Loaders only say how to fetch the i-th PIL image; :class:`ImageDataset` converts it to RGB (grayscale -> 3
channels), applies the transform (never a normalization: that lives inside the model) and exposes ``.classes``
(raw class names in label order) and ``.targets`` (labels without decoding images, for stratified subsets).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image
from torch.utils.data import Dataset

import pmgaft  # noqa: F401  (torchvision shim before torchvision is imported)
from torchvision.transforms import functional as TF

from pmgaft.errors import PmgaftError

ImageSource = Callable[[int], Image.Image]
Transform = Callable[[Image.Image], Any]


class ImageDataset(Dataset):
    """Labelled images from ``images(i)``; ``indices`` (optional) selects and orders a split of the source."""

    def __init__(self, images: ImageSource, targets: Sequence[int], classes: Sequence[str], *, name: str = "",
                 split: str = "", location: Path | None = None, indices: Sequence[int] | None = None,
                 transform: Transform | None = None) -> None:
        self._images = images
        self._indices = list(indices) if indices is not None else None
        all_targets = [int(t) for t in targets]
        self.targets: list[int] = [all_targets[i] for i in self._indices] if self._indices is not None \
            else all_targets
        self.classes: list[str] = [str(c) for c in classes]
        self.name, self.split, self.location = name, split, location
        self.transform = transform

    def select(self, indices: Sequence[int], split: str) -> "ImageDataset":
        """A view of this dataset restricted to ``indices`` (positions in this dataset)."""
        base = self._indices if self._indices is not None else range(len(self.targets))
        view = ImageDataset(self._images, [], self.classes, name=self.name, split=split, location=self.location,
                            transform=self.transform)
        view._indices = [base[i] for i in indices]
        view.targets = [self.targets[i] for i in indices]
        for key, value in vars(self).items():  # extra metadata such as .wnids
            view.__dict__.setdefault(key, value)
        return view

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {self.name} ({len(self)} images)")
        i = i % len(self)
        source_index = self._indices[i] if self._indices is not None else i
        try:
            image = self._images(source_index)
            image = image.convert("RGB") if image.mode != "RGB" else image
        except (OSError, ValueError) as err:
            raise PmgaftError(f"dataset {self.name!r}: cannot read image {i} ({self.split} split) under "
                              f"{self.location}: {err}") from err
        x = self.transform(image) if self.transform is not None else TF.to_tensor(image)
        return x, self.targets[i]

    def __repr__(self) -> str:
        return (f"ImageDataset({self.name!r}, split={self.split!r}, n={len(self)}, classes={len(self.classes)}, "
                f"location={str(self.location)!r})")


class TorchvisionImages:
    """``images(i)`` for a torchvision dataset built without a transform (its item 0 is a PIL image)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __call__(self, i: int) -> Image.Image:
        return self.dataset[i][0]


class FileImages:
    """``images(i)`` for a list of image files, opened with PIL (torchvision.io decoding is not used)."""

    def __init__(self, paths: Sequence[str | Path]) -> None:
        self.paths = list(paths)

    def __call__(self, i: int) -> Image.Image:
        with open(self.paths[i], "rb") as f:
            image = Image.open(f)
            image.load()
        return image


class ArrayImages:
    """``images(i)`` for a uint8 array ``[N, H, W]`` (grayscale) or ``[N, H, W, 3]`` (RGB)."""

    def __init__(self, array: Any) -> None:
        self.array = array

    def __call__(self, i: int) -> Image.Image:
        return Image.fromarray(self.array[i])
