"""PNG plots from result cards (matplotlib, Agg backend: no display needed).

* ``bars_<attack>_eps<k>.png``: robust accuracy per dataset, one bar per model;
* ``eps_curve_<attack>.png``: mean robust accuracy over datasets vs eps, one line per model;
* ``clean_vs_robust_<attack>_eps<k>.png``: one point per (model, dataset).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pmgaft.evaluation.tables import Table  # noqa: E402


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _stem(t: Table) -> str:
    return f"{t.key[0]}_eps{t.key[1]:g}"


def bars(t: Table, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(t.datasets) * max(1, len(t.models))), 4))
    width = 0.8 / max(len(t.models), 1)
    for j, model in enumerate(t.models):
        values = [v[0] if isinstance(v := t.value(d, model), tuple) else 0.0 for d in t.datasets]
        ax.bar([i + j * width for i in range(len(t.datasets))], values, width, label=model)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(t.datasets))], t.datasets, rotation=45, ha="right")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_title(t.title)
    ax.legend(fontsize="small")
    return _save(fig, out / f"bars_{_stem(t)}.png")


def eps_curves(tables: list[Table], out: Path) -> list[Path]:
    """Per attack with more than one eps: mean robust accuracy (datasets common to all eps) vs eps."""
    by_attack: dict[str, list[Table]] = defaultdict(list)
    for t in tables:
        if t.key[0] != "none":
            by_attack[t.key[0]].append(t)
    paths = []
    for attack, ts in by_attack.items():
        if len(ts) < 2:
            continue
        ts.sort(key=lambda t: t.key[1])
        fig, ax = plt.subplots(figsize=(5, 4))
        for model in dict.fromkeys(m for t in ts for m in t.models):
            common = set.intersection(*({d for d in t.datasets if isinstance(t.value(d, model), tuple)}
                                        for t in ts))
            if not common:
                continue
            ys = [sum(t.value(d, model)[0] for d in common) / len(common) for t in ts]
            ax.plot([t.key[1] for t in ts], ys, marker="o", label=f"{model} ({len(common)} sets)")
        ax.set_xlabel("eps (1/255)")
        ax.set_ylabel("mean robust accuracy (%)")
        ax.set_title(f"{attack}: robust accuracy vs eps")
        ax.legend(fontsize="small")
        paths.append(_save(fig, out / f"eps_curve_{attack}.png"))
    return paths


def scatter(t: Table, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    for model in t.models:
        pts = [v for d in t.datasets if isinstance(v := t.value(d, model), tuple)]
        ax.scatter([c for _, c in pts], [r for r, _ in pts], label=model)
    ax.plot([0, 100], [0, 100], color="gray", lw=0.8, ls="--")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_title(t.title)
    ax.legend(fontsize="small")
    return _save(fig, out / f"clean_vs_robust_{_stem(t)}.png")


def make_plots(tables: list[Table], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in tables:
        if t.key[0] != "none":
            paths += [bars(t, out), scatter(t, out)]
    return paths + eps_curves(tables, out)
