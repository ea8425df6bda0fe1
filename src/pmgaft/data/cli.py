"""``pmgaft datasets``: which registered datasets are present under a data root, their test size, what to do.

Sizes come from building each test split (annotation files, label arrays): no image is decoded. The standard
sizes of every split (``DatasetSpec.sizes``, "?" where they depend on the data on disk) are shown without data.
``--download NAME ...`` fetches the sets torchvision can download (and TinyImageNet) first.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pmgaft.data.folder import PREFIX as FOLDER_PREFIX
from pmgaft.data.registry import DATASETS, load_dataset
from pmgaft.data.spec import DatasetSpec
from pmgaft.errors import PmgaftError
from pmgaft.utils import lookup

HEADER = ("name", "dataset", "role", "classes", "status", "test size", "standard sizes", "location / how to get it")


def standard_sizes(spec: DatasetSpec) -> str:
    """``"train 50,000 / test 10,000"``: every split's standard count ("?" where it depends on the data)."""
    return " / ".join(f"{s} {spec.size(s):,}" if spec.size(s) is not None else f"{s} ?" for s in spec.splits)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default="data", type=Path,
                        help="folder holding the datasets (default: ./data)")
    parser.add_argument("--download", nargs="+", metavar="NAME", default=[],
                        help="download these datasets into --data-root first ('all': every downloadable one)")


def status_row(spec: DatasetSpec, root: Path) -> tuple[str, ...]:
    """One table row: present/bundled with the test size and folder, or missing/unreadable with the fix."""
    base = (spec.name, spec.display_name, spec.role, str(spec.num_classes))
    sizes = standard_sizes(spec)
    if spec.locate(root, "test") is None:
        return (*base, "missing", "-", sizes, spec.fix(root))
    try:
        ds = load_dataset(spec.name, root, "test")
    except PmgaftError as err:
        return (*base, "unreadable", "-", sizes, str(err))
    return (*base, "bundled" if spec.offline else "present", f"{len(ds):,}", sizes, str(ds.location))


def format_table(rows: list[tuple[str, ...]]) -> str:
    """Plain aligned columns; the last column is left unpadded (it can be long)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join([c.ljust(w) for c, w in zip(r, widths)] + [r[-1]]).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * len(rows[0][-1]))
    return "\n".join(lines)


def _download(names: list[str], root: Path) -> None:
    if names == ["all"]:
        names = [n for n, s in DATASETS.items() if s.download]
    for name in names:
        spec: DatasetSpec = lookup(DATASETS, name, "dataset")
        if not spec.download:
            raise PmgaftError(f"dataset {name!r} cannot be downloaded automatically: {spec.fix(root)}")
        print(f"downloading {name} into {root} ...", flush=True)
        load_dataset(name, root, "test", download=True)


def run(args: argparse.Namespace) -> int:
    root: Path = args.data_root.expanduser()
    _download(args.download, root)
    rows = [HEADER] + [status_row(spec, root) for spec in DATASETS.values()]
    print(f"data root: {root.resolve()}")
    print(format_table(rows))
    present = sum(r[4] in ("present", "bundled") for r in rows[1:])
    print(f"\n{present}/{len(DATASETS)} available. Any ImageFolder tree also loads as '{FOLDER_PREFIX}PATH'. "
          f"'test' is the official test split where there is one (ImageNet, TinyImageNet: val).")
    return 0
