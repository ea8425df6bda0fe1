"""``folder:PATH``: any ImageFolder tree (``PATH/<class>/<image>``) as a dataset, classes = folder names.

If ``PATH/<split>/`` exists (``val/`` also stands for ``test``), that subfolder is read; otherwise ``PATH`` itself,
for every split. Images of any size are resized and center-cropped to 224 by the default transform.
"""
from __future__ import annotations

from pathlib import Path

import pmgaft  # noqa: F401  (torchvision shim)
from torchvision.datasets import ImageFolder

from pmgaft.data.base import FileImages, ImageDataset
from pmgaft.errors import PmgaftError

PREFIX = "folder:"
LAYOUT = "PATH/<class>/<image>.jpg|png|... (one folder per class; optional PATH/train/ and PATH/test/)"


def load_folder(path: str | Path, split: str = "test") -> ImageDataset:
    """The ImageFolder tree at ``path`` (its ``split`` subfolder when there is one)."""
    base = Path(path).expanduser()
    if not base.is_dir():
        raise PmgaftError(f"folder dataset {str(base)!r} does not exist or is not a folder: expected {LAYOUT}")
    aliases = [split] + (["val"] if split == "test" else [])
    where = next((base / s for s in aliases if (base / s).is_dir()), base)
    try:
        ds = ImageFolder(str(where))
    except (FileNotFoundError, OSError) as err:
        raise PmgaftError(f"folder dataset {str(where)!r} holds no images in class folders ({err}): "
                          f"expected {LAYOUT}") from err
    return ImageDataset(FileImages([p for p, _ in ds.samples]), ds.targets, ds.classes, name=f"{PREFIX}{base}",
                        split=split, location=where)
