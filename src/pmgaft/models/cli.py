"""``pmgaft models``: the public robust CLIP models pmgaft knows by name, with their facts and reported numbers.

Each name works wherever a model is named (``pmgaft eval --model fare4-clip``, ``--checkpoint fare4-clip``,
``pmgaft train --model fare4-clip``); the "cached" column says whether its files are in the Hugging Face cache
already (then it loads offline).
"""
from __future__ import annotations

import argparse
import json

from pmgaft.data.cli import format_table
from pmgaft.errors import PmgaftError
from pmgaft.models.catalogue import CatalogueEntry, catalogue, find_entry
from pmgaft.models.hub_folder import WEIGHTS_NAMES
from pmgaft.utils import did_you_mean

HEADER = ("name", "architecture", "init", "method", "eps", "trained on", "reported clean / robust (eps)", "cached",
          "hub repo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help="only these models (default: all)")
    parser.add_argument("--json", action="store_true", help="print the entries as JSON (every fact and source)")


def cached(entry: CatalogueEntry) -> str:
    """"yes" when config and weights are in the Hugging Face cache, "config" when only the config is, else "no"."""
    from huggingface_hub import try_to_load_from_cache

    def has(filename: str) -> bool:
        return isinstance(try_to_load_from_cache(entry.repo, filename), str)

    if not has("open_clip_config.json"):
        return "no"
    return "yes" if any(has(f) for f in WEIGHTS_NAMES) else "config"


def reported(entry: CatalogueEntry) -> str:
    if not entry.reported:
        return "-"
    r = entry.reported
    return f"{r['clean']:.1f} / " + ", ".join(f"{acc:.1f} ({eps})" for eps, acc in r["robust"].items())


def row(entry: CatalogueEntry) -> tuple[str, ...]:
    return (entry.name, entry.architecture, entry.init, entry.method, entry.eps or "?", entry.train_dataset or "?",
            reported(entry), cached(entry), entry.repo)


def run(args: argparse.Namespace) -> int:
    entries = list(catalogue().values())
    if args.names:
        found = [find_entry(n) for n in args.names]
        missing = [n for n, e in zip(args.names, found) if e is None]
        if missing:
            raise PmgaftError(f"no model {missing[0]!r} in the catalogue.{did_you_mean(missing[0], catalogue())} "
                              f"Any open_clip hub repo loads as hf-hub:ORG/NAME.")
        entries = [e for e in found if e is not None]
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    print(format_table([HEADER] + [row(e) for e in entries]))
    sources = sorted({e.reported["source"] for e in entries if e.reported})
    print("\nreported: the authors' numbers, in % (see --json for the metric); sources: " + "; ".join(sources))
    print(f"use a name wherever a model is named, e.g. pmgaft eval --model {entries[0].name}; any open_clip "
          f"hub repo loads as hf-hub:ORG/NAME, an exported folder as local-dir:PATH.")
    return 0
