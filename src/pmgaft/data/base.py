"""One dataset type for every loader: ``(image [3, H, W] float in [0, 1], int label)`` plus cheap metadata.

Loaders only say how to fetch the i-th stored image (an :class:`ImageSource`: a file list, an array, a
torchvision dataset); :class:`ImageDataset` turns it into 8-bit RGB with its true range
(:func:`pmgaft.data.decode.to_rgb`), applies the transform (never a normalization: that lives inside the model)
and exposes ``.classes`` (raw class names in label order) and ``.targets`` (labels without decoding images, for
stratified subsets). A file that cannot be decoded fails with its path.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

import pmgaft  # noqa: F401  (torchvision shim before torchvision is imported)
from torchvision.transforms import functional as TF

from pmgaft.data.decode import DECODE_ERRORS, load_image, to_rgb
from pmgaft.errors import PmgaftError

Transform = Callable[[Image.Image], Any]
SKIP_HINT = ("Replace or re-download the file, or skip unreadable images "
             "(pmgaft.data.cache.build_decoded(..., skip_corrupt=True))")


class ImageSource:
    """``source(i)`` -> the i-th stored image (any PIL mode); ``describe(i)`` says where it lives (for errors);
    ``fingerprint(positions)`` is a cheap hash of what those images are made of (for cache keys)."""

    def __call__(self, i: int) -> Image.Image:
        raise NotImplementedError

    def describe(self, i: int) -> str:
        return f"item {i}"

    def fingerprint(self, positions: Sequence[int]) -> str:
        raise NotImplementedError


class FileImages(ImageSource):
    """Image files, decoded with Pillow (torchvision.io is not used).

    The paths are kept as one numpy array of encoded bytes, not a list of ``Path`` objects: ImageNet train's
    1.28 M paths take ~60 MB instead of ~400 MB and ~1.5 s to build instead of ~18 s (measured on 100,000 paths),
    and forked loader workers share them for good (reading an array element touches no object's reference count,
    so no copy-on-write page is ever copied into a worker).
    """

    def __init__(self, paths: Sequence[str | Path]) -> None:
        self._paths = np.array([os.fsencode(p) for p in paths], dtype=np.bytes_)

    def path(self, i: int) -> Path:
        return Path(os.fsdecode(self._paths[i]))

    @property
    def paths(self) -> list[Path]:
        return [self.path(i) for i in range(len(self._paths))]

    def __call__(self, i: int) -> Image.Image:
        return load_image(self.path(i))

    def describe(self, i: int) -> str:
        return str(self.path(i))

    def fingerprint(self, positions: Sequence[int]) -> str:
        """Paths, sizes and modification times (one ``stat`` per file, no read)."""
        h = hashlib.blake2b(digest_size=16)
        for i in positions:
            path = self.path(i)
            try:
                st = os.stat(path)
                h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{path}\0missing\n".encode())  # decoding will name it
        return h.hexdigest()


def container_fingerprint(files: Sequence[Path], locations: Sequence[Any]) -> str:
    """Paths, sizes and modification times of container ``files`` (tar shards, parquet files: one ``stat``
    each) and where the selected images are inside them."""
    h = hashlib.blake2b(digest_size=16)
    for path in files:
        st = os.stat(path)
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    for location in locations:
        h.update(repr(location).encode())
    return h.hexdigest()


class ArrayImages(ImageSource):
    """A uint8 array ``[N, H, W]`` (gray), ``[N, H, W, 3]`` (RGB) or, with ``channels_first``, ``[N, 3, H, W]``."""

    def __init__(self, array: np.ndarray, origin: str = "an array", channels_first: bool = False) -> None:
        self.array, self.origin, self.channels_first = array, origin, channels_first

    def __call__(self, i: int) -> Image.Image:
        item = self.array[i]
        return Image.fromarray(np.ascontiguousarray(item.transpose(1, 2, 0)) if self.channels_first else item)

    def describe(self, i: int) -> str:
        return f"item {i} of {self.origin}"

    def fingerprint(self, positions: Sequence[int]) -> str:
        """The exact bytes of the selected items."""
        h = hashlib.blake2b(f"{self.array.shape}{self.array.dtype}".encode(), digest_size=16)
        idx = np.asarray(positions, dtype=np.int64)
        for start in range(0, len(idx), 4096):
            h.update(np.ascontiguousarray(self.array[idx[start:start + 4096]]).tobytes())
        return h.hexdigest()


class TorchvisionImages(ImageSource):
    """A torchvision dataset built without a transform (its item 0 is a PIL image), stored in ``files``."""

    def __init__(self, dataset: Any, files: Sequence[Path] = (), origin: str = "") -> None:
        self.dataset, self.files = dataset, [Path(f) for f in files]
        self.origin = origin or ", ".join(map(str, self.files)) or type(dataset).__name__

    def __call__(self, i: int) -> Image.Image:
        return self.dataset[i][0]

    def describe(self, i: int) -> str:
        return f"item {i} of {self.origin}"

    def fingerprint(self, positions: Sequence[int]) -> str:
        """Sizes and modification times of the files holding the images."""
        return FileImages(self.files).fingerprint(range(len(self.files)))


class ImageDataset(Dataset):
    """Labelled images from ``images(i)``; ``indices`` (optional) selects and orders a split of the source.

    ``data_source`` says which copy the images come from (``torchvision``: the registered layout under the data
    root, ``bundled``, ``folder``, ``hub:ORG/NAME``); ``hub`` describes a hub copy (:class:`pmgaft.data.hub.HubCopy`).
    Both are set by :func:`pmgaft.data.load_dataset`.
    """

    data_source: str = ""
    hub: Any = None

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
        """A view of this dataset restricted to ``indices`` (positions in this dataset, in that order).

        Class-level metadata set by loaders (``.wnids``, ``.categories``) is shared with the view.
        """
        bad = [i for i in indices if not 0 <= i < len(self)]
        if bad:
            raise PmgaftError(f"select(): positions {bad[:5]} are outside {self.name or 'the dataset'} "
                              f"({len(self)} images); pass positions in 0..{len(self) - 1}.")
        view = ImageDataset.__new__(ImageDataset)
        view.__dict__.update(vars(self))
        view._indices = [self.source_index(i) for i in indices]
        view.targets = [self.targets[i] for i in indices]
        view.split = split
        return view

    def relabel(self, label_map: Sequence[int | None], classes: Sequence[str]) -> "ImageDataset":
        """A view scored with ``classes``: raw label ``t`` becomes ``label_map[t]``; images whose class maps to None
        are left out (a reference protocol's merged or dropped classes, :class:`pmgaft.prompts.Prompts`).

        Positions in the view count the kept images only; ``.raw_classes`` keeps the data's own class list
        (``.wnids``/``.categories`` stay in that raw label space).
        """
        if len(label_map) != len(self.classes):
            raise PmgaftError(f"a label map for {len(label_map)} classes does not fit {self.name or 'the dataset'} "
                              f"({len(self.classes)} classes); check the dataset's files and the prompt style.")
        view = self.select([i for i, t in enumerate(self.targets) if label_map[t] is not None], self.split)
        view.targets = [int(label_map[t]) for t in view.targets]  # type: ignore[arg-type]
        view.raw_classes, view.classes = list(self.classes), [str(c) for c in classes]
        return view

    def source_index(self, i: int) -> int:
        """The position in the image source of this dataset's item ``i``."""
        return self._indices[i] if self._indices is not None else i

    @property
    def source(self) -> ImageSource:
        return self._images

    def describe(self, i: int) -> str:
        """Where item ``i`` is stored: its file path, or ``item k of <file>`` for array-backed sets."""
        return self._images.describe(self.source_index(i))

    def load_rgb(self, i: int) -> Image.Image:
        """Item ``i`` decoded to 8-bit RGB, untransformed; a PmgaftError naming the file if it cannot be."""
        try:
            return to_rgb(self._images(self.source_index(i)))
        except DECODE_ERRORS as err:
            raise PmgaftError(f"dataset {self.name!r} ({self.split} split): cannot decode {self.describe(i)}: "
                              f"{type(err).__name__}: {err}. {SKIP_HINT}.") from err

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {self.name} ({len(self)} images)")
        i = i % len(self)
        image = self.load_rgb(i)
        x = self.transform(image) if self.transform is not None else TF.to_tensor(image)
        return x, self.targets[i]

    def __repr__(self) -> str:
        return (f"ImageDataset({self.name!r}, split={self.split!r}, n={len(self)}, classes={len(self.classes)}, "
                f"location={str(self.location)!r})")
