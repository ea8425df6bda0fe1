"""The test-time defence table: per model and dataset, the classifier without the defence, under it against the
non-adaptive attack (the defence paper's threat model), and against the adaptive attacks (defence-aware).

One table per (defence, attack id, eps); columns in %: clean without / with the defence, robust without the
defence, robust non-adaptive, robust adaptive (worst case over the adaptive attacks, each one's own number in the
last column). The undefended numbers come from the grid's undefended cells of the same run.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from pmgaft.evaluation.results import defence_id

ADAPTIVE = "-adaptive"


@dataclass
class DefenceRow:
    model: str
    dataset: str
    clean: float | None = None  # undefended clean accuracy
    robust: float | None = None  # undefended robust accuracy (same attack and eps)
    clean_defended: float | None = None
    robust_non_adaptive: float | None = None
    robust_adaptive: float | None = None
    by_attack: dict[str, float] = field(default_factory=dict)

    def values(self) -> list[float | None]:
        return [self.clean, self.clean_defended, self.robust, self.robust_non_adaptive, self.robust_adaptive]


@dataclass
class DefenceTable:
    defence: str
    attack_id: str
    eps_255: float
    rows: list[DefenceRow]

    @property
    def title(self) -> str:
        return f"Test-time defence {self.defence}: {self.attack_id}, eps = {self.eps_255:g}/255"


COLUMNS = ["clean (no defence)", "clean (defence)", "robust (no defence)", "robust, non-adaptive",
           "robust, adaptive"]


def _ok(card: dict[str, Any]) -> bool:
    return "error" not in card and "robust_accuracy" in card


def build_defence_tables(cards: list[dict[str, Any]]) -> list[DefenceTable]:
    """One table per (defence, attack id, eps) that has defended cards; rows in the order cards were given."""
    undefended = {(c["model"]["label"], c["dataset"]["name"], c["attack"]["id"], float(c["attack"]["eps_255"])): c
                  for c in cards if _ok(c) and not defence_id(c)}
    clean = {(c["model"]["label"], c["dataset"]["name"]): c["clean_accuracy"] for c in undefended.values()}
    tables: dict[tuple[str, str, float], DefenceTable] = {}
    rows: dict[tuple, DefenceRow] = {}
    for c in cards:
        tag = defence_id(c)
        if not tag or not _ok(c) or c["attack"]["name"] == "none":
            continue
        model, dataset, attack, eps = c["model"]["label"], c["dataset"]["name"], c["attack"]["id"], \
            float(c["attack"]["eps_255"])
        name = c["defence"]["name"]
        table = tables.setdefault((name, attack, eps), DefenceTable(name, attack, eps, []))
        row = rows.get((name, attack, eps, model, dataset))
        if row is None:
            base = undefended.get((model, dataset, attack, eps))
            row = DefenceRow(model, dataset, clean.get((model, dataset)),
                             base["robust_accuracy"] if base else None)
            rows[(name, attack, eps, model, dataset)] = row
            table.rows.append(row)
        row.clean_defended = c["clean_accuracy"]
        if tag.endswith(ADAPTIVE):
            row.robust_adaptive = c["robust_accuracy"]
            row.by_attack = dict(c.get("robust_accuracy_by_attack") or {})
        else:
            row.robust_non_adaptive = c["robust_accuracy"]
    return [tables[k] for k in sorted(tables)]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def to_markdown(t: DefenceTable) -> str:
    header = ["model", "dataset", *COLUMNS, "adaptive, per attack"]
    lines = [f"### {t.title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in t.rows:
        per = ", ".join(f"{a} {_pct(v)}" for a, v in r.by_attack.items()) or "-"
        lines.append("| " + " | ".join([r.model, r.dataset, *map(_pct, r.values()), per]) + " |")
    lines += ["", "Accuracy in %. Non-adaptive: the attack sees the undefended classifier and the defence runs on its "
              "output (the defence paper's evaluation). Adaptive: the attack sees the defence; robust only if the "
              "sample survives every adaptive attack.", ""]
    return "\n".join(lines)


def to_csv(tables: list[DefenceTable]) -> str:
    """One row per (defence, attack, eps, model, dataset); accuracies in %, empty when missing."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["defence", "attack", "eps_255", "model", "dataset", "clean", "clean_defended", "robust",
                "robust_non_adaptive", "robust_adaptive", "robust_adaptive_by_attack"])
    for t in tables:
        for r in t.rows:
            w.writerow([t.defence, t.attack_id, f"{t.eps_255:g}", r.model, r.dataset,
                        *("" if v is None else f"{100 * v:.2f}" for v in r.values()),
                        ";".join(f"{a}={100 * v:.2f}" for a, v in r.by_attack.items())])
    return buf.getvalue()
