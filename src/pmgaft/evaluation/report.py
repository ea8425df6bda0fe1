"""``pmgaft report RESULTS_DIR``: Markdown + CSV tables, PNG plots and sanity flags from result cards.

Writes into ``--out`` (default ``RESULTS_DIR/report``): ``report.md`` (every table, the flags, failed cells),
``table_<attack>_eps<k>.csv`` (wide), ``results.csv`` (one row per card) and the plots of
:mod:`pmgaft.evaluation.plots`. The Markdown tables and the flags are also printed. Cards of a test-time defence
(``pmgaft eval --defence``) go into their own tables (:mod:`pmgaft.evaluation.defence_table`) and
``defences.csv``; the other tables, ``results.csv`` and the plots hold the undefended cards. ``--compare`` adds the
published numbers beside yours (:mod:`pmgaft.evaluation.compare`): a report.md section and ``compare.csv``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pmgaft.errors import PmgaftError
from pmgaft.evaluation import defence_table
from pmgaft.evaluation.checks import find_suspicious
from pmgaft.evaluation.compare import DEFAULT_TOLERANCE, CompareReport, compare_cards, flag_lines, parse_compare_as
from pmgaft.evaluation.results import defence_id, load_results
from pmgaft.evaluation.tables import build_tables, long_csv, to_csv, to_markdown
from pmgaft.utils import atomic_write_text

FORMATS = ("md", "csv", "png")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, help="results directory written by `pmgaft eval`")
    parser.add_argument("--out", type=Path, help="where to write the report (default: RESULTS/report)")
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=list(FORMATS),
                        help="outputs: md (report.md), csv (tables + results.csv), png (plots) (default: all)")
    parser.add_argument("--quiet", action="store_true", help="write the report without printing the tables")
    c = parser.add_argument_group("published numbers beside yours (docs/published.md)")
    c.add_argument("--compare", action="store_true",
                   help="put the published number beside every cell that has one under the same protocol, attack, "
                        "eps, dataset, method and backbone (report.md section + compare.csv); `pmgaft published` "
                        "lists them")
    c.add_argument("--tolerance", type=float, metavar="PTS",
                   help=f"flag differences larger than PTS accuracy points (default: {DEFAULT_TOLERANCE:g})")
    c.add_argument("--compare-as", nargs="+", default=[], metavar="LABEL=METHOD",
                   help="compare model LABEL as published METHOD (for checkpoints that do not record their "
                        "method, e.g. released weights: tgazsr-release=tga_zsr)")


def build_report(cards: list[dict[str, Any]], title: str = "pmgaft results",
                 comparison: CompareReport | None = None) -> tuple[str, list[str]]:
    """The Markdown report (with the published numbers beside yours when ``comparison`` is given) and the
    suspicious-result notes."""
    ok = [c for c in cards if "error" not in c]
    failed = [c for c in cards if "error" in c]
    notes = find_suspicious(cards)
    parts = [f"# {title}", "", f"{len(ok)} result(s), {len(failed)} failed cell(s).", ""]
    parts += [to_markdown(t) for t in build_tables(_undefended(cards))]
    defended = defence_table.build_defence_tables(cards)
    if defended:
        parts += ["## Test-time defences", ""] + [defence_table.to_markdown(t) for t in defended]
    if comparison is not None:
        parts.append(comparison.markdown())
    parts += ["## Suspicious results", ""]
    parts += [f"- WARNING: {n}" for n in notes] or ["None found."]
    if failed:
        parts += ["", "## Failed cells", ""]
        parts += [f"- {c['model']['label']} / {c['dataset']['name']} / {c['attack']['id']} "
                  f"eps={c['attack']['eps_255']:g}/255{f' [{defence_id(c)}]' if defence_id(c) else ''}: "
                  f"{c['error'].splitlines()[0][:300]}" for c in failed]
    return "\n".join(parts) + "\n", notes


def _undefended(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in cards if not defence_id(c)]


def write_report(results: Path, out: Path, formats: tuple[str, ...] | list[str] = FORMATS, *,
                 compare: bool = False, tolerance: float = DEFAULT_TOLERANCE,
                 compare_as: dict[str, str] | None = None) -> dict[str, Any]:
    """Write the report files; returns ``{"markdown", "notes", "files", "comparison"}``. With ``compare``, a
    results directory without any published counterpart is a PmgaftError before anything is written."""
    cards = load_results(results)
    if not cards:
        raise PmgaftError(f"no result cards (*.json with schema pmgaft.result/1) under {results}: run "
                          f"`pmgaft eval --out {results} ...` first.")
    comparison = compare_cards(cards, tolerance=tolerance, compare_as=compare_as) if compare else None
    markdown, notes = build_report(cards, title=f"pmgaft results: {results}", comparison=comparison)
    tables = build_tables(_undefended(cards))
    defended = defence_table.build_defence_tables(cards)
    files: list[Path] = []
    if "md" in formats:
        files.append(atomic_write_text(out / "report.md", markdown))
    if "csv" in formats:
        files.append(atomic_write_text(out / "results.csv", long_csv(_undefended(cards))))
        files += [atomic_write_text(out / f"table_{t.key[0]}_eps{t.key[1]:g}.csv", to_csv(t)) for t in tables]
        if defended:
            files.append(atomic_write_text(out / "defences.csv", defence_table.to_csv(defended)))
        if comparison is not None:
            files.append(atomic_write_text(out / "compare.csv", comparison.csv()))
    if "png" in formats:
        from pmgaft.evaluation.plots import make_plots

        files += make_plots(tables, out)
    return {"markdown": markdown, "notes": notes, "files": files, "comparison": comparison}


def run(args: argparse.Namespace) -> int:
    if not args.compare and (args.tolerance is not None or args.compare_as):
        raise PmgaftError("--tolerance and --compare-as apply to --compare: add --compare.")
    out = args.out or args.results / "report"
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    report = write_report(args.results, out, args.format, compare=args.compare, tolerance=tolerance,
                          compare_as=parse_compare_as(args.compare_as))
    if not args.quiet:
        print(report["markdown"])
    for note in report["notes"]:
        print(f"WARNING: {note}")
    comparison: CompareReport | None = report["comparison"]
    if comparison is not None:
        for line in flag_lines(comparison):
            print(f"DIFFERS from published (beyond ±{comparison.tolerance:g}): {line}")
        print(f"pmgaft report: {len(comparison.comparisons)} comparison(s) with published numbers, "
              f"{len(comparison.flagged())} beyond ±{comparison.tolerance:g} point(s)")
    print(f"pmgaft report: wrote {len(report['files'])} file(s) to {out}")
    return 0
