"""The exported model's measured numbers: its result cards, and ``robustness.json`` in RobustBench's field names.

:func:`measured` picks the cards of a results directory whose model is the exported model: the same tensors by
pmgaft's weights hash (the checkpoint file's sha256 only for a card that records no hash: one file can give other
tensors, e.g. an image-tower-only file with another base text tower), the same activation (a card of the same
weights run with the other one measured another function) and no test-time defence (a ``pmgaft eval --defence``
card measured the weights plus a defence, not the weights) -- one row per (protocol, dataset, attack, eps), the
newest where a cell was evaluated under several labels. :func:`robustness_doc` averages them over the datasets,
one entry per (protocol, eps, attack), with RobustBench's fields: ``clean_acc``, ``autoattack_acc`` (where
AutoAttack ran; other attacks give ``robust_acc``), ``eps`` as ``"4/255"``, ``threat_model``, ``reported: false``
(measured by pmgaft, not a paper's claim). Accuracies are in percent, as RobustBench writes them; the mean over
sets is unweighted, as the papers' average columns.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

from pmgaft.evaluation.results import defence_id, load_results

SCHEMA = "pmgaft.robustness/1"
THREAT_MODELS = {"linf": "Linf", "l2": "L2"}


@dataclass(frozen=True)
class Measured:
    """One result card of the exported model (accuracies as fractions)."""

    protocol: str
    dataset: str
    split: str
    n: int
    attack: str  # the attack id (pgd100, autoattack, none)
    attack_name: str
    eps_255: float
    threat_model: str
    scoring: str
    clean: float
    robust: float
    timestamp: str

    @property
    def eps(self) -> str:
        return f"{self.eps_255:g}/255"

    @property
    def is_clean(self) -> bool:
        return self.attack_name == "none"


def _same_model(model: dict[str, Any], weights_hash: str, sha256: str, quick_gelu: bool | None) -> bool:
    """Whether a card's ``model`` block is the exported model (see the module docstring)."""
    same_weights = model["weights_hash"] == weights_hash if model.get("weights_hash") else \
        model.get("sha256") == sha256
    recorded = model.get("quick_gelu")
    return same_weights and (quick_gelu is None or recorded is None or recorded == quick_gelu)


def measured(results: str | Path, *, weights_hash: str, sha256: str, quick_gelu: bool | None = None
             ) -> list[Measured]:
    """The successful undefended cards under ``results`` of the exported model, one per cell (sorted).
    ``quick_gelu``: the exported activation (None: any)."""
    rows: dict[tuple[str, str, str, float], Measured] = {}
    for card in load_results(results) if Path(results).is_dir() else []:
        if "error" in card or defence_id(card) or not _same_model(card.get("model", {}), weights_hash, sha256,
                                                                    quick_gelu):
            continue  # a defended card shares its undefended twin's cell (and is newer): not the weights' number
        a = card["attack"]
        row = Measured(protocol=card.get("config", {}).get("protocol", {}).get("name", "?"),
                       dataset=card["dataset"]["name"], split=card["dataset"].get("split", "?"), n=int(card["n"]),
                       attack=a["id"], attack_name=a["name"], eps_255=float(a["eps_255"]),
                       threat_model=THREAT_MODELS.get(str(a.get("norm", "linf")).lower(), str(a.get("norm"))),
                       scoring=str(a.get("scoring", "")), clean=float(card["clean_accuracy"]),
                       robust=float(card["robust_accuracy"]), timestamp=str(card.get("run", {}).get("timestamp", "")))
        key = (row.protocol, row.dataset, row.attack, row.eps_255)
        if key not in rows or row.timestamp > rows[key].timestamp:
            rows[key] = row
    return sorted(rows.values(), key=lambda r: (r.protocol, not r.is_clean, r.attack, r.eps_255, r.dataset))


def _percent(x: float) -> float:
    return round(100 * x, 2)


def robustness_doc(rows: list[Measured], *, name: str, architecture: str, weights_hash: str) -> dict[str, Any]:
    """``robustness.json``: one RobustBench-style entry per (protocol, eps, attack), averaged over the sets."""
    groups: dict[tuple[str, str, str, float], list[Measured]] = {}
    for r in rows:
        if not r.is_clean:
            groups.setdefault((r.protocol, r.threat_model, r.attack, r.eps_255), []).append(r)
    entries = []
    for (protocol, threat, attack, _), group in groups.items():
        key = "autoattack_acc" if group[0].attack_name == "autoattack" else "robust_acc"
        entries.append({
            "name": name, "architecture": architecture,
            "dataset": group[0].dataset if len(group) == 1 else f"zero-shot mean over {len(group)} sets",
            "threat_model": threat, "eps": group[0].eps, "clean_acc": _percent(mean(r.clean for r in group)),
            key: _percent(mean(r.robust for r in group)), "reported": False, "attack": attack,
            "scoring": group[0].scoring, "protocol": protocol,
            "per_dataset": {r.dataset: {"split": r.split, "n": r.n, "clean_acc": _percent(r.clean),
                                        key: _percent(r.robust)} for r in group}})
    return {"schema": SCHEMA, "model": name, "weights_hash": weights_hash, "entries": entries}
