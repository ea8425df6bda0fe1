"""Decode once: a dataset subset decoded and preprocessed a single time, then served as [0, 1] tensors.

An evaluation grid scores each dataset for many models, attacks and eps. :func:`build_decoded` runs the PIL
decode and the preset's resize/crop once per key -- dataset, split, resolved location, transform identity,
selected positions, and a fingerprint of the files (paths + sizes + mtimes, or the array bytes) -- and keeps the
pixels as uint8 ``[3, H, W]`` per image: in memory when they fit in ``max_memory_bytes``, else in a
memory-mapped file under ``cache_dir`` (default ``$PMGAFT_CACHE/decoded``) that every later build with the same
key reuses, in any process. Images of mixed sizes (a native-size folder) are stored per image; only batches of
one size can be stacked.

Exact: a preset's PIL steps give 8-bit RGB, ``ToTensor`` of that is ``k / 255`` in float32, and serving computes
``uint8.float() / 255``, the same operation -- cached tensors are bit-identical to ``dataset[i][0]``. A custom
transform is accepted when it is named (``transform_id``) and each output is exactly ``k / 255`` (checked).

Atomic: a disk cache is written into a temporary folder beside its final one and renamed into place complete
(``meta.json`` written last); a killed build leaves only the temporary folder, which no reader opens and the
next build of that key removes. Unreadable images: see :mod:`pmgaft.data.scan` (``skip_corrupt``).

Usage::

    ds = load_dataset("cifar10", root, "test", transform="tga-zsr", image_size=224)
    decoded = build_decoded(ds, stratified_subset(ds, 1000), num_workers=8)
    for x, y, rows in decoded.batches(256, device="cuda"):  # x: float32 [B, 3, 224, 224] in [0, 1]
        ...
    decoded.positions          # the dataset position of each row (skipped files left out)
    decoded.report.to_dict()   # {"n_skipped": 0, "skipped": []}: for the result card
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import warnings
import weakref
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from pmgaft.data.base import ImageDataset
from pmgaft.data.decode import DECODE_VERSION, to_rgb
from pmgaft.data.decoded import DecodedImages
from pmgaft.data.scan import MAX_LISTED, Convert, CorruptReport, decode_stream
from pmgaft.data.transforms import Preprocess, transform_identity
from pmgaft.errors import PmgaftError
from pmgaft.utils import json_fingerprint

CACHE_FORMAT = 1
DEFAULT_MAX_MEMORY = 4 * 1024 ** 3
STORAGES = ("auto", "memory", "disk")
_LIVE: "weakref.WeakValueDictionary[str, DecodedImages]" = weakref.WeakValueDictionary()


def default_decoded_dir() -> Path:
    """``$PMGAFT_CACHE/decoded`` (next to the text-embedding cache)."""
    from pmgaft.models.zeroshot import default_cache_dir

    return default_cache_dir() / "decoded"


# --- what is cached: pixels from the dataset's transform, and the key ----------------------------------------

class _PilPixels:
    """PIL RGB -> uint8 ``[3, H, W]`` after a preset's PIL steps (what ToTensor would scale by 1/255)."""

    def __init__(self, pil: Any) -> None:
        self.pil = pil

    def __call__(self, image: Image.Image) -> np.ndarray:
        out = self.pil(image) if self.pil is not None else image
        return np.ascontiguousarray(np.asarray(out, dtype=np.uint8).transpose(2, 0, 1))


class _TensorPixels:
    """A custom transform's float ``[3, H, W]`` output -> uint8, refused unless it is exactly ``k / 255``."""

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def __call__(self, image: Image.Image) -> np.ndarray:
        x = self.transform(image)
        if not (isinstance(x, torch.Tensor) and x.ndim == 3 and x.dtype == torch.float32):
            raise PmgaftError(f"the dataset's transform returned {type(x).__name__} {getattr(x, 'shape', '')}; "
                              f"the decoded cache needs float32 [C, H, W] in [0, 1].")
        u8 = x.mul(255).round_().clamp_(0, 255).to(torch.uint8)
        if not torch.equal(u8.float().div_(255), x):
            raise PmgaftError("the dataset's transform produces values that are not multiples of 1/255 (a float "
                              "step after ToTensor?): the uint8 decoded cache would change them. Use a preset "
                              "(pmgaft.data.transforms) or evaluate without the cache.")
        return u8.numpy()


def _pixels_of(dataset: ImageDataset, transform_id: str | None) -> tuple[Convert, dict[str, Any], int | None]:
    """(converter, transform identity, output side or None) for the dataset's transform."""
    transform = dataset.transform
    if transform is None:
        return _PilPixels(None), Preprocess("native").identity(), None
    identity = transform_identity(transform)
    if identity is not None:
        if transform.preprocess.random:
            raise PmgaftError(f"transform {transform.preprocess.describe()} is random: a decoded cache would freeze "
                              f"one draw; cache only deterministic presets (every preset but train_augment).")
        return _PilPixels(transform.pil), identity, transform.preprocess.output_side
    if transform_id is None:
        raise PmgaftError(f"dataset {dataset.name!r} has a custom transform ({transform!r}): pass transform_id= "
                          f"(a string naming exactly what it computes, part of the cache key), or use a preset.")
    return _TensorPixels(transform), {"custom": transform_id, "decode": DECODE_VERSION}, None


def _ints_hash(values: Sequence[int]) -> str:
    return json_fingerprint(np.asarray(values, dtype=np.int64).tobytes().hex(), 32)


def cache_key(dataset: ImageDataset, positions: Sequence[int], identity: dict[str, Any]) -> dict[str, Any]:
    """Everything the cached pixels depend on, JSON-able (its fingerprint names the cache)."""
    source = [dataset.source_index(p) for p in positions]
    location = Path(dataset.location).resolve() if dataset.location is not None else None
    return {"format": CACHE_FORMAT, "dataset": dataset.name, "split": dataset.split,
            "location": str(location) if location else None, "transform": identity, "n": len(positions),
            "positions": _ints_hash(positions), "source_positions": _ints_hash(source),
            "labels": _ints_hash([dataset.targets[p] for p in positions]),
            "files": dataset.source.fingerprint(source)}


# --- writing: memory, or a file streamed to disk -------------------------------------------------------------

class _MemoryWriter:
    """Rows of one preallocated ``[N, 3, S, S]`` array when the side is known, else one array per image."""

    def __init__(self, n: int, side: int | None) -> None:
        self.block = np.empty((n, 3, side, side), dtype=np.uint8) if side else None
        self.items: list[np.ndarray] = []
        self.count = 0

    def add(self, pixels: np.ndarray) -> None:
        if self.block is not None and pixels.shape != self.block.shape[1:]:
            self.items, self.block = list(self.block[:self.count]), None  # an unexpected size: per image from now
        if self.block is not None:
            self.block[self.count] = pixels
        else:
            self.items.append(pixels)
        self.count += 1

    def finish(self) -> np.ndarray:
        if self.block is not None:
            return self.block[:self.count].reshape(-1)
        return np.concatenate([a.reshape(-1) for a in self.items]) if self.items else np.empty(0, np.uint8)


class _FileWriter:
    """Appends each image's bytes to ``pixels.u8``: the build never holds more than a loader batch."""

    def __init__(self, folder: Path) -> None:
        self.file = open(folder / "pixels.u8", "wb")

    def add(self, pixels: np.ndarray) -> None:
        self.file.write(memoryview(np.ascontiguousarray(pixels)).cast("B"))

    def finish(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(root: Path, key: str) -> None:
    """Temporary folders of this key left by killed builds (their process is gone)."""
    for tmp in root.glob(f".{key}.tmp-*"):
        pid = tmp.name.rsplit(".tmp-", 1)[1].split("-")[0]
        if not pid.isdigit() or not _pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _open(folder: Path, key: str) -> DecodedImages | None:
    """A complete disk cache, or None (absent, another format, or damaged: then removed)."""
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != CACHE_FORMAT or meta.get("key") != key:
            raise ValueError("another format or key")
        shapes, labels, positions = (np.load(folder / f"{n}.npy") for n in ("shapes", "labels", "positions"))
        size = (folder / "pixels.u8").stat().st_size
        if size != meta["bytes"] or not len(shapes) == len(labels) == len(positions):
            raise ValueError(f"pixels.u8 holds {size} bytes, meta.json says {meta['bytes']}")
        pixels = np.memmap(folder / "pixels.u8", dtype=np.uint8, mode="r") if size else np.empty(0, np.uint8)
    except (OSError, ValueError, KeyError) as err:
        warnings.warn(f"decoded cache {folder} is unreadable ({err}); rebuilding it", stacklevel=3)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    report = CorruptReport(**meta["report"])
    return DecodedImages(pixels, shapes, labels, positions, report, key, folder, from_cache=True)


def _estimate_bytes(dataset: ImageDataset, positions: Sequence[int], convert: Convert, side: int | None) -> int:
    if side is not None:
        return len(positions) * 3 * side * side
    for p in positions[:5]:  # an unknown output size: measure the first readable image
        try:
            return len(positions) * convert(to_rgb(dataset.source(dataset.source_index(p)))).nbytes
        except (OSError, ValueError, SyntaxError):
            continue
    return 0


def build_decoded(dataset: ImageDataset, positions: Sequence[int] | None = None, *, storage: str = "auto",
                  max_memory_bytes: int = DEFAULT_MAX_MEMORY, cache_dir: str | Path | None = None,
                  num_workers: int = 0, batch_size: int = 64, skip_corrupt: bool = False, progress: bool = True,
                  max_listed: int = MAX_LISTED, transform_id: str | None = None) -> DecodedImages:
    """Decode and preprocess ``dataset`` at ``positions`` (default: all) once; reuse an identical earlier build.

    ``storage``: ``"memory"``, ``"disk"`` (a memory-mapped file under ``cache_dir``, default
    ``$PMGAFT_CACHE/decoded``) or ``"auto"`` (memory when the pixels fit in ``max_memory_bytes``). A build with
    the same key still alive in this process, or on disk under ``cache_dir``, is always reused (``from_cache``). Decoding runs in ``num_workers`` DataLoader workers with a progress bar.
    Unreadable images raise one PmgaftError listing them (up to ``max_listed``); with ``skip_corrupt`` they are
    dropped and reported in ``.report``. ``transform_id`` names a custom (non-preset) transform.
    """
    if storage not in STORAGES:
        raise PmgaftError(f"unknown decoded-cache storage {storage!r}; valid: {', '.join(STORAGES)}.")
    positions = list(range(len(dataset))) if positions is None else [int(p) for p in positions]
    bad = [p for p in positions if not 0 <= p < len(dataset)]
    if bad:
        raise PmgaftError(f"positions {bad[:5]} are outside {dataset.name!r} ({len(dataset)} images).")
    convert, identity, side = _pixels_of(dataset, transform_id)
    key = json_fingerprint(cache_key(dataset, positions, identity), 32)
    what = f"dataset {dataset.name!r} ({dataset.split} split, {len(positions)} images)"
    if key in _LIVE:
        return _LIVE[key].reused(skip_corrupt, what)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_decoded_dir()
    found = _open(root / key, key)
    if found is not None:
        _LIVE[key] = found
        return found.reused(skip_corrupt, what)
    est = _estimate_bytes(dataset, positions, convert, side)
    to_disk = storage == "disk" or (storage == "auto" and est > max_memory_bytes)
    decoded = _build(dataset, positions, convert, side, key, root if to_disk else None, skip_corrupt, what,
                     num_workers=num_workers, batch_size=batch_size, progress=progress, max_listed=max_listed)
    _LIVE[key] = decoded
    return decoded


def _build(dataset: ImageDataset, positions: list[int], convert: Convert, side: int | None, key: str,
           root: Path | None, skip_corrupt: bool, what: str, **stream: Any) -> DecodedImages:
    max_listed = stream.pop("max_listed")
    tmp = None
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale(root, key)
        tmp = root / f".{key}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
    try:
        writer: Any = _FileWriter(tmp) if tmp is not None else _MemoryWriter(len(positions), side)
        report = CorruptReport(max_listed=max_listed)
        shapes, kept = [], []
        for k, pixels, error in decode_stream(dataset, positions, convert, desc=f"decoding {dataset.name}",
                                               **stream):
            if error is not None:
                report.add(error)
                continue
            writer.add(pixels)
            shapes.append(pixels.shape)
            kept.append(k)
        if report.n_skipped and not skip_corrupt:
            raise report.error(what)
        shape_arr = np.asarray(shapes, dtype=np.int64).reshape(-1, 3)
        labels = np.asarray([dataset.targets[positions[k]] for k in kept], dtype=np.int64)
        kept_positions = np.asarray([positions[k] for k in kept], dtype=np.int64)
        if tmp is None:
            return DecodedImages(writer.finish(), shape_arr, labels, kept_positions, report, key)
        writer.finish()
        for name, arr in (("shapes", shape_arr), ("labels", labels), ("positions", kept_positions)):
            np.save(tmp / f"{name}.npy", arr)
        meta = {"format": CACHE_FORMAT, "key": key, "bytes": int(shape_arr.prod(1).sum()) if len(shapes) else 0,
                "report": report.to_dict() | {"max_listed": max_listed}, "dataset": dataset.name,
                "split": dataset.split}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))  # last: marks the folder complete
        final = root / key  # type: ignore[operator]
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same key first: use its copy
            shutil.rmtree(tmp, ignore_errors=True)
        tmp = None
        opened = _open(final, key)
        if opened is None:
            raise PmgaftError(f"the decoded cache just written to {final} cannot be read back; check the disk "
                              f"(free space, permissions) or pass cache_dir= elsewhere.")
        opened.from_cache = False
        return opened
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["DEFAULT_MAX_MEMORY", "DecodedImages", "build_decoded", "cache_key", "default_decoded_dir"]
