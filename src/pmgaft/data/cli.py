"""``pmgaft datasets``: which registered datasets are present under a data root, their test size, what to do.

Sizes come from building each test split (annotation files, label arrays): no image is decoded. The standard
sizes of every split (``DatasetSpec.sizes``, "?" where they depend on the data on disk) are shown without data,
and whether each set's Hugging Face hub copy is in the Hugging Face cache. ``--download NAME ...`` fetches the
sets torchvision can download (and TinyImageNet) first; with ``--source hub`` their hub copies instead (every
split pmgaft reads of them, checked sample by sample against the known counts), with ``--source auto``
torchvision's download where there is one, else the hub copy.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pmgaft.data.folder import PREFIX as FOLDER_PREFIX
from pmgaft.data.hub import cache_dir, cached, fetch, hub_source, read_split
from pmgaft.data.hub_sources import HUB_SOURCES, HubSource
from pmgaft.data.registry import DATASETS, load_dataset
from pmgaft.data.sources import DEFAULT_SOURCE, SOURCES
from pmgaft.data.spec import DatasetSpec
from pmgaft.errors import PmgaftError
from pmgaft.utils import lookup

HEADER = ("name", "dataset", "role", "classes", "status", "test size", "standard sizes", "hub copy",
          "location / how to get it")


def standard_sizes(spec: DatasetSpec) -> str:
    """``"train 50,000 / test 10,000"``: every split's standard count ("?" where it depends on the data)."""
    return " / ".join(f"{s} {spec.size(s):,}" if spec.size(s) is not None else f"{s} ?" for s in spec.splits)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default="data", type=Path,
                        help="folder holding the datasets (default: ./data)")
    parser.add_argument("--download", nargs="+", metavar="NAME", default=[],
                        help="download these datasets into --data-root first ('all': every downloadable one)")
    parser.add_argument("--source", choices=SOURCES, default=DEFAULT_SOURCE,
                        help="what --download fetches: torchvision = the registered layout into --data-root; hub = "
                             "the Hugging Face hub copies (CLIP_benchmark's webdatasets; TinyImageNet and "
                             "Caltech-256 as parquet) into the Hugging Face cache (HF_HUB_CACHE); auto = "
                             "torchvision's download where there is one, else the hub copy (default: torchvision)")
    parser.add_argument("--skip-corrupt", action="store_true",
                        help="hub copies: count and list unreadable samples after the download instead of failing")
    parser.add_argument("--force-download", action="store_true",
                        help="hub copies: fetch the files again even when cached (a damaged shard)")


def hub_status(spec: DatasetSpec) -> str:
    """``cached`` when the Hugging Face cache holds every split pmgaft reads of the hub copy, else what is missing."""
    hub = HUB_SOURCES.get(spec.name)
    if hub is None:
        return "-"
    have = [cached(hub, s) is not None for s in hub.all_splits()]
    return "cached" if all(have) else ("partly cached" if any(have) else "not cached")


def status_row(spec: DatasetSpec, root: Path) -> tuple[str, ...]:
    """One table row: present/bundled with the test size and folder, or missing/unreadable with the fix."""
    base = (spec.name, spec.display_name, spec.role, str(spec.num_classes))
    sizes, hub = standard_sizes(spec), hub_status(spec)
    if spec.locate(root, "test") is None:
        return (*base, "missing", "-", sizes, hub, spec.fix(root))
    try:
        ds = load_dataset(spec.name, root, "test")
    except PmgaftError as err:
        return (*base, "unreadable", "-", sizes, hub, str(err))
    return (*base, "bundled" if spec.offline else "present", f"{len(ds):,}", sizes, hub, str(ds.location))


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


def _download_hub(sources: list[HubSource], *, skip_corrupt: bool, force: bool) -> None:
    """Fetch each hub copy, then index every split of it (counts, labels, shard integrity)."""
    for source in sources:
        print(f"downloading the hub copy of {source.dataset} ({source.repo}) into {cache_dir()} ...", flush=True)
        folder = fetch(source, source.all_splits(), download=True, force=force)
        for split in source.all_splits():
            ds = read_split(source, split, folder, skip_corrupt=skip_corrupt)
            lost = ds.hub.lost
            print(f"  {source.dataset}: {len(ds):,} images, {ds.hub.split}; labels {ds.hub.class_order}"
                  + (f"; {lost.n_skipped} unreadable sample(s) skipped:\n    " + "\n    ".join(lost.skipped)
                     if lost.n_skipped or lost.skipped else ""), flush=True)


def _fetch(args: argparse.Namespace, root: Path) -> None:
    """``--download`` by ``--source``: torchvision's downloads, hub copies, or each set by the first that can.
    Every name is checked before anything is fetched."""
    names: list[str] = args.download
    if not names:
        return
    if args.source == "torchvision":
        _download(names, root)
        return
    if names == ["all"]:
        names = list(HUB_SOURCES) if args.source == "hub" else [
            n for n, s in DATASETS.items() if s.download or n in HUB_SOURCES]
    specs: list[DatasetSpec] = [lookup(DATASETS, n, "dataset") for n in names]
    by_torchvision = [s.name for s in specs if args.source == "auto" and s.download]
    hubs = [hub_source(s.name) for s in specs if s.name not in by_torchvision]
    if by_torchvision:
        _download(by_torchvision, root)
    _download_hub(hubs, skip_corrupt=args.skip_corrupt, force=args.force_download)


def run(args: argparse.Namespace) -> int:
    root: Path = args.data_root.expanduser()
    _fetch(args, root)
    rows = [HEADER] + [status_row(spec, root) for spec in DATASETS.values()]
    print(f"data root: {root.resolve()}")
    print(format_table(rows))
    present = sum(r[4] in ("present", "bundled") for r in rows[1:])
    hubs = sum(r[7] == "cached" for r in rows[1:])
    print(f"\n{present}/{len(DATASETS)} available. Any ImageFolder tree also loads as '{FOLDER_PREFIX}PATH'. "
          f"'test' is the official test split where there is one (ImageNet, TinyImageNet: val).\n"
          f"{hubs}/{len(HUB_SOURCES)} hub copies cached in the Hugging Face cache {cache_dir()} (read with "
          f"--source hub; fetch with `pmgaft datasets --download NAME --source hub`).")
    return 0
