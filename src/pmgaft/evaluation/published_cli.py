"""``pmgaft published``: the published numbers pmgaft ships (:mod:`pmgaft.evaluation.published`), as a table or JSON.

The table shows one row per (method, protocol, attack, eps) with how many per-set values the source gives and its
average; ``--json`` prints every number with its source. ``pmgaft report RESULTS --compare`` puts them beside
your results.
"""
from __future__ import annotations

import argparse
import json

from pmgaft.data.cli import format_table
from pmgaft.evaluation.published import SCHEMA, PublishedRow, published_rows

HEADER = ("id", "method", "backbone", "trained on", "protocol", "attack", "eps", "per set (robust/clean)",
          "average robust/clean", "source")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", help="only rows under this evaluation protocol (e.g. tga-zsr, paper, ttc)")
    parser.add_argument("--method", help="only rows of this method (e.g. pmg_aft, tecoa, clip, clip+ttc)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON, every per-set number included")


def _average(row: PublishedRow) -> str:
    a = row.average
    if a is None:
        return "-"
    values = "/".join("-" if v is None else f"{v:.2f}" for v in (a.robust, a.clean))
    return f"{values} ({len(a.datasets)} sets)"


def table_row(row: PublishedRow) -> tuple[str, ...]:
    return (row.id, row.method, row.backbone, row.train_dataset or "-", row.protocol, row.attack_id,
            f"{row.eps_255:g}", f"{len(row.robust)}/{len(row.clean)}", _average(row), row.source.key)


def run(args: argparse.Namespace) -> int:
    rows = published_rows(args.protocol, args.method)
    if args.json:
        print(json.dumps({"schema": SCHEMA, "rows": [r.to_dict() for r in rows]}, indent=2))
        return 0
    print(format_table([HEADER, *(table_row(r) for r in rows)]))
    print("\nAccuracy in %, eps in 1/255. Sources:")
    for source in dict.fromkeys(r.source for r in rows):
        print(f"  {source.key}: {source.citation}. {source.url}")
    print("Per-set numbers: --json. Beside your results: pmgaft report RESULTS --compare (see docs/published.md).")
    return 0
