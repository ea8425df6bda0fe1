"""Hugging Face parquet datasets (TinyImageNet's and Caltech-256's hub sources), read with pyarrow.

A split is one or more files named ``<split>-NNNNN-of-NNNNN*.parquet`` (or placed in a ``<split>/`` folder), with
an ``image`` column (``{bytes, path}``, the ``datasets`` library's Image feature) and an integer ``label``.
Class names come from the ``label`` feature's names (a ClassLabel, stored in the schema's ``huggingface``
metadata) or, when it has none, from a ``text`` column naming each row's class.

:func:`index_parquet` reads the labels only; :class:`ParquetImages` reads an image by (file, row group, row),
keeping the last row group it read (decoding walks the rows in order), so memory stays one row group per process.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from pmgaft.data.base import ImageSource, container_fingerprint
from pmgaft.errors import PmgaftError

IMAGE_COLUMN, LABEL_COLUMN, TEXT_COLUMN = "image", "label", "text"
_PYARROW_HINT = "reading the hub's parquet copies needs pyarrow: `pip install pyarrow` (or `pip install -e .[hub]`)"


def _pq() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise PmgaftError(_PYARROW_HINT + ".") from err
    return pq


def split_files(folder: Path, part: str) -> list[Path]:
    """The parquet files of split ``part`` under ``folder`` (``"*"``: every parquet file), sorted by path."""
    files = sorted(folder.rglob("*.parquet"))
    if part == "*":
        return files
    pattern = re.compile(rf"(^|/){re.escape(part)}(-[^/]*|/[^/]*)\.parquet$")
    return [f for f in files if pattern.search(f.relative_to(folder).as_posix())]


def download_patterns(part: str) -> list[str]:
    """``allow_patterns`` for huggingface_hub that fetch split ``part`` (fnmatch: ``*`` also matches ``/``)."""
    return ["*.parquet"] if part == "*" else [f"{part}-*.parquet", f"*/{part}-*.parquet", f"*{part}/*.parquet"]


class ParquetImages(ImageSource):
    """Images in parquet files: ``(file, row group, row)`` per image; the last row group read stays cached."""

    def __init__(self, files: Sequence[Path], rows: Sequence[tuple[int, int, int]]) -> None:
        self.files, self.rows = [Path(f) for f in files], list(rows)
        self._group: tuple[tuple[int, int], list[Any]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_group": None}  # DataLoader workers start without the cached row group

    def _images_of(self, file: int, group: int) -> list[Any]:
        if self._group is None or self._group[0] != (file, group):
            table = _pq().ParquetFile(self.files[file]).read_row_group(group, columns=[IMAGE_COLUMN])
            self._group = ((file, group), table.column(IMAGE_COLUMN).to_pylist())
        return self._group[1]

    def __call__(self, i: int) -> Image.Image:
        file, group, row = self.rows[i]
        cell = self._images_of(file, group)[row]
        data = cell.get("bytes") if isinstance(cell, dict) else None
        if not data:
            raise ValueError("the row has no image bytes")
        image = Image.open(io.BytesIO(data))
        image.load()
        return image

    def describe(self, i: int) -> str:
        file, group, row = self.rows[i]
        return f"row {row} of row group {group} of {self.files[file]}"

    def fingerprint(self, positions: Sequence[int]) -> str:
        """Each file's path, size and modification time, and the selected rows."""
        return container_fingerprint(self.files, [self.rows[i] for i in positions])


@dataclass
class ParquetIndex:
    """Rows of a split: their raw labels, the copy's class names by label (``names``), unreadable files."""

    images: ParquetImages
    labels: list[int] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)
    bad_files: list[str] = field(default_factory=list)

    @property
    def n_seen(self) -> int:
        return len(self.labels)


def _label_names(schema: Any) -> list[str] | None:
    """The ClassLabel names of the ``label`` column, from the ``datasets`` library's schema metadata."""
    meta = (schema.metadata or {}).get(b"huggingface")
    if not meta:
        return None
    features = json.loads(meta).get("info", {}).get("features", {})
    names = features.get(LABEL_COLUMN, {}).get("names")
    return [str(n) for n in names] if names else None


def _add_file(path: Path, index: ParquetIndex, texts: dict[int, set[str]]) -> None:
    pq = _pq()
    pf = pq.ParquetFile(path)
    columns = set(pf.schema_arrow.names)
    if not {IMAGE_COLUMN, LABEL_COLUMN} <= columns:
        raise ValueError(f"it has columns {sorted(columns)}, not '{IMAGE_COLUMN}' and '{LABEL_COLUMN}'")
    names = _label_names(pf.schema_arrow)
    if names:
        index.names.update(enumerate(names))
    wanted = [LABEL_COLUMN] + ([TEXT_COLUMN] if not names and TEXT_COLUMN in columns else [])
    file = len(index.images.files)
    index.images.files.append(path)
    for group in range(pf.num_row_groups):
        table = pf.read_row_group(group, columns=wanted)
        labels = table.column(LABEL_COLUMN).to_pylist()
        index.images.rows.extend((file, group, row) for row in range(len(labels)))
        index.labels.extend(int(t) for t in labels)
        if TEXT_COLUMN in wanted:
            for t, text in zip(labels, table.column(TEXT_COLUMN).to_pylist()):
                texts.setdefault(int(t), set()).add(str(text))


def index_parquet(files: Sequence[Path]) -> ParquetIndex:
    """Labels and class names of the rows of ``files``; a file pyarrow cannot read goes to ``bad_files``."""
    index = ParquetIndex(ParquetImages([], []))
    texts: dict[int, set[str]] = {}
    for path in files:
        try:
            _add_file(path, index, texts)
        except (OSError, ValueError, KeyError) as err:  # pyarrow's ArrowInvalid is a ValueError
            index.bad_files.append(f"{path.name}: unreadable ({type(err).__name__}: {err}); its rows are lost")
    ambiguous = {t: sorted(v) for t, v in texts.items() if len(v) > 1}
    if ambiguous:
        t, v = next(iter(ambiguous.items()))
        raise PmgaftError(f"the '{TEXT_COLUMN}' column names label {t} differently in different rows ({v[:3]}): "
                          f"the class names of this copy are ambiguous")
    if not index.names:
        index.names = {t: next(iter(v)) for t, v in texts.items()}
    return index
