"""Hugging Face hub copies of datasets, written straight into a Hugging Face cache folder, for offline tests.

The layout is huggingface_hub 2.4.0's: ``datasets--ORG--NAME/refs/main`` holds the commit, ``snapshots/<commit>/``
holds each file as a relative symlink to ``blobs/<sha256>``, and ``trees/<commit>.json`` the repository's file
listing (what lets ``snapshot_download`` tell a complete cached snapshot from a partial one offline).
:func:`offline_hub` points huggingface_hub at such a cache with ``HF_HUB_OFFLINE=1``, so pmgaft's real download
calls resolve from it. Images are the solid colours of :mod:`dataset_fixtures` (one per label).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Sequence

import pytest

from dataset_fixtures import image

COMMIT = "0123456789abcdef0123456789abcdef01234567"
FORMATS = {"webp": {"format": "webp", "lossless": True}, "png": {"format": "png"}, "jpg": {"format": "jpeg"},
           "jpeg": {"format": "jpeg"}}


def offline_hub(monkeypatch: pytest.MonkeyPatch, cache: Path) -> Path:
    """``HF_HUB_CACHE=cache`` and ``HF_HUB_OFFLINE=1``, in the environment and in huggingface_hub's constants
    (it reads both once, when imported)."""
    from huggingface_hub import constants

    cache.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def encode(label: int, fmt: str, size: tuple[int, int] = (10, 8)) -> bytes:
    buf = io.BytesIO()
    image(label, size).save(buf, **FORMATS[fmt], **({"quality": 95} if fmt in ("jpg", "jpeg") else {}))
    return buf.getvalue()


def repo_folder(cache: Path, repo: str) -> Path:
    return cache / f"datasets--{repo.replace('/', '--')}"


def write_repo(cache: Path, repo: str, files: dict[str, bytes], listed: Sequence[str] = (),
               commit: str = COMMIT) -> Path:
    """A dataset repository's files in the cache at ``commit`` (what ``main`` points to); returns the snapshot
    folder. ``listed``: extra paths the repository's tree holds but the cache lacks (an interrupted download)."""
    folder = repo_folder(cache, repo)
    snapshot = folder / "snapshots" / commit
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "blobs").mkdir(exist_ok=True)
    tree = {}
    for rel, data in files.items():
        sha = hashlib.sha256(data).hexdigest()
        (folder / "blobs" / sha).write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(folder / "blobs" / sha, link.parent))
        tree[rel] = {"size": len(data), "blob_id": hashlib.sha1(data).hexdigest(), "lfs_sha256": sha,
                     "lfs_size": len(data)}
    for rel in listed:
        tree[rel] = {"size": 1, "blob_id": "0" * 40}
    (folder / "trees").mkdir(exist_ok=True)
    (folder / "trees" / f"{commit}.json").write_text(json.dumps({"format_version": 1, "files": tree}))
    return snapshot


Row = tuple  # (label, image format) or (label, image format, colour label): what one sample holds


def shard(samples: Sequence[tuple[int, Row]], extra: dict[int, dict[str, bytes]] | None = None) -> bytes:
    """A tar shard as CLIP_benchmark's writer makes it: per sample ``s%07d.<fmt>`` and ``s%07d.cls``.
    ``samples``: (global index, row); ``extra[index]`` replaces that sample's members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for index, (label, fmt, *colour) in samples:
            members = (extra or {}).get(index) or {fmt: encode(colour[0] if colour else label, fmt),
                                                   "cls": str(label).encode()}
            for ext, data in members.items():
                info = tarfile.TarInfo(f"s{index:07d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def wds_files(classnames: Sequence[str], templates: Sequence[str], splits: dict[str, list[Row]],
              per_shard: int = 3, extra: dict[int, dict[str, bytes]] | None = None) -> dict[str, bytes]:
    """A CLIP_benchmark webdataset repository: text files and, per split, shards of ``per_shard`` samples
    (numbered globally, as ``s%07d``)."""
    files = {"classnames.txt": ("\n".join(classnames) + "\n").encode(),
             "zeroshot_classification_templates.txt": ("\n".join(templates) + "\n").encode(),
             ".gitattributes": b"*.tar filter=lfs diff=lfs merge=lfs -text\n"}
    for split, rows in splits.items():
        chunks = [list(enumerate(rows))[i:i + per_shard] for i in range(0, len(rows), per_shard)]
        for n, chunk in enumerate(chunks):
            files[f"{split}/{n}.tar"] = shard(chunk, extra)
        files[f"{split}/nshards.txt"] = f"{len(chunks)}\n".encode()
    return files


def parquet_file(rows: Sequence[Row], names: Sequence[str] | None = None, texts: dict[int, str] | None = None,
                 rows_per_group: int = 2) -> bytes:
    """A parquet file as the ``datasets`` library writes it: ``image`` {bytes, path}, ``label`` (a ClassLabel
    with ``names`` in the schema's ``huggingface`` metadata), optionally ``text`` per row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"image": [{"bytes": encode(colour[0] if colour else t, fmt), "path": f"{i}.{fmt}"}
                         for i, (t, fmt, *colour) in enumerate(rows)],
               "label": [row[0] for row in rows]}
    if texts is not None:
        columns["text"] = [texts[row[0]] for row in rows]
    table = pa.table(columns)
    features = {"image": {"_type": "Image"},
                "label": {"names": list(names), "_type": "ClassLabel"} if names else {"dtype": "int64",
                                                                                       "_type": "Value"}}
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    table = table.replace_schema_metadata(meta)
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=rows_per_group)
    return buf.getvalue()
