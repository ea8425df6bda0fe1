"""Paper-style tables from result cards: datasets x models, cells "robust/clean" in %, one per (attack, eps).

Two average rows as in the paper: over the zero-shot sets (every dataset but the fine-tuning sets: TinyImageNet
and whatever set a model in the table was fine-tuned on, from its checkpoint metadata) and over all sets; each
averages the datasets that have a result in that column. Cards evaluated under a protocol that names its own
averaged sets (``Protocol.averaged``: agft's 15 with ImageNet, ttc's 16) add that protocol's average row.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from pmgaft.data import DATASETS, PAPER_DATASETS

TableKey = tuple[str, float]  # (attack id, eps in 1/255)


@dataclass
class Table:
    key: TableKey
    models: list[str]
    datasets: list[str]
    cells: dict[tuple[str, str], dict[str, Any]]  # (dataset, model) -> card
    fine_tune_sets: frozenset[str] = frozenset()  # excluded from the zero-shot average
    protocol_sets: dict[str, tuple[str, ...]] = field(default_factory=dict)  # protocol -> the sets it averages

    @property
    def scoring(self) -> str:
        """How robust accuracy was scored in this table's cells ("worst", "final", or "mixed")."""
        found = {c.get("attack", {}).get("scoring", "worst") for c in self.cells.values() if "error" not in c}
        return found.pop() if len(found) == 1 else "mixed" if found else ""

    @property
    def title(self) -> str:
        attack, eps = self.key
        if attack == "none":
            return "clean (no attack)"
        scoring = {"worst": "worst case over iterates", "final": "final iterate"}.get(self.scoring, self.scoring)
        return f"{attack}, eps = {eps:g}/255" + (f" ({scoring})" if scoring else "")

    def value(self, dataset: str, model: str) -> tuple[float, float] | str | None:
        card = self.cells.get((dataset, model))
        if card is None:
            return None
        if "error" in card:
            return "error"
        return 100 * card["robust_accuracy"], 100 * card["clean_accuracy"]

    def average(self, model: str, zero_shot_only: bool) -> tuple[float, float, int] | None:
        return self.average_over(model, [d for d in self.datasets if not zero_shot_only or self.is_zero_shot(d)])

    def average_over(self, model: str, datasets: list[str] | tuple[str, ...]) -> tuple[float, float, int] | None:
        """(robust, clean, count): the plain mean over those of ``datasets`` with a result for ``model``."""
        vals = [v for d in datasets for v in [self.value(d, model)] if isinstance(v, tuple)]
        if not vals:
            return None
        return sum(r for r, _ in vals) / len(vals), sum(c for _, c in vals) / len(vals), len(vals)

    def average_rows(self) -> list[tuple[str, str, list[tuple[float, float, int] | None]]]:
        """(Markdown label, CSV label, per-model averages): zero-shot, all, then each protocol's own."""
        rows = [("average (zero-shot)", "average_zero_shot", [self.average(m, True) for m in self.models]),
                ("average (all)", "average_all", [self.average(m, False) for m in self.models])]
        rows += [(f"average ({name} protocol, {len(sets)} sets)", f"average_{name}",
                  [self.average_over(m, sets) for m in self.models]) for name, sets in self.protocol_sets.items()]
        return rows

    def is_zero_shot(self, dataset: str) -> bool:
        """Every set but the fine-tuning ones: role "fine-tune" (TinyImageNet) or a model's training set."""
        spec = DATASETS.get(dataset)
        return dataset not in self.fine_tune_sets and (spec is None or spec.role != "fine-tune")


def _dataset_order(names: set[str]) -> list[str]:
    return [d for d in PAPER_DATASETS if d in names] + sorted(names - set(PAPER_DATASETS))


def build_tables(cards: list[dict[str, Any]]) -> list[Table]:
    """One table per (attack id, eps), models in the order they were evaluated, datasets in the paper's order."""
    tables: dict[TableKey, Table] = {}
    for card in cards:
        key = (card["attack"]["id"], float(card["attack"]["eps_255"]))
        t = tables.setdefault(key, Table(key, [], [], {}))
        model, dataset = card["model"]["label"], card["dataset"]["name"]
        if model not in t.models:
            t.models.append(model)
        t.cells[(dataset, model)] = card
        protocol = card.get("config", {}).get("protocol", {})
        if protocol.get("averaged"):
            t.protocol_sets[protocol["name"]] = tuple(protocol["averaged"])
    evaluated = {}  # model label -> when its first cell was computed (the order given to `pmgaft eval`)
    for card in cards:
        stamp = str(card.get("run", {}).get("timestamp", ""))
        label = card["model"]["label"]
        evaluated[label] = min(evaluated.get(label, stamp), stamp)
    trained_on = frozenset(c["model"].get("train_dataset") for c in cards if c["model"].get("train_dataset"))
    for t in tables.values():
        t.datasets = _dataset_order({d for d, _ in t.cells})
        t.fine_tune_sets = trained_on
        t.models.sort(key=lambda m: (evaluated[m], m))
    return [tables[k] for k in sorted(tables, key=lambda k: (k[0] != "none", k[0], k[1]))]


def _fmt(v: tuple[float, float] | str | None) -> str:
    if v is None:
        return "-"
    return v if isinstance(v, str) else f"{v[0]:.2f}/{v[1]:.2f}"


def _rows(t: Table) -> list[list[str]]:
    rows = [[d, *(_fmt(t.value(d, m)) for m in t.models)] for d in t.datasets]
    for name, _, avgs in t.average_rows():
        if any(avgs):
            rows.append([f"**{name}**", *(f"**{a[0]:.2f}/{a[1]:.2f}** ({a[2]})" if a else "-" for a in avgs)])
    return rows


def to_markdown(t: Table) -> str:
    header = ["dataset", *t.models]
    lines = [f"### {t.title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(t)]
    lines += ["", "Cells: robust / clean accuracy (%); averages: mean over the datasets with a result (count).", ""]
    return "\n".join(lines)


def to_csv(t: Table) -> str:
    """Wide CSV: dataset, then <model>_robust and <model>_clean (numbers in %; empty when missing)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["dataset", *(f"{m}_{k}" for m in t.models for k in ("robust", "clean"))])
    for d in t.datasets:
        row = [d]
        for m in t.models:
            v = t.value(d, m)
            row += [f"{v[0]:.2f}", f"{v[1]:.2f}"] if isinstance(v, tuple) else [v or "", v or ""]
        w.writerow(row)
    for _, name, avgs in t.average_rows():
        row = [name]
        for a in avgs:
            row += [f"{a[0]:.2f}", f"{a[1]:.2f}"] if a else ["", ""]
        w.writerow(row)
    return buf.getvalue()


def long_csv(cards: list[dict[str, Any]]) -> str:
    """One row per card (errors included): the flat view for spreadsheets and pandas."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "method", "dataset", "attack", "steps", "eps_255", "n", "clean_accuracy",
                "robust_accuracy", "error"])
    for c in cards:
        a = c["attack"]
        w.writerow([c["model"]["label"], c["model"].get("method", ""), c["dataset"]["name"], a["id"],
                    a.get("steps") or "", f"{a['eps_255']:g}", c.get("n", ""),
                    f"{c['clean_accuracy']:.6f}" if "clean_accuracy" in c else "",
                    f"{c['robust_accuracy']:.6f}" if "robust_accuracy" in c else "", c.get("error", "")[:200]])
    return buf.getvalue()
