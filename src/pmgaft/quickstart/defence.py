"""``pmgaft quickstart --defence ttc``: does a test-time defence hold once the attacker knows it is there?

The three quickstart models are evaluated once more, on fewer images (``--defence-samples``; the adaptive attacks
differentiate through the defence), without the defence, under it against the non-adaptive attack (the
defence paper's threat model) and against the adaptive attacks. One table, averaged over the held-out sets, and
one sentence computed from it.

The quickstart attacks at 8/255 (its 28 px models need that budget), eight times TTC's paper setting of 1/255.
TTC's budget and step are scaled with it unless given (``--ttc-eps``, ``--ttc-step-size``): TTC counters a 1/255
attack with a 4/255 counterattack of 1/255 steps, so here 4 x eps and eps.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from pmgaft.errors import PmgaftError
from pmgaft.evaluation.defence_args import resolve_defence
from pmgaft.evaluation.defence_table import DefenceRow, build_defence_tables
from pmgaft.evaluation.defended import DefenceConfig
from pmgaft.evaluation.protocols import Protocol
from pmgaft.evaluation.results import load_results
from pmgaft.quickstart.summary import NAMES

# (header, DefenceRow field): the undefended pair first, then the defended numbers
COLUMNS = (("clean", "clean"), ("robust", "robust"), ("clean (defence)", "clean_defended"),
           ("robust, non-adaptive", "robust_non_adaptive"), ("robust, adaptive", "robust_adaptive"))


def quickstart_defence(args: argparse.Namespace) -> DefenceConfig | None:
    """The defence of ``--defence`` with TTC's budget and step scaled to the quickstart's eps unless given."""
    if args.defence != "none" and "eps" in _defaults(args.defence):
        if args.ttc_eps is None:
            args.ttc_eps = 4 * args.eps
        if args.ttc_step_size is None and "step_size" in _defaults(args.defence):
            args.ttc_step_size = args.eps
    return resolve_defence(args)


def _defaults(name: str) -> dict:
    from pmgaft.defences import DEFENCES

    return dict(DEFENCES[name].defaults)


def evaluate_defence(checkpoints: dict[str, Path], defence: DefenceConfig, args: argparse.Namespace,
                     protocol: Protocol, results: Path) -> None:
    """Clean and PGD cells, then the defended ones (both threat models), on ``--defence-samples`` images."""
    from pmgaft.evaluation import GridConfig, model_specs, run_grid

    protocol = replace(protocol, attacks=("pgd",), n_samples=args.defence_samples or None)
    specs = model_specs(None, None, [f"{label}={path}" for label, path in checkpoints.items()])
    cfg = GridConfig(protocol, out=results, data_root=args.data_root, batch_size=64, device="cpu",
                     skip_existing=True, progress=not args.no_progress, defence=defence)
    cards = run_grid(specs, cfg, log=lambda line: print(f"  {line}", flush=True))
    failed = [c for c in cards if "error" in c]
    if failed:
        raise PmgaftError(f"the defended evaluation failed for {len(failed)} cell(s) (first: "
                          f"{failed[0]['error'][:300]}); results so far are in {results}")


def average_rows(results: Path, labels: list[str], fine_tune_set: str) -> dict[str, list[float | None]]:
    """label -> the five columns in %, averaged over the held-out sets (the fine-tuning set excluded)."""
    tables = build_defence_tables(load_results(results))
    rows: list[DefenceRow] = [r for t in tables for r in t.rows if r.dataset != fine_tune_set]
    out = {}
    for label in labels:
        mine = [[getattr(r, name) for _, name in COLUMNS] for r in rows if r.model == label]
        out[label] = [None if not mine or any(v[i] is None for v in mine) else
                      100 * sum(v[i] for v in mine) / len(mine) for i in range(len(COLUMNS))]
    return out


def print_defence_table(results: Path, *, labels: list[str], eps: float, defence: DefenceConfig,
                        fine_tune_set: str) -> dict[str, list[float | None]]:
    rows = average_rows(results, labels, fine_tune_set)
    settings = ", ".join(f"{k} {v * 255:g}/255" if k in ("eps", "step_size") else f"{k} {v:g}"
                         for k, v in defence.settings.items())
    print(f"\nHeld-out sets (average), PGD at eps {eps:g}/255, accuracy (%), without and under {defence.name} "
          f"({settings}; adaptive: EOT over {defence.eot_samples} draws):\n")
    header = ["model", *(title for title, _ in COLUMNS)]
    body = [[NAMES.get(label, label), *("-" if v is None else f"{v:.1f}" for v in rows[label])] for label in labels]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *body]:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return rows


def defence_sentence(rows: dict[str, list[float | None]], *, defence: str, label: str = "original") -> str:
    """What the numbers say about the defence on ``label`` (computed, never canned)."""
    values = rows.get(label)
    if not values or any(v is None for v in values):
        return f"No complete {defence} numbers for {NAMES.get(label, label)}."
    clean, robust, clean_def, non_adaptive, adaptive = values
    gain, kept = non_adaptive - robust, adaptive - robust
    name = NAMES.get(label, label)
    if gain <= 0:
        return (f"On the held-out sets, {defence} does not lift the {name} model's robust accuracy even against the "
                f"attack that ignores it ({robust:.1f}% -> {non_adaptive:.1f}%; clean {clean:.1f}% -> "
                f"{clean_def:.1f}%); attacked through it: {adaptive:.1f}%.")
    verdict = "holds" if kept >= 0.5 * gain else "does NOT hold"
    lost = (f"below the undefended {robust:.1f}%: all {gain:.1f} points gained are gone and {-kept:.1f} more"
            if kept < 0 else f"{gain - kept:.1f} of the {gain:.1f} points gained are gone")
    return (f"On the held-out sets, {defence} lifts the {name} model's robust accuracy from {robust:.1f}% to "
            f"{non_adaptive:.1f}% against the attack that ignores it (clean {clean:.1f}% -> {clean_def:.1f}%); "
            f"attacked through the defence it keeps {adaptive:.1f}%, {lost}, so the defence {verdict} once the "
            f"attacker knows it is there.")
