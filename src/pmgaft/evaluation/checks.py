"""Sanity checks on result cards: numbers that usually mean a broken attack rather than a robust model.

* robust accuracy above clean accuracy;
* robust accuracy that rises with eps (same attack and steps) or with the number of steps (same eps);
* AutoAttack far below PGD at the same eps: PGD is likely being fooled (gradient masking / obfuscation);
* weights with NaN or inf (a diverged fine-tune);
* clean accuracy at chance level (within 3 standard errors of 1/C): wrong class names or normalization, a
  broken checkpoint, or a model that never learned the task;
* a test-time defence whose adaptive robust accuracy is far below its non-adaptive one: the non-adaptive number
  overstates it.
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Any

from pmgaft.evaluation.results import defence_id

AA_GAP = 0.10  # AutoAttack this far (absolute accuracy) below PGD is flagged
DEFENCE_GAP = 0.10  # a defence's adaptive robust accuracy this far below its non-adaptive one is flagged
TOLERANCE = 1e-9


def _ok(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in cards if "error" not in c and "robust_accuracy" in c]


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _family(attack_id: str) -> str:
    return re.sub(r"\d+$", "", attack_id)


def _rises(points: list[tuple[float, float]]) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Consecutive (x, robust) pairs, in order of x, where robust accuracy goes up by more than TOLERANCE."""
    points = sorted(points)
    return [(a, b) for a, b in zip(points, points[1:]) if b[1] > a[1] + TOLERANCE]


def at_chance(clean_accuracy: float, num_classes: int, n: int) -> bool:
    """Clean accuracy within 3 standard errors of guessing (1/C) on n samples."""
    chance = 1 / max(num_classes, 1)
    return clean_accuracy <= chance + 3 * math.sqrt(chance * (1 - chance) / max(n, 1))


def _model_notes(ok: list[dict[str, Any]]) -> list[str]:
    notes, seen = [], set()
    for c in ok:
        label, dataset = c["model"]["label"], c["dataset"]["name"]
        if c["model"].get("weights_finite") is False and label not in seen:
            seen.add(label)
            notes.append(f"{label}: its weights hold NaN or inf -- a diverged fine-tune; every number of this model "
                         f"is meaningless")
        classes = c["dataset"].get("num_classes")
        if (label, dataset) not in seen and classes and at_chance(c["clean_accuracy"], classes, c.get("n", 0)):
            seen.add((label, dataset))
            notes.append(f"{label} / {dataset}: clean accuracy {_pct(c['clean_accuracy'])} is at chance level "
                         f"(1/{classes} = {_pct(1 / classes)}, n={c.get('n')}): check the class names, the "
                         f"normalization and the checkpoint")
    return notes


def find_suspicious(cards: list[dict[str, Any]]) -> list[str]:
    """One line per suspicious finding, in a stable order."""
    notes: list[str] = []
    ok = _ok(cards)
    notes += _model_notes(ok)
    for c in ok:
        if c["robust_accuracy"] > c["clean_accuracy"] + TOLERANCE:
            notes.append(f"{c['model']['label']} / {c['dataset']['name']} / {c['attack']['id']} eps="
                         f"{c['attack']['eps_255']:g}/255: robust {_pct(c['robust_accuracy'])} > clean "
                         f"{_pct(c['clean_accuracy'])}")
    by_eps: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    by_steps: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
    for c in ok:
        a = c["attack"]
        if a["name"] == "none":
            continue
        attack = a["id"] + (f" [{defence_id(c)}]" if defence_id(c) else "")  # each threat model on its own
        by_eps[(c["model"]["label"], c["dataset"]["name"], attack)].append((a["eps_255"], c["robust_accuracy"]))
        if a.get("steps"):
            by_steps[(c["model"]["label"], c["dataset"]["name"], a["name"] + attack[len(a["id"]):],
                      a["eps_255"])].append((a["steps"], c["robust_accuracy"]))
    for (model, dataset, attack), points in sorted(by_eps.items()):
        for (e0, r0), (e1, r1) in _rises(points):
            notes.append(f"{model} / {dataset} / {attack}: robust accuracy rises with eps "
                         f"({_pct(r0)} at {e0:g}/255 -> {_pct(r1)} at {e1:g}/255)")
    for (model, dataset, attack, eps), points in sorted(by_steps.items()):
        for (s0, r0), (s1, r1) in _rises(points):
            notes.append(f"{model} / {dataset} / {attack} eps={eps:g}/255: robust accuracy rises with steps "
                         f"({_pct(r0)} at {s0} -> {_pct(r1)} at {s1})")
    aa = {(c["model"]["label"], c["dataset"]["name"], c["attack"]["eps_255"]): c["robust_accuracy"]
          for c in ok if c["attack"]["name"] == "autoattack" and not defence_id(c)}
    for c in ok:
        if defence_id(c):
            continue
        key = (c["model"]["label"], c["dataset"]["name"], c["attack"]["eps_255"])
        if _family(c["attack"]["id"]) == "pgd" and key in aa and c["robust_accuracy"] - aa[key] > AA_GAP:
            notes.append(f"{key[0]} / {key[1]} eps={key[2]:g}/255: AutoAttack {_pct(aa[key])} is far below "
                         f"{c['attack']['id']} {_pct(c['robust_accuracy'])} -- possible gradient masking")
    return notes + _defence_notes(ok)


def _defence_notes(ok: list[dict[str, Any]]) -> list[str]:
    """Adaptive vs non-adaptive robust accuracy of each defended (model, dataset, attack, eps)."""
    pairs: dict[tuple, dict[bool, float]] = defaultdict(dict)
    for c in ok:
        if defence_id(c) and c["attack"]["name"] != "none":
            key = (c["model"]["label"], c["dataset"]["name"], c["attack"]["id"], c["attack"]["eps_255"],
                   c["defence"]["name"])
            pairs[key][bool(c["attack"].get("adaptive"))] = c["robust_accuracy"]
    notes = []
    for (model, dataset, attack, eps, defence), r in sorted(pairs.items()):
        if len(r) < 2:
            continue
        where = f"{model} / {dataset} / {attack} eps={eps:g}/255 under {defence}"
        if r[False] - r[True] > DEFENCE_GAP:
            notes.append(f"{where}: adaptive robust {_pct(r[True])} is far below non-adaptive {_pct(r[False])} -- "
                         f"the non-adaptive number overstates the defence; report the adaptive one")
    return notes
