"""``DATASETS`` (CLI name -> :class:`DatasetSpec`) and :func:`load_dataset`, the one way to get a dataset.

Order: the paper's 16 sets as in its tables (TinyImageNet, the fine-tuning set, first), then the offline sets.
``folder:PATH`` loads any ImageFolder tree without registering it.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

from pmgaft.data import offline, tinyimagenet, torchvision_sets, unsplit_sets
from pmgaft.data.base import ImageDataset, Transform
from pmgaft.data.folder import PREFIX as FOLDER_PREFIX
from pmgaft.data.folder import load_folder
from pmgaft.data.hub import load_hub
from pmgaft.data.sources import DEFAULT_SOURCE, SOURCES, choose_source, source_id
from pmgaft.data.spec import DatasetSpec
from pmgaft.data.transforms import resolve_transform
from pmgaft.errors import PmgaftError
from pmgaft.utils import lookup

_PAPER_ORDER = ("tinyimagenet", "cifar10", "cifar100", "stl10", "sun397", "food101", "oxford_pets", "flowers102",
                "dtd", "eurosat", "fgvc_aircraft", "imagenet", "caltech101", "caltech256", "stanford_cars", "pcam")
_ALL = {s.name: s for s in (*tinyimagenet.SPECS, *torchvision_sets.SPECS, *unsplit_sets.SPECS, *offline.SPECS)}
DATASETS: dict[str, DatasetSpec] = {**{n: _ALL[n] for n in _PAPER_ORDER}, **_ALL}
PAPER_DATASETS: tuple[str, ...] = _PAPER_ORDER
ZERO_SHOT_DATASETS: tuple[str, ...] = tuple(n for n in _PAPER_ORDER if DATASETS[n].zero_shot)

# what a malformed file raises inside the readers (torchvision's, h5py's, pickle's, scipy's, PIL's)
_READ_ERRORS = (OSError, RuntimeError, KeyError, IndexError, ValueError, EOFError, TypeError,
                pickle.UnpicklingError, zipfile.BadZipFile)


def load_dataset(name: str, root: str | Path, split: str = "test", *, download: bool = False,
                 transform: Transform | str | None = None, image_size: int = 224, source: str = DEFAULT_SOURCE,
                 skip_corrupt: bool = False, benchmark_split: bool = False) -> ImageDataset:
    """Dataset ``name`` from the data root ``root``: items ``(image [3, H, W] in [0, 1], int label)``.

    ``split`` is one of ``DATASETS[name].splits`` ("test" is what evaluation uses; ``spec.test_split`` says
    which official split it is). ``download`` fetches sets torchvision can download (and TinyImageNet).
    ``transform`` takes a PIL RGB image: a callable, a preset name ("clip", "tga-zsr", "official"; see
    :mod:`pmgaft.data.transforms`, built for the model input size ``image_size``) or None for "clip". Missing or
    malformed data raises a
    :class:`PmgaftError` that names the folder, the expected layout and how to get the data.

    ``source`` (:mod:`pmgaft.data.sources`): ``torchvision`` reads ``root``; ``hub`` reads the Hugging Face hub
    copy from the Hugging Face cache (``download`` fetches it; ``root`` is not used; see :mod:`pmgaft.data.hub`
    for ``skip_corrupt`` and ``benchmark_split``); ``auto`` the first of them that is there.
    """
    if name.startswith(FOLDER_PREFIX):
        ds = load_folder(name[len(FOLDER_PREFIX):], split)
        ds.transform = resolve_transform(None, transform, image_size)
        ds.data_source = source_id(name, DEFAULT_SOURCE)
        return ds
    spec: DatasetSpec = lookup(DATASETS, name, "dataset")
    lookup(dict.fromkeys(SOURCES), source, "data source")
    if split not in spec.splits:
        raise PmgaftError(f"dataset {name!r} has no split {split!r}; valid: {', '.join(spec.splits)} "
                          f"('test' is {spec.test_split})")
    root = Path(root).expanduser()
    if source == "auto":
        choice = choose_source(spec, split, root, source, download=download, benchmark_split=benchmark_split)
        if choice.source is None:
            raise PmgaftError(choice.why_not)
        source = choice.source
    if source == "hub":
        ds = load_hub(name, split, download=download, skip_corrupt=skip_corrupt, benchmark_split=benchmark_split)
    else:
        ds = _load_registered(spec, root, split, download)
    ds.name, ds.split = name, split
    ds.transform = resolve_transform(spec, transform, image_size)
    return ds


def _load_registered(spec: DatasetSpec, root: Path, split: str, download: bool) -> ImageDataset:
    """``split`` of ``spec`` from the data root through its own builder (torchvision's classes, mostly)."""
    where = spec.locate(root, split)
    if where is None:
        if not (download and spec.download):
            err = spec.not_found(root, split)
            if download:
                raise PmgaftError(f"{err} -- it cannot be downloaded automatically")
            raise err
        where = spec.dataset_dirs(root)[0]
    try:
        ds = spec.build(where, split, download)
    except PmgaftError:
        raise
    except _READ_ERRORS as err:
        raise spec.unreadable(root, where, err, download) from err
    if len(ds) == 0:
        raise PmgaftError(f"dataset {spec.name!r} ({split} split) under {where} has no images; expected "
                          f"{spec.layout}")
    ds.location, ds.data_source = where, source_id(spec.name, DEFAULT_SOURCE, spec.offline)
    return ds


def dataset_names() -> list[str]:
    """Registered names, paper order first (for ``choices=`` in the CLI)."""
    return list(DATASETS)
