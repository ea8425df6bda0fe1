"""Per-image costs from ``pmgaft bench`` figures: what ``pmgaft reproduce``'s cost estimate should multiply.

``per_image_costs(doc)`` reads a bench JSON document (or ``measure_costs(...)`` makes a quick one) and returns
seconds per image of: one training step per method, one PGD step (forward + input gradient), one clean
forward, and data loading when it was measured. A training run then costs about
``train_step[method] x images x epochs`` and an attack of k steps ``k x pgd_step`` per image.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pmgaft.errors import PmgaftError


@dataclass(frozen=True)
class PerImageCosts:
    """Seconds per image on the benchmarked device; ``source`` says where the figures came from."""

    train_step: dict[str, float]  # method -> seconds per training image (one optimizer step / batch)
    pgd_step: float  # one attack step: forward + input-only backward
    clean_forward: float
    data: float | None = None  # decode + preprocess, when measured (several worker counts: the fastest)
    source: dict[str, Any] = field(default_factory=dict)


def per_image_costs(doc: Mapping[str, Any] | str | Path) -> PerImageCosts:
    """Costs from a bench document (a dict, or the path of a ``pmgaft bench --json`` file)."""
    if not isinstance(doc, Mapping):
        try:
            doc = json.loads(Path(doc).read_text())
        except (OSError, ValueError) as err:
            raise PmgaftError(f"cannot read bench results {str(doc)!r} ({err}); write them with "
                              f"`pmgaft bench --json PATH`.") from None
    measurements = doc.get("measurements", {})
    missing = [k for k in ("pgd", "clean") if k not in measurements]
    if missing:
        raise PmgaftError(f"bench results lack {missing}: run `pmgaft bench --what train,pgd,clean --json PATH`.")
    pgd = measurements["pgd"]
    steps = pgd.get("steps") or doc.get("config", {}).get("steps")
    if not steps:
        raise PmgaftError("bench results hold a PGD measurement with 0 steps; rerun with --steps >= 1.")
    train = {m["method"]: m["step_seconds"] / m["batch_size"] for key, m in measurements.items()
             if key.startswith("train:")}
    data = measurements.get("data") or min((m for key, m in measurements.items() if key.startswith("data:")),
                                           key=lambda m: m["seconds_per_image"], default=None)
    config = doc.get("config", {})
    return PerImageCosts(train, pgd["step_seconds"] / pgd["batch_size"] / steps,
                         measurements["clean"]["step_seconds"] / measurements["clean"]["batch_size"],
                         None if data is None else data["seconds_per_image"],
                         {"model": config.get("model"), "device": doc.get("environment", {}).get("device"),
                          "batch_size": config.get("batch_size"), "precision": config.get("precision"),
                          "schema": doc.get("schema")})


def measure_costs(model: str = "ViT-B-32", *, device: str = "auto", batch_size: int = 32,
                  methods: list[str] | None = None, repeats: int = 2) -> PerImageCosts:
    """A fresh, quick measurement (one warm-up, ``repeats`` timed calls) turned into per-image costs."""
    from pmgaft.bench.runner import BenchConfig, run_bench
    from pmgaft.bench.train import TRAINABLE

    config = BenchConfig(model=model, device=device, batch_size=batch_size, methods=methods or list(TRAINABLE),
                         repeats=repeats, released=False)
    return per_image_costs(run_bench(config))
