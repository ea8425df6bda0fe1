"""The work of one (model, dataset): decode once, build the zero-shot classifier, the clean pass, each attack.

Every rank holds its interleaved share of the dataset subset, decoded once (:func:`pmgaft.data.build_decoded`)
and reused for the clean pass and every attack and eps. Per cell it attacks the samples the scoring needs --
``worst``: the clean-correct ones (a sample is robust only if classified correctly clean and at every iterate;
PGD stops attacking it at the first misclassified iterate); ``final``: every sample, scored on its final
iterate -- and the per-sample outcomes are gathered on rank 0 in dataset order, identical for any world size
and batch size (random starts are keyed by dataset position: :func:`pmgaft.attacks.sample_seeds`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from pmgaft.attacks import ATTACKS, AttackSpec, pgd_stream, sample_seeds
from pmgaft.data import DecodedImages
from pmgaft.evaluation.distributed import Dist, gather
from pmgaft.evaluation.protocols import Protocol
from pmgaft.evaluation.results import Cell

AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
Progress = Callable[[int], None]


class Autocast(nn.Module):
    """Forward under autocast (bf16/fp16) on the input's device, logits out in fp32; attack gradients stay fp32
    (pmgaft.attacks). The grid uses it on CUDA only; the GPU check's CPU tests run it on the CPU."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=self.dtype):
            return self.model(x).float()

    def image_features(self, x: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
        """The wrapped classifier's image embedding under the same autocast (test-time defences use it)."""
        with torch.autocast(x.device.type, dtype=self.dtype):
            return self.model.image_features(x, normalize=normalize).float()


@dataclass
class Shard:
    """This rank's decoded share of one dataset subset, and the classifier that scores it."""

    classifier: Callable[[torch.Tensor], torch.Tensor]
    decoded: DecodedImages
    device: torch.device
    batch_size: int
    num_classes: int

    @property
    def positions(self) -> list[int]:
        return self.decoded.positions

    def fetch(self, rows: list[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.as_tensor(rows, dtype=torch.int64)
        x = self.decoded.images(rows.numpy(), device=self.device, pin_memory=self.device.type == "cuda")
        return x, self.decoded.labels[rows].to(self.device)


def _gathered(mine: dict[int, tuple], ranks: Dist) -> dict[int, tuple]:
    """Every rank's per-position results in one dict (ranks hold disjoint positions)."""
    merged: dict[int, tuple] = {}
    for part in gather(mine, ranks):
        merged.update(part)
    return merged


def clean_pass(shard: Shard, ranks: Dist, progress: Progress | None = None) -> dict[str, list]:
    """``{"indices", "labels", "clean_pred", "clean_correct"}`` over the whole subset, in dataset order."""
    mine: dict[int, tuple] = {}
    with torch.no_grad():
        for x, y, rows in shard.decoded.batches(shard.batch_size, device=shard.device,
                                                pin_memory=shard.device.type == "cuda"):
            pred = shard.classifier(x).argmax(1).cpu()
            for r, p, t in zip(rows.tolist(), pred.tolist(), y.cpu().tolist()):
                mine[shard.positions[r]] = (t, p)
            if progress:
                progress(len(rows))
    merged = _gathered(mine, ranks)
    order = sorted(merged)
    rows = [merged[p] for p in order]
    return {"indices": order, "labels": [t for t, _ in rows], "clean_pred": [p for _, p in rows],
            "clean_correct": [int(t == p) for t, p in rows]}


def scoring_for(spec: AttackSpec, protocol: Protocol) -> str:
    """The protocol's scoring when the attack supports it, else the attack's own (AutoAttack: worst)."""
    return protocol.scoring if protocol.scoring in spec.scorings else spec.scorings[0]


def attack_cell(shard: Shard, cell: Cell, clean: dict[str, list], protocol: Protocol, ranks: Dist, *,
                early_exit: bool, progress: Progress | None = None) -> tuple[dict[str, Any], dict[str, list]]:
    """Run ``cell`` on this rank's share; returns (the card's attack fields, the per-sample lists), both complete
    on every rank after the gather."""
    spec = ATTACKS[cell.attack]
    scoring = scoring_for(spec, protocol)
    correct = dict(zip(clean["indices"], clean["clean_correct"]))
    rows = [r for r, p in enumerate(shard.positions) if scoring == "final" or correct[p]]
    step_size = protocol.step_size / 255
    stop_early = early_exit and scoring == "worst"
    mine: dict[int, tuple[int, int, int]] = {}  # position -> (prediction scored, first fooling iterate, steps)
    if spec.is_clean:
        pass
    elif spec.streamed:
        seeds = sample_seeds(protocol.seed, [shard.positions[r] for r in rows])
        result = pgd_stream(shard.classifier, lambda ids: shard.fetch([rows[i] for i in ids]), len(rows),
                            eps=cell.eps, step_size=step_size, steps=cell.steps, seeds=seeds,
                            batch_size=shard.batch_size, early_exit=stop_early, loss=spec.objective(protocol),
                            reduction=protocol.attack_reduction, device=shard.device, progress=progress)
        for i, r in enumerate(rows):
            mine[shard.positions[r]] = (int(result.final_pred[i]), int(result.fooled_at[i]), int(result.steps_run[i]))
    else:
        for start in range(0, len(rows), shard.batch_size):
            chunk = rows[start:start + shard.batch_size]
            x, y = shard.fetch(chunk)
            x_adv, _ = spec(shard.classifier, x, y, eps=cell.eps, step_size=step_size, steps=cell.steps,
                               seed=protocol.seed)
            with torch.no_grad():
                pred = shard.classifier(x_adv).argmax(1).cpu().tolist()
            for r, p, t in zip(chunk, pred, y.cpu().tolist()):
                mine[shard.positions[r]] = (p, -1 if p == t else 0, 0)
            if progress:
                progress(len(chunk))
    info = {**spec.describe(shard.num_classes), **spec.loss_settings(protocol),
            **({"reduction": protocol.attack_reduction} if spec.streamed else {})}
    merged = _gathered(mine, ranks)
    labels = clean["labels"]
    adv_pred, fooled_at, steps_run, robust = [], [], [], []
    for p, t, c, cp in zip(clean["indices"], labels, clean["clean_correct"], clean["clean_pred"]):
        pred, fooled, cost = merged.get(p, (cp, -1 if c else 0, 0))  # not attacked: its clean outcome stands
        adv_pred.append(pred)
        fooled_at.append(fooled)
        steps_run.append(cost)
        robust.append(int(pred == t) if scoring == "final" else int(bool(c) and fooled < 0))
    fields = _attack_fields(cell, spec, protocol, scoring, stop_early, info)
    n = len(labels)
    fields.update(robust_correct=sum(robust), robust_accuracy=sum(robust) / max(n, 1),
                  cost={"samples_attacked": len(merged), "gradient_steps": sum(steps_run),
                        "gradient_steps_without_early_exit": len(merged) * cell.steps if spec.iterative else 0})
    if spec.streamed and not stop_early:  # every iterate was scored: both scorings are known
        final = sum(int(p == t) for p, t in zip(adv_pred, labels))
        worst = sum(int(bool(c) and f < 0) for c, f in zip(clean["clean_correct"], fooled_at))
        fields["robust_accuracy_by_scoring"] = {"final": final / max(n, 1), "worst": worst / max(n, 1)}
    samples = {**clean, "adv_pred": adv_pred, "fooled_at": fooled_at, "robust_correct": robust}
    return fields, samples


def _attack_fields(cell: Cell, spec: AttackSpec, protocol: Protocol, scoring: str, early_exit: bool,
                   info: dict[str, Any]) -> dict[str, Any]:
    iterative = spec.iterative
    return {"attack": {"name": cell.attack, "id": cell.attack_id, "eps": cell.eps, "eps_255": cell.eps_255,
                       "steps": cell.steps if iterative else None,
                       "step_size": protocol.step_size / 255 if iterative else None,
                       "step_size_255": protocol.step_size if iterative else None,
                       "scoring": scoring, "early_exit": early_exit, **info}}
