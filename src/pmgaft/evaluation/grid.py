"""``run_grid``: models x datasets x attacks x eps -> one result card per cell, resumable, failure-tolerant.

Per (model, dataset): load the data, build the zero-shot classifier, take the seeded class-stratified subset
and run the clean pass once (cached). Per cell: attack the clean-correct images only -- a sample is robust
when it is classified correctly both clean and attacked (the attacker may always leave the image unchanged),
so robust accuracy <= clean accuracy by construction, as in AutoAttack. A failing model, dataset or cell is
written as an error card and the grid goes on; ``KeyboardInterrupt`` stops it, finished cells stay on disk.
"""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from pmgaft.attacks import ATTACKS, plan_autoattack
from pmgaft.data import load_dataset, stratified_subset
from pmgaft.errors import PmgaftError
from pmgaft.evaluation.models import ModelSpec
from pmgaft.evaluation.protocols import Protocol
from pmgaft.evaluation.results import (CLEAN_SCHEMA, SCHEMA, Cell, clean_path, code_version, finished, fingerprint,
                                       read_json, run_info, samples_path, write_card)
from pmgaft.models import ZeroShotClassifier
from pmgaft.prompts import get_prompts
from pmgaft.utils import resolve_device

PRECISIONS = ("fp32", "bf16")
Log = Callable[[str], None]


@dataclass
class GridConfig:
    """Everything but the models. ``protocol`` is already resolved (CLI overrides applied)."""

    protocol: Protocol
    out: Path
    data_root: Path = Path("data")
    batch_size: int = 64
    device: str = "auto"
    precision: str = "fp32"
    skip_existing: bool = False
    workers: int = 0
    download: bool = False
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> dict[str, Any]:
        """The configuration written into every card (what the numbers depend on)."""
        return {"protocol": self.protocol.to_dict(), "batch_size": self.batch_size, "precision": self.precision,
                **self.extra}


def cells_for(model: str, dataset: str, p: Protocol) -> list[Cell]:
    """The cells of one (model, dataset): "none" once; pgd/cw per (steps, eps); autoattack per eps."""
    cells: list[Cell] = []
    for attack in p.attacks:
        if attack == "none":
            cells.append(Cell(model, dataset, attack, 0.0, 0))
        elif attack in ("pgd", "cw"):
            cells += [Cell(model, dataset, attack, e, s) for s in p.steps for e in p.eps]
        else:
            cells += [Cell(model, dataset, attack, e, 0) for e in p.eps]
    return cells


class _Autocast(nn.Module):
    """bf16 autocast forward (CUDA only), fp32 logits out; attack gradients stay fp32 (see pmgaft.attacks)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return self.model(x).float()


@dataclass
class _Prepared:
    """One (model, dataset) ready to attack: classifier, subset and its clean pass."""

    classifier: Callable[[torch.Tensor], torch.Tensor]
    dataset: Any
    info: dict[str, Any]
    prompts: dict[str, Any]
    clean: dict[str, list]  # indices, labels, clean_pred, clean_correct


def _cell_key(cfg: GridConfig, spec_id: dict[str, Any], cell: Cell) -> dict[str, Any]:
    p = cfg.protocol
    key = {"model": spec_id, "dataset": cell.dataset, "split": p.split, "n": p.samples_for(cell.dataset),
           "seed": p.seed, "prompts": p.prompts, "transform": p.transform, "normalization": p.normalization,
           "logit_scale": p.logit_scale, "precision": cfg.precision, "attack": cell.attack, "eps": cell.eps_255}
    if cell.attack in ("pgd", "cw"):
        key.update(steps=cell.steps, step_size=p.step_size, batch_size=cfg.batch_size)  # batch: random starts
    return key


def _loader(dataset: Any, positions: list[int], cfg: GridConfig) -> DataLoader:
    return DataLoader(Subset(dataset, positions), batch_size=cfg.batch_size, shuffle=False,
                      num_workers=cfg.workers)


def _prepare(loaded: Any, label: str, dataset_name: str, cfg: GridConfig, device: torch.device, bar: tqdm) -> _Prepared:
    p = cfg.protocol
    ds = load_dataset(dataset_name, cfg.data_root, p.split, download=cfg.download, transform=p.transform)
    prompts = get_prompts(dataset_name, p.prompts, classnames=ds.classes)
    clf = ZeroShotClassifier.build(loaded.model, loaded.tokenizer, prompts.classnames, prompts.templates,
                                   image_size=loaded.image_size, normalization=p.normalization,
                                   logit_scale=p.logit_scale).to(device).eval().requires_grad_(False)
    model = _Autocast(clf) if cfg.precision == "bf16" else clf
    n = p.samples_for(dataset_name)
    indices = stratified_subset(ds, n, seed=p.seed) if n is not None else list(range(len(ds)))
    info = {"name": dataset_name, "split": p.split, "n": len(indices), "n_total": len(ds),
            "num_classes": len(ds.classes), "subset_seed": p.seed if n is not None else None,
            "transform": p.transform, "location": str(getattr(ds, "location", "") or "")}
    clean_key = fingerprint([loaded.weights_hash, info, prompts.to_dict(), p.normalization, p.logit_scale,
                             cfg.precision])
    cpath = clean_path(cfg.out, label, dataset_name)
    cached = read_json(cpath) if cfg.skip_existing else None
    if cached and cached.get("fingerprint") == clean_key and samples_path(cpath).is_file():
        clean = read_json(samples_path(cpath))
        bar.update(len(indices))
    else:
        clean = {"indices": indices, "labels": [], "clean_pred": [], "clean_correct": []}
        with torch.no_grad():
            for x, y in _loader(ds, indices, cfg):
                pred = model(x.to(device)).argmax(1).cpu()
                clean["labels"] += y.tolist()
                clean["clean_pred"] += pred.tolist()
                clean["clean_correct"] += (pred == y).int().tolist()
                bar.update(len(y))
        acc = sum(clean["clean_correct"]) / max(len(indices), 1)
        write_card(cpath, {"schema": CLEAN_SCHEMA, "fingerprint": clean_key, "clean_accuracy": acc,
                           "dataset": info}, clean)
    return _Prepared(model, ds, info, prompts.to_dict(), clean)


def _attack_cell(prep: _Prepared, cell: Cell, cfg: GridConfig, device: torch.device, bar: tqdm
                 ) -> tuple[dict[str, Any], dict[str, list]]:
    """Attack the clean-correct samples; returns the card's attack/accuracy fields and the per-sample lists."""
    p, clean = cfg.protocol, prep.clean
    attack = ATTACKS[cell.attack]
    positions = [i for i, ok in enumerate(clean["clean_correct"]) if ok]
    adv_pred = list(clean["clean_pred"])
    info: dict[str, Any] = {}
    if cell.attack == "autoattack":
        ran, n_target = plan_autoattack(prep.info["num_classes"])
        info = {"attacks": ran, "n_target_classes": n_target, "version": "standard", "norm": "Linf"}
    step_size = p.step_size / 255
    for b, (x, y) in enumerate(_loader(prep.dataset, [clean["indices"][i] for i in positions], cfg)):
        x, y = x.to(device), y.to(device)
        x_adv, batch_info = attack(prep.classifier, x, y, eps=cell.eps, step_size=step_size, steps=cell.steps,
                                   seed=p.seed + b)
        info.update(batch_info)
        with torch.no_grad():
            pred = prep.classifier(x_adv).argmax(1).cpu().tolist()
        for j, k in enumerate(positions[b * cfg.batch_size:(b + 1) * cfg.batch_size]):
            adv_pred[k] = pred[j]
        bar.update(len(y))
    robust = [int(c and a == t) for c, a, t in zip(clean["clean_correct"], adv_pred, clean["labels"])]
    iterative = cell.attack in ("pgd", "cw")
    fields = {
        "attack": {"name": cell.attack, "id": cell.attack_id, "eps": cell.eps, "eps_255": cell.eps_255,
                   "steps": cell.steps if iterative else None, "step_size": step_size if iterative else None,
                   "step_size_255": p.step_size if iterative else None, **info},
        "robust_correct": sum(robust), "robust_accuracy": sum(robust) / max(len(robust), 1),
    }
    return fields, {**clean, "adv_pred": adv_pred, "robust_correct": robust}


def _base_card(cell: Cell, cfg: GridConfig, model_info: dict[str, Any], fp: str | None) -> dict[str, Any]:
    return {"schema": SCHEMA, "fingerprint": fp, "model": model_info,
            "dataset": {"name": cell.dataset, "split": cfg.protocol.split},
            "attack": {"name": cell.attack, "id": cell.attack_id, "eps": cell.eps, "eps_255": cell.eps_255,
                       "steps": cell.steps if cell.attack in ("pgd", "cw") else None},
            "seed": cfg.protocol.seed, "config": cfg.resolved(), "version": code_version()}


def _errors(cells: list[Cell], cfg: GridConfig, model_info: dict[str, Any], fps: dict[Cell, str] | None,
            stage: str, err: BaseException, t0: float, device: str, log: Log) -> list[dict[str, Any]]:
    """Write an error card for each of ``cells`` (all failed for the same reason) and say so once."""
    msg = str(err) if isinstance(err, PmgaftError) else f"{type(err).__name__}: {err}"
    cards = []
    for cell in cells:
        card = _base_card(cell, cfg, model_info, fps.get(cell) if fps else None)
        card.update(error=msg, error_type=type(err).__name__, stage=stage, run=run_info(device, t0, time.time()))
        if not isinstance(err, PmgaftError):
            card["traceback"] = traceback.format_exception(type(err), err, err.__traceback__)[-6:]
        write_card(cell.path(cfg.out), card)
        cards.append({**card, "_path": str(cell.path(cfg.out))})
    where = f"{cells[0].model}" + (f" / {cells[0].dataset}" if stage != "model" else "")
    log(f"ERROR {where} ({stage}; {len(cells)} cell(s): {', '.join(c.stem() for c in cells[:6])}"
        f"{', ...' if len(cells) > 6 else ''}): {msg}")
    return cards


def grid_shard() -> tuple[int, int, int]:
    """(rank, world size, local rank) when launched by ``torchrun``; (0, 1, 0) otherwise."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def run_grid(models: list[ModelSpec], cfg: GridConfig, *, log: Log = print) -> list[dict[str, Any]]:
    """Evaluate every cell; returns the cards written (and, with ``skip_existing``, the ones reused).

    Under ``torchrun --nproc_per_node N -m pmgaft eval ...`` the (model, dataset) pairs are dealt round-robin to
    the N processes, each on its own GPU (``cuda:LOCAL_RANK``); every cell is its own file, so no gathering is
    needed: run ``pmgaft report`` on the results folder afterwards.
    """
    if cfg.precision not in PRECISIONS:
        raise PmgaftError(f"unknown precision {cfg.precision!r}; use one of {PRECISIONS}.")
    device = resolve_device(cfg.device)
    rank, world, local_rank = grid_shard()
    if world > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    if cfg.precision == "bf16" and device.type != "cuda":
        raise PmgaftError("--precision bf16 (autocast) is for CUDA only; on the CPU use --precision fp32.")
    pairs = [(spec.label, d) for spec in models for d in cfg.protocol.datasets]
    mine = {pair for i, pair in enumerate(pairs) if i % world == rank}
    cards: list[dict[str, Any]] = []
    for spec in models:
        t0 = time.time()
        model_info: dict[str, Any] = {"label": spec.label, "name": spec.name, "pretrained": spec.pretrained}
        cells = [c for d in cfg.protocol.datasets if (spec.label, d) in mine
                 for c in cells_for(spec.label, d, cfg.protocol)]
        if not cells:
            continue
        try:
            spec_id = spec.identity()
            model_info.update(name=spec.arch, sha256=spec.file_sha256, **spec.method())
        except PmgaftError as err:
            cards += _errors(cells, cfg, model_info, None, "model", err, t0, str(device), log)
            continue
        fps = {c: fingerprint(_cell_key(cfg, spec_id, c)) for c in cells}
        todo = [c for c in cells if not (cfg.skip_existing and finished(c.path(cfg.out), fps[c]))]
        for c in cells:
            if c not in todo:
                log(f"skip {c.model} / {c.dataset} / {c.stem()} (finished: {c.path(cfg.out)})")
                cards.append({**(read_json(c.path(cfg.out)) or {}), "_path": str(c.path(cfg.out)), "_skipped": True})
        if not todo:
            continue
        try:
            loaded = spec.load(device=str(device), seed=cfg.protocol.seed)
            model_info["weights_hash"] = loaded.weights_hash
        except Exception as err:  # noqa: BLE001  (any load failure is this model's cells' error)
            cards += _errors(todo, cfg, model_info, fps, "model", err, t0, str(device), log)
            continue
        for dataset in cfg.protocol.datasets:
            cards += _run_dataset(loaded, model_info, [c for c in todo if c.dataset == dataset], fps, cfg, device,
                                  log)
    return cards


def _run_dataset(loaded: Any, model_info: dict[str, Any], todo: list[Cell], fps: dict[Cell, str],
                 cfg: GridConfig, device: torch.device, log: Log) -> list[dict[str, Any]]:
    if not todo:
        return []
    label, dataset = todo[0].model, todo[0].dataset
    bar = tqdm(desc=f"{label} / {dataset}", unit="img", disable=not cfg.progress, leave=False)
    t0 = time.time()
    try:
        prep = _prepare(loaded, label, dataset, cfg, device, bar)
    except Exception as err:  # noqa: BLE001  (missing/unreadable data, prompts that do not fit, ...)
        bar.close()
        return _errors(todo, cfg, model_info, fps, "dataset", err, t0, str(device), log)
    n_attacked = sum(prep.clean["clean_correct"])
    bar.total = prep.info["n"] + n_attacked * sum(c.attack != "none" for c in todo)
    bar.refresh()
    cards = []
    for cell in todo:
        t1 = time.time()
        try:
            fields, samples = _attack_cell(prep, cell, cfg, device, bar)
        except Exception as err:  # noqa: BLE001  (recorded; the grid goes on)
            cards += _errors([cell], cfg, model_info, fps, "attack", err, t1, str(device), log)
            continue
        card = _base_card(cell, cfg, model_info, fps[cell])
        clean_ok = sum(prep.clean["clean_correct"])
        card.update(dataset=prep.info, prompts=prep.prompts, **fields, n=prep.info["n"],
                    clean_correct=clean_ok, clean_accuracy=clean_ok / max(prep.info["n"], 1),
                    samples=samples_path(cell.path(cfg.out)).name, run=run_info(str(device), t1, time.time()))
        card = {k: card[k] for k in _ORDER if k in card}
        write_card(cell.path(cfg.out), card, samples)
        log(f"{cell.model} / {cell.dataset} / {cell.stem()}: clean {100 * card['clean_accuracy']:.2f}%  "
            f"robust {100 * card['robust_accuracy']:.2f}%  (n={card['n']})")
        cards.append({**card, "_path": str(cell.path(cfg.out))})
    bar.close()
    return cards


_ORDER = ("schema", "model", "dataset", "prompts", "attack", "n", "clean_correct", "clean_accuracy",
          "robust_correct", "robust_accuracy", "seed", "samples", "config", "version", "fingerprint", "run")
