"""The quickstart's terminal table and the one sentence that says what it shows (computed, never canned)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pmgaft.evaluation.results import defence_id, load_results

NAMES = {"original": "original", "tecoa": "TeCoA", "pmg_aft": "PMG-AFT"}


@dataclass
class QuickTable:
    labels: list[str]
    datasets: list[str]
    cells: dict[tuple[str, str], tuple[float, float]]  # (dataset, label) -> (robust %, clean %)

    def zero_shot_average(self, label: str, fine_tune_set: str) -> tuple[float, float]:
        vals = [self.cells[(d, label)] for d in self.datasets if d != fine_tune_set and (d, label) in self.cells]
        return (sum(r for r, _ in vals) / len(vals), sum(c for _, c in vals) / len(vals)) if vals else (0.0, 0.0)


def load_table(results: Path, labels: list[str], eps: float) -> QuickTable:
    cells: dict[tuple[str, str], tuple[float, float]] = {}
    datasets: list[str] = []
    for card in load_results(results):
        if ("error" in card or card["attack"]["name"] != "pgd" or abs(card["attack"]["eps_255"] - eps) > 1e-9
                or defence_id(card)):
            continue
        label, dataset = card["model"]["label"], card["dataset"]["name"]
        if label in labels:
            cells[(dataset, label)] = (100 * card["robust_accuracy"], 100 * card["clean_accuracy"])
            if dataset not in datasets:
                datasets.append(dataset)
    order = ["fashion_mnist", "mnist", "digits"]
    datasets.sort(key=lambda d: order.index(d) if d in order else len(order))
    return QuickTable(labels, datasets, cells)


def print_table(results: Path, *, labels: list[str], eps: float, fine_tune_set: str) -> QuickTable:
    t = load_table(results, labels, eps)
    header = ["dataset", *(NAMES.get(label, label) for label in labels)]
    rows = [[f"{d}{' (fine-tune set)' if d == fine_tune_set else ''}",
             *(f"{t.cells[(d, label)][0]:5.1f} / {t.cells[(d, label)][1]:5.1f}" if (d, label) in t.cells else "-"
               for label in labels)] for d in t.datasets]
    rows.append(["average, zero-shot sets",
                 *("{:5.1f} / {:5.1f}".format(*t.zero_shot_average(label, fine_tune_set)) for label in labels)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:  # first column left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    print(f"\nZero-shot accuracy, PGD robust / clean (%), L-inf eps = {eps:g}/255:\n")
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))
    return t


def claims(t: QuickTable, fine_tune_set: str) -> list[tuple[str, bool, str]]:
    """The paper's three claims, each with whether these numbers support it and the numbers that say so."""
    (oz_r, oz_c), (tz_r, tz_c), (pz_r, pz_c) = (t.zero_shot_average(label, fine_tune_set)
                                                 for label in ("original", "tecoa", "pmg_aft"))
    return [
        ("the original model collapses under attack on the held-out sets", oz_r < 0.5 * oz_c,
         f"{oz_c:.1f}% clean -> {oz_r:.1f}% robust"),
        ("fine-tuning raises zero-shot robustness above the original", min(tz_r, pz_r) > oz_r,
         f"held-out robust: original {oz_r:.1f}%, TeCoA {tz_r:.1f}%, PMG-AFT {pz_r:.1f}%"),
        ("PMG-AFT beats TeCoA on held-out robust and clean accuracy", pz_r > tz_r and pz_c > tz_c,
         f"robust {pz_r:.1f}% vs {tz_r:.1f}%, clean {pz_c:.1f}% vs {tz_c:.1f}%"),
    ]


def summary_sentence(t: QuickTable, *, eps: float, fine_tune_set: str) -> str:
    """What the numbers say about the paper's three claims, computed from the table (never canned)."""
    orig_r, orig_c = t.cells.get((fine_tune_set, "original"), (float("nan"), float("nan")))
    tec_r = t.cells.get((fine_tune_set, "tecoa"), (float("nan"),))[0]
    pmg_r = t.cells.get((fine_tune_set, "pmg_aft"), (float("nan"),))[0]
    found = claims(t, fine_tune_set)
    held = sum(ok for _, ok, _ in found)
    parts = [f"({i}) {text}: {'holds' if ok else 'does NOT hold'} ({numbers})"
             for i, (text, ok, numbers) in enumerate(found, 1)]
    return (f"On {fine_tune_set}, the set both were fine-tuned on, PGD at eps {eps:g}/255 takes the original from "
            f"{orig_c:.1f}% to {orig_r:.1f}%, TeCoA keeps {tec_r:.1f}% and PMG-AFT {pmg_r:.1f}%. Of the paper's "
            f"three claims, {held} hold{'s' if held == 1 else ''} on the held-out sets here: " + "; ".join(parts) + ".")
