"""CLIP_benchmark's webdataset shards, read with the standard library's ``tarfile`` (no webdataset dependency).

A split is ``<split>/nshards.txt`` (N) and ``<split>/0.tar`` .. ``<split>/(N-1).tar``. Tar members are grouped into
samples by key (the member name up to the first dot of its file name, ``s%07d`` as CLIP_benchmark's writer numbers
them), as webdataset groups them: the image is the first of ``.webp``, ``.png``, ``.jpg``, ``.jpeg`` present, the
label the integer text of ``.cls``.

:func:`index_split` streams the shards one by one, reading tar headers and the tiny label members only, and
records where each image's bytes are (shard, offset, size): :class:`TarImages` then reads any image with one seek,
so the decode-once cache, subsets and DataLoader workers treat a shard like a folder of files. Damage is found
here and named by shard and sample: a member whose bytes run past the end of the file (a truncated shard), bytes
after the last readable header that are not tar padding (a corrupt header: ``tarfile`` would silently stop there),
a sample without an image or a label, a label outside the classes. The caller checks the count.
"""
from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image

from pmgaft.data.base import ImageSource, container_fingerprint
from pmgaft.errors import PmgaftError

IMAGE_KEYS = ("webp", "png", "jpg", "jpeg")  # CLIP_benchmark's order of preference
LABEL_KEY = "cls"
NSHARDS = "nshards.txt"
CLASSNAMES = "classnames.txt"
TEMPLATES = "zeroshot_classification_templates.txt"


class TarImages(ImageSource):
    """Images stored inside tar shards: ``(shard, offset, size, key, ext)`` per image, read with one seek."""

    def __init__(self, shards: Sequence[Path], entries: Sequence[tuple[int, int, int, str, str]]) -> None:
        self.shards, self.entries = [Path(s) for s in shards], list(entries)

    def __call__(self, i: int) -> Image.Image:
        shard, offset, size, key, ext = self.entries[i]
        with open(self.shards[shard], "rb") as f:
            f.seek(offset)
            data = f.read(size)
        if len(data) != size:
            raise OSError(f"the shard ends {size - len(data)} bytes into this image (truncated)")
        image = Image.open(io.BytesIO(data))
        image.load()
        return image

    def describe(self, i: int) -> str:
        shard, _, _, key, ext = self.entries[i]
        return f"sample {key} (.{ext}) of {self.shards[shard]}"

    def fingerprint(self, positions: Sequence[int]) -> str:
        """Each shard's path, size and modification time, and where the selected images are in them."""
        return container_fingerprint(self.shards, [self.entries[i][:3] for i in positions])


@dataclass
class SplitIndex:
    """What :func:`index_split` found: the readable samples and their raw labels, each sample that is there but
    unusable (``bad_samples``, one message each) and each shard that is damaged beyond some sample
    (``bad_shards``: how many samples it lost is the expected count minus ``n_seen``)."""

    images: TarImages
    labels: list[int] = field(default_factory=list)
    bad_samples: list[str] = field(default_factory=list)
    bad_shards: list[str] = field(default_factory=list)

    @property
    def n_seen(self) -> int:
        """Samples found in the shards, usable or not (what the expected count is compared with)."""
        return len(self.labels) + len(self.bad_samples)


def _key_ext(name: str) -> tuple[str, str]:
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def read_nshards(split_dir: Path) -> int:
    """N from ``<split>/nshards.txt``; a PmgaftError naming the file when it is missing or not a number."""
    path = split_dir / NSHARDS
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError) as err:
        raise PmgaftError(f"{path} is missing or not a shard count ({type(err).__name__}: {err})") from err


def _trailing_garbage(f: io.BufferedReader, start: int) -> bool:
    """True when the bytes from ``start`` to the end of the file are not all zero (tar end blocks and padding)."""
    f.seek(start)
    while chunk := f.read(1 << 20):
        if chunk.count(0) != len(chunk):
            return True
    return False


def _read_headers(tar: tarfile.TarFile) -> tuple[list[tarfile.TarInfo], str | None]:
    """Every member header ``tarfile`` can read, and why it stopped early (None: it did not, as far as it says)."""
    members = []
    while True:
        try:
            member = tar.next()
        except tarfile.TarError as err:
            return members, str(err)
        if member is None:
            return members, None
        members.append(member)


def _index_shard(path: Path, shard: int, num_classes: int, out: SplitIndex) -> None:
    """Add ``path``'s samples to ``out``: usable ones to its images and labels, the others to its problems."""
    where = f"{path.parent.name}/{path.name}"
    size = path.stat().st_size
    with open(path, "rb") as f:
        try:
            tar = tarfile.open(fileobj=f, mode="r:")
        except tarfile.TarError as err:
            out.bad_shards.append(f"{where}: not a readable tar file ({err}): every sample of this shard is lost")
            return
        members, stopped = _read_headers(tar)  # headers only: tarfile seeks over the data
        samples: dict[str, dict[str, tarfile.TarInfo]] = {}
        for m in members:
            if m.isfile():
                key, ext = _key_ext(m.name)
                samples.setdefault(key, {})[ext] = m
        last = _key_ext(members[-1].name)[0] if members else "none"
        runs_past = any(m.offset_data + m.size > size for m in members if m.isfile())
        damage = None
        if stopped is not None or (not runs_past and _trailing_garbage(f, tar.offset)):
            damage = f"unreadable tar header at byte {tar.offset}{' (' + stopped + ')' if stopped else ''}"
        elif not runs_past and size - tar.offset < tarfile.BLOCKSIZE:
            damage = "the file ends without tar's end-of-archive block: it is truncated"
        if damage:
            out.bad_shards.append(f"{where}: after sample {last}: {damage}; the samples after it are lost")
        for key, members_of in samples.items():
            problem = _add_sample(f, shard, key, members_of, size, num_classes, out)
            if problem:
                out.bad_samples.append(f"{where}: sample {key}: {problem}")


def _add_sample(f: io.BufferedReader, shard: int, key: str, members: dict[str, tarfile.TarInfo], size: int,
                num_classes: int, out: SplitIndex) -> str | None:
    """Record one sample; the reason it cannot be used otherwise."""
    cut = [ext for ext, m in members.items() if m.offset_data + m.size > size]
    if cut:
        return f"its .{cut[0]} runs past the end of the file: the shard is truncated, the samples after it are lost"
    ext = next((e for e in IMAGE_KEYS if e in members), None)
    if ext is None:
        return f"no image ({', '.join('.' + e for e in IMAGE_KEYS)}); it has {sorted(members) or 'nothing'}"
    if LABEL_KEY not in members:
        return f"no .{LABEL_KEY} label"
    f.seek(members[LABEL_KEY].offset_data)
    text = f.read(members[LABEL_KEY].size).decode("utf-8", "replace").strip()
    if not text.lstrip("-").isdigit() or not 0 <= int(text) < num_classes:
        return f"label {text!r} is not a class index in 0..{num_classes - 1}"
    image = members[ext]
    out.images.entries.append((shard, image.offset_data, image.size, key, ext))
    out.labels.append(int(text))
    return None


def index_split(split_dir: Path, num_classes: int) -> SplitIndex:
    """Every sample of the split in ``split_dir`` (``nshards.txt`` and its tar shards), shard by shard."""
    n = read_nshards(split_dir)
    shards = [split_dir / f"{i}.tar" for i in range(n)]
    absent = [s.name for s in shards if not s.is_file()]
    if absent:
        raise PmgaftError(f"{split_dir} lacks {', '.join(absent[:5])}{' ...' if len(absent) > 5 else ''} "
                          f"({NSHARDS} says {n} shards): the download is incomplete")
    out = SplitIndex(TarImages(shards, []))
    for i, path in enumerate(shards):
        _index_shard(path, i, num_classes, out)
    return out


def read_lines(path: Path) -> list[str]:
    """The non-empty lines of a text file, stripped (CLIP_benchmark's ``classnames.txt`` and templates)."""
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as err:
        raise PmgaftError(f"cannot read {path} ({err.strerror or err}): the download is incomplete") from err
