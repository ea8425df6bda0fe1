"""The quickstart's terminal table and the one sentence that says what it shows (computed, never canned)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pmgaft.evaluation.results import load_results

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
        if "error" in card or card["attack"]["name"] != "pgd" or abs(card["attack"]["eps_255"] - eps) > 1e-9:
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


def summary_sentence(t: QuickTable, *, eps: float, fine_tune_set: str) -> str:
    """What the numbers say: robustness gained where fine-tuned, and PMG-AFT vs TeCoA on the held-out sets."""
    def get(dataset: str, label: str) -> tuple[float, float]:
        return t.cells.get((dataset, label), (float("nan"), float("nan")))

    orig_r, orig_c = get(fine_tune_set, "original")
    tec_r, pmg_r = get(fine_tune_set, "tecoa")[0], get(fine_tune_set, "pmg_aft")[0]
    (tz_r, tz_c), (pz_r, pz_c) = (t.zero_shot_average(label, fine_tune_set) for label in ("tecoa", "pmg_aft"))
    oz_r, oz_c = t.zero_shot_average("original", fine_tune_set)
    gained = "both fine-tuned models are" if min(tec_r, pmg_r) > orig_r else "not every fine-tuned model is"
    robust = "more" if pz_r > tz_r else ("less" if pz_r < tz_r else "as")
    clean = "keeps more" if pz_c > tz_c else ("keeps less" if pz_c < tz_c else "keeps as much")
    verdict = "PMG-AFT beats TeCoA here" if pz_r >= tz_r and pz_c >= tz_c else (
        "PMG-AFT does not beat TeCoA here" if pz_r <= tz_r and pz_c <= tz_c else "a trade-off, not a clear win")
    versus_original = ("more" if min(tz_r, pz_r) > oz_r else "less" if max(tz_r, pz_r) < oz_r else "about as")
    return (f"PGD at eps {eps:g}/255 takes the original tiny CLIP from {orig_c:.1f}% to {orig_r:.1f}% on "
            f"{fine_tune_set} and from {oz_c:.1f}% to {oz_r:.1f}% on the zero-shot sets; after fine-tuning on "
            f"{fine_tune_set} {gained} more robust there (TeCoA {tec_r:.1f}%, PMG-AFT {pmg_r:.1f}%). On the held-out "
            f"sets PMG-AFT is {robust} robust than TeCoA ({pz_r:.1f}% vs {tz_r:.1f}%) and {clean} clean accuracy "
            f"({pz_c:.1f}% vs {tz_c:.1f}%): {verdict}. Both pay for robustness with zero-shot clean accuracy "
            f"({oz_c:.1f}% before) and are {versus_original} robust there than the original.")
