"""``run_grid``: models x datasets x attacks x eps -> one result card per cell, resumable, failure-tolerant.

Order of work: every check that needs no model or data first (:mod:`pmgaft.evaluation.preflight`: a typo costs
nothing and leaves no card); then per model, per dataset: decode this rank's share once, build the zero-shot
classifier (the protocol's normalization and logit scale, or the model's own), run the clean pass once (cached
in ``clean.json``), then every cell (:mod:`pmgaft.evaluation.engine`). A failing model, dataset or cell is
written as an error card and the grid goes on; ``KeyboardInterrupt`` stops it, finished cells stay on disk, and
a card appears only complete (its per-sample file first, then the card, each written atomically).

Under ``torchrun`` every cell's samples are split across the processes and rank 0 writes exactly what one
process writes (:mod:`pmgaft.evaluation.distributed`). With a test-time defence (``GridConfig.defence``) each
dataset also gets the defended cells of :mod:`pmgaft.evaluation.defended`, after the undefended ones.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from pmgaft.attacks import ATTACKS
from pmgaft.data import build_decoded, describe_transform, load_dataset, stratified_subset
from pmgaft.data import DATASETS as DATA_SPECS
from pmgaft.data.hub import hub_revision
from pmgaft.data.sources import DEFAULT_SOURCE, HUB_PREFIX, source_id
from pmgaft.errors import PmgaftError
from pmgaft.evaluation.distributed import (DEFAULT_TIMEOUT_S, Dist, barrier, broadcast, gather,
                                          init_distributed, shutdown)
from pmgaft.evaluation.defended import (DefenceConfig, DefendedShard, Reference, References, defended_cell,
                                        reference_encoder, reference_identity)
from pmgaft.evaluation.engine import AUTOCAST, Autocast, Shard, attack_cell, clean_pass, scoring_for
from pmgaft.evaluation.models import ModelSpec
from pmgaft.evaluation.preflight import preflight
from pmgaft.evaluation.protocols import Protocol
from pmgaft.evaluation.results import (CLEAN_SCHEMA, SCHEMA, Cell, clean_path, code_version, finished, fingerprint,
                                       read_json, run_info, samples_path, write_card)
from pmgaft.models import ModelRecord, ZeroShotClassifier, all_finite
from pmgaft.prompts import get_prompts
from pmgaft.utils import resolve_device

PRECISIONS = tuple(AUTOCAST)
MAX_LISTED_CORRUPT = 20
Log = Callable[[str], None]


@dataclass
class GridConfig:
    """Everything but the models. ``protocol`` is already resolved (CLI overrides applied)."""

    protocol: Protocol
    out: Path
    data_root: Path = Path("data")
    batch_size: int = 256
    device: str = "auto"
    precision: str = "fp32"
    skip_existing: bool = False
    workers: int = 0
    download: bool = False
    progress: bool = True
    early_exit: bool = True  # worst-case scoring: stop attacking a sample at its first misclassified iterate
    skip_corrupt: bool = False
    allow_missing: bool = False
    trust_checkpoint: bool = False
    decoded_storage: str = "auto"  # decode-once cache: memory when it fits, else a memory-mapped file
    source: str = DEFAULT_SOURCE  # which copy of each registered set: torchvision, hub (Hugging Face cache), auto
    compile: str | None = None  # torch.compile backend for the classifier ("inductor"), None = eager
    dist_timeout_s: float = DEFAULT_TIMEOUT_S
    defence: DefenceConfig | None = None  # a test-time defence: adds its defended cells (both threat models)
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> dict[str, Any]:
        """The configuration written into every card (what the numbers depend on)."""
        return {"protocol": self.protocol.to_dict(), "precision": self.precision,
                "skip_corrupt": self.skip_corrupt, "source": self.source, **self.extra}


def cells_for(model: str, dataset: str, p: Protocol, defence: DefenceConfig | None = None) -> list[Cell]:
    """The cells of one (model, dataset): a clean-only attack once; iterative ones per (steps, eps); else per eps.
    With a ``defence``, then: the defended clean cell, and each attack cell it can wrap non-adaptive and adaptive
    (preflight refuses the others)."""
    cells: list[Cell] = []
    for attack in p.attacks:
        spec = ATTACKS[attack]
        if spec.is_clean:
            cells.append(Cell(model, dataset, attack, 0.0, 0))
        elif spec.iterative:
            cells += [Cell(model, dataset, attack, e, s) for s in p.steps for e in p.eps]
        else:
            cells += [Cell(model, dataset, attack, e, 0) for e in p.eps]
    if defence is not None:
        attacked = [c for c in cells if not ATTACKS[c.attack].is_clean and defence.spec.can_wrap(ATTACKS[c.attack])]
        cells.append(Cell(model, dataset, "none", 0.0, 0, defence.name))
        cells += [replace(c, defence=defence.name, adaptive=adaptive) for c in attacked for adaptive in (False, True)]
    return cells


# --- what a model is evaluated with ------------------------------------------------------------------------

def logits_setup(protocol: Protocol, record: ModelRecord) -> dict[str, Any]:
    """Normalization and logit scale: the protocol's when it fixes them for every model, else the model's own."""
    def pick(fixed: Any, own: Any, default: Any) -> tuple[Any, str]:
        if fixed is not None:
            return fixed, f"protocol {protocol.name}"
        return (own, "recorded in the checkpoint") if own is not None else (default, "default (not recorded)")

    norm, norm_source = pick(protocol.normalization, record.normalization, "clip")
    scale, scale_source = pick(protocol.logit_scale, record.logit_scale, "model")
    return {"normalization": norm, "normalization_source": norm_source, "logit_scale": scale,
            "logit_scale_source": scale_source}


def _image_size(arch: str) -> int:
    from pmgaft.models import model_config

    size = (model_config(arch) or {}).get("vision_cfg", {}).get("image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def _cell_key(cfg: GridConfig, spec: ModelSpec, setup: dict[str, Any], cell: Cell, source: str,
              revision: str | None = None, defence: dict[str, Any] | None = None) -> dict[str, Any]:
    p, attack = cfg.protocol, ATTACKS[cell.attack]
    key = {"model": spec.identity(), "dataset": cell.dataset, "split": p.split_for(cell.dataset),
           "n": p.samples_for(cell.dataset), "seed": p.seed, "prompts": p.prompts, "transform": p.transform,
           "image_size": _image_size(spec.arch), "normalization": setup["normalization"],
           "logit_scale": setup["logit_scale"], "precision": cfg.precision, "skip_corrupt": cfg.skip_corrupt,
           "attack": cell.attack, "eps": cell.eps_255, "scoring": scoring_for(attack, p)}
    if attack.iterative:
        key.update(steps=cell.steps, step_size=p.step_size, reduction=p.attack_reduction)
    key.update(attack.loss_settings(p))  # e.g. the CW margin's kappa
    if p.resize_antialias:
        key.update(resize_antialias=True)
    if source.startswith(HUB_PREFIX):  # other cells keep the fingerprints they had before hub copies existed
        key.update(source=source, benchmark_splits=p.benchmark_splits, revision=revision)
    if cell.defence:  # the adaptive attacks' settings and draws matter to the adaptive cells only
        mine = defence if cell.adaptive or defence is None else {k: v for k, v in defence.items()
                                                                   if k not in ("eot_samples", "adaptive")}
        key.update(defence=mine, adaptive=cell.adaptive)
    return key


# --- cards ---------------------------------------------------------------------------------------------------

_ORDER = ("schema", "model", "dataset", "prompts", "attack", "defence", "n", "clean_correct", "clean_accuracy",
          "robust_correct", "robust_accuracy", "robust_accuracy_by_scoring", "robust_accuracy_by_attack", "cost",
          "seed", "samples", "config", "version", "fingerprint", "run")


def _base_card(cell: Cell, cfg: GridConfig, model_info: dict[str, Any], fp: str | None,
               source: str) -> dict[str, Any]:
    card = {"schema": SCHEMA, "fingerprint": fp, "model": model_info,
            "dataset": {"name": cell.dataset, "split": cfg.protocol.split_for(cell.dataset), "source": source},
            "attack": {"name": cell.attack, "id": cell.attack_id, "eps": cell.eps, "eps_255": cell.eps_255,
                       "steps": cell.steps if cell.iterative else None},
            "seed": cfg.protocol.seed, "config": cfg.resolved(), "version": code_version()}
    if cell.defence and cfg.defence is not None:
        card["attack"]["adaptive"] = cell.adaptive
        card["defence"] = cfg.defence.describe()
    return card


class _Writer:
    """Writes cards (rank 0 only) and tells the log."""

    def __init__(self, cfg: GridConfig, ranks: Dist, device: torch.device, log: Log,
                 sources: dict[str, str]) -> None:
        self.cfg, self.ranks, self.device, self.log = cfg, ranks, device, log
        self.sources = sources  # dataset -> the source id its cards record (see source_id)
        self.revisions: dict[str, str] = {}  # dataset -> the commit of the hub copy read (see _fetch_data)

    def run(self, t0: float) -> dict[str, Any]:
        return {**run_info(str(self.device), t0, time.time()), "world_size": self.ranks.world}

    def errors(self, cells: list[Cell], model_info: dict[str, Any], fps: dict[Cell, str] | None, stage: str,
               err: BaseException, t0: float) -> list[dict[str, Any]]:
        """An error card for each of ``cells`` (all failed for the same reason), said once in the log."""
        msg = str(err) if isinstance(err, PmgaftError) else f"{type(err).__name__}: {err}"
        cards = []
        for cell in cells:
            card = _base_card(cell, self.cfg, model_info, fps.get(cell) if fps else None,
                              self.sources[cell.dataset])
            card.update(error=msg, error_type=type(err).__name__, stage=stage, run=self.run(t0))
            if not isinstance(err, PmgaftError):
                card["traceback"] = traceback.format_exception(type(err), err, err.__traceback__)[-6:]
            if self.ranks.main:
                write_card(cell.path(self.cfg.out), card)
            cards.append({**card, "_path": str(cell.path(self.cfg.out))})
        if self.ranks.main:
            where = f"{cells[0].model}" + (f" / {cells[0].dataset}" if stage != "model" else "")
            self.log(f"ERROR {where} ({stage}; {len(cells)} cell(s): {', '.join(c.stem() for c in cells[:6])}"
                     f"{', ...' if len(cells) > 6 else ''}): {msg}")
        return cards

    def card(self, cell: Cell, card: dict[str, Any], samples: dict[str, list]) -> dict[str, Any]:
        card = {k: card[k] for k in _ORDER if k in card}
        if self.ranks.main:
            write_card(cell.path(self.cfg.out), card, samples)
            self.log(f"{cell.model} / {cell.dataset} / {cell.stem()}: clean {100 * card['clean_accuracy']:.2f}%  "
                     f"robust {100 * card['robust_accuracy']:.2f}%  (n={card['n']}, {card['attack']['scoring']})")
        return {**card, "_path": str(cell.path(self.cfg.out))}


def _agree(ranks: Dist, err: BaseException | None) -> BaseException | None:
    """Every rank's outcome of a step: the first error any rank hit (so all ranks take the same path)."""
    if not ranks.enabled:
        return err
    outcomes = gather(None if err is None else (type(err).__name__, str(err), isinstance(err, PmgaftError)), ranks)
    first = next((o for o in outcomes if o is not None), None)
    if first is None:
        return None
    if err is not None:
        return err
    return PmgaftError(first[1]) if first[2] else RuntimeError(f"{first[0]} on another rank: {first[1]}")


# --- the grid ------------------------------------------------------------------------------------------------

def _fetch_data(cfg: GridConfig, chosen: dict[str, str], ranks: Dist, missing: dict[str, str]) -> dict[str, str]:
    """Rank 0 fetches the data every rank then reads, once, before any model: with ``--download`` the
    torchvision sets it lacks (the other ranks wait for it: no rank reads a half-downloaded folder), and the
    commit of each hub copy (downloaded with ``--download``; every rank then reads that cached snapshot), which is
    part of its cells' fingerprints, so cards of a copy whose revision has moved are not reused. Returns the hub
    commits; a set that cannot be fetched joins ``missing`` (error cards)."""
    found: dict[str, str] = {}
    failed: dict[str, str] = {}
    if ranks.main:
        p = cfg.protocol
        for name, source in chosen.items():
            try:
                if source == "hub":
                    found[name] = hub_revision(name, p.split_for(name), download=cfg.download,
                                               benchmark_split=p.benchmark_splits)
                elif cfg.download and name in DATA_SPECS and DATA_SPECS[name].locate(cfg.data_root,
                                                                                      p.split_for(name)) is None:
                    load_dataset(name, cfg.data_root, p.split_for(name), download=True)
            except Exception as err:  # noqa: BLE001  (a failed download is that set's error cards)
                failed[name] = str(err) if isinstance(err, PmgaftError) else f"download failed: {err}"
    found, failed = broadcast((found, failed), ranks)
    missing.update(failed)
    return found


def run_grid(models: list[ModelSpec], cfg: GridConfig, *, log: Log = print) -> list[dict[str, Any]]:
    """Evaluate every cell; returns the cards written (and, with ``skip_existing``, the ones reused)."""
    if cfg.precision not in PRECISIONS:
        raise PmgaftError(f"unknown precision {cfg.precision!r}; use one of {PRECISIONS}.")
    if cfg.batch_size < 1:
        raise PmgaftError(f"batch size must be >= 1, got {cfg.batch_size}.")
    device = resolve_device(cfg.device)
    if AUTOCAST[cfg.precision] is not None and device.type != "cuda":
        raise PmgaftError(f"--precision {cfg.precision} (autocast) is for CUDA only; on the CPU use fp32.")
    missing, chosen = preflight(models, cfg.protocol, out=cfg.out, data_root=cfg.data_root, download=cfg.download,
                                trust_checkpoint=cfg.trust_checkpoint, allow_missing=cfg.allow_missing,
                                source=cfg.source, defence=cfg.defence)
    looked_for = "hub" if cfg.source == "hub" else DEFAULT_SOURCE  # what a missing set's error cards record
    sources = {d: source_id(d, chosen.get(d, looked_for), d in DATA_SPECS and DATA_SPECS[d].offline)
               for d in cfg.protocol.datasets}
    ranks, device = init_distributed(device, cfg.dist_timeout_s)
    writer = _Writer(cfg, ranks, device, log, sources)
    references = References()
    cards: list[dict[str, Any]] = []
    try:
        writer.revisions = _fetch_data(cfg, chosen, ranks, missing)
        for spec in models:
            cards += _run_model(spec, cfg, ranks, writer, missing, device, references)
        barrier(ranks)
    finally:
        shutdown(ranks)
    return cards


def _run_model(spec: ModelSpec, cfg: GridConfig, ranks: Dist, writer: _Writer, missing: dict[str, str],
               device: torch.device, references: References) -> list[dict[str, Any]]:
    t0 = time.time()
    model_info: dict[str, Any] = {"label": spec.label, "name": spec.name, "pretrained": spec.pretrained}
    cells = [c for d in cfg.protocol.datasets for c in cells_for(spec.label, d, cfg.protocol, cfg.defence)]
    setup = logits_setup(cfg.protocol, spec.record)
    model_info.update(name=spec.arch, sha256=spec.file_sha256, text_pretrained=spec.text_pretrained,
                      **spec.method(), **setup)
    defence = None if cfg.defence is None else {**cfg.defence.key(), "reference": reference_identity(spec, cfg.defence)}
    fps = {c: fingerprint(_cell_key(cfg, spec, setup, c, writer.sources[c.dataset], writer.revisions.get(c.dataset),
                                    defence)) for c in cells}
    done = [c for c in cells if cfg.skip_existing and finished(c.path(cfg.out), fps[c])] if ranks.main else []
    done = set(broadcast(done, ranks))  # rank 0 decides what is finished; every rank follows
    cards: list[dict[str, Any]] = []
    for c in cells:
        if c in done:
            if ranks.main:
                writer.log(f"skip {c.model} / {c.dataset} / {c.stem()} (finished: {c.path(cfg.out)})")
            cards.append({**(read_json(c.path(cfg.out)) or {}), "_path": str(c.path(cfg.out)), "_skipped": True})
    todo = [c for c in cells if c not in done]
    if not todo:
        return cards
    loaded, reference, err = None, None, None
    try:
        loaded = spec.load(device=str(device), seed=cfg.protocol.seed)
    except Exception as e:  # noqa: BLE001  (any load failure is this model's cells' error)
        err = e
    err = _agree(ranks, err)
    if err is not None:
        return cards + writer.errors(todo, model_info, fps, "model", err, t0)
    model_info.update(weights_hash=loaded.weights_hash, quick_gelu=loaded.quick_gelu,
                      activation_source=loaded.activation_source, weights_finite=all_finite(loaded.model))
    if cfg.defence is not None and any(c.defence for c in todo):
        reference, todo, failed = _set_up_defence(
            lambda: references.get(spec, cfg.defence, loaded.weights_hash, str(device), cfg.protocol.seed),
            todo, writer, model_info, fps, ranks, t0)
        cards += failed
    for dataset in cfg.protocol.datasets:
        mine = [c for c in todo if c.dataset == dataset]
        if not mine:
            continue
        if dataset in missing:
            cards += writer.errors(mine, model_info, fps, "dataset", PmgaftError(missing[dataset]), time.time())
            continue
        cards += _run_dataset(loaded, model_info, setup, mine, fps, cfg, ranks, writer, device, reference)
    return cards


@dataclass
class _Prepared:
    shard: Shard
    info: dict[str, Any]
    prompts: dict[str, Any]
    clean: dict[str, list]
    timing: dict[str, float]  # seconds spent decoding (0 when cached) and in the clean pass, on this rank
    classifier: ZeroShotClassifier  # the zero-shot classifier itself (the shard's may be wrapped)


def _prepare(loaded: Any, label: str, dataset_name: str, setup: dict[str, Any], cfg: GridConfig, ranks: Dist,
             device: torch.device, bar: tqdm, source: str) -> _Prepared:
    p = cfg.protocol
    split = p.split_for(dataset_name)
    from_hub = source.startswith(HUB_PREFIX)
    ds = load_dataset(dataset_name, cfg.data_root, split,  # downloads happened in _fetch_data
                      transform=p.transform, image_size=loaded.image_size,
                      source="hub" if from_hub else DEFAULT_SOURCE,
                      skip_corrupt=cfg.skip_corrupt, benchmark_split=p.benchmark_splits)
    lost = ds.hub.lost.to_dict() if ds.hub is not None else {"n_skipped": 0, "skipped": []}
    prompts = get_prompts(dataset_name, p.prompts, classnames=ds.classes,
                          shipped=ds.hub.text if ds.hub is not None else None)
    n_raw = len(ds)
    if prompts.label_map is not None:  # the protocol scores merged / fewer classes (e.g. TTC's 999-class ImageNet)
        ds = ds.relabel(prompts.label_map, prompts.classnames)
    clf = ZeroShotClassifier.build(loaded.model, loaded.tokenizer, prompts.classnames, prompts.templates,
                                   image_size=loaded.image_size, normalization=setup["normalization"],
                                   logit_scale=setup["logit_scale"], antialias=p.resize_antialias,
                                   ).to(device).eval().requires_grad_(False)
    dtype = AUTOCAST[cfg.precision]
    model = Autocast(clf, dtype) if dtype is not None else clf
    if cfg.compile:  # dynamic shapes: early exit and refill change the batch size from step to step
        model = torch.compile(model, backend=cfg.compile, dynamic=True)
    n = p.samples_for(dataset_name)
    indices = stratified_subset(ds, n, seed=p.seed) if n is not None else list(range(len(ds)))
    t0 = time.perf_counter()
    decoded = build_decoded(ds, ranks.share(indices), storage=cfg.decoded_storage, num_workers=cfg.workers,
                            skip_corrupt=cfg.skip_corrupt, progress=cfg.progress and ranks.main,
                            max_listed=MAX_LISTED_CORRUPT)
    t1 = time.perf_counter()
    reports = gather(decoded.report.to_dict(), ranks)
    n_skipped = sum(r["n_skipped"] for r in reports)
    info = {"name": dataset_name, "split": split, "source": ds.data_source, "n": len(indices) - n_skipped,
            "n_total": len(ds),
            "num_classes": len(ds.classes), "subset_seed": p.seed if n is not None else None,
            "transform": p.transform, "image_size": loaded.image_size,
            "preprocessing": describe_transform(DATA_SPECS.get(dataset_name), p.transform, loaded.image_size),
            "location": str(getattr(ds, "location", "") or ""),
            "corrupt": {"n_skipped": n_skipped + lost["n_skipped"],  # a hub copy's lost samples count for the split
                        "skipped": (lost["skipped"] + [path for r in reports for path in r["skipped"]])
                        [:MAX_LISTED_CORRUPT]}}
    if ds.hub is not None:
        info["hub"] = ds.hub.to_dict()
    if prompts.label_map is not None:
        info["relabel"] = {"note": prompts.label_note, "n_raw": n_raw, "n_dropped": n_raw - len(ds),
                           "num_raw_classes": prompts.num_raw_classes}
    shard = Shard(model, decoded, device, cfg.batch_size, len(ds.classes))
    clean_key = fingerprint([loaded.weights_hash, info, prompts.to_dict(), setup["normalization"],
                             setup["logit_scale"], cfg.precision] + (["antialias"] if p.resize_antialias else []))
    cpath = clean_path(cfg.out, label, dataset_name)
    cached = None
    if cfg.skip_existing and ranks.main:
        card = read_json(cpath)
        if card and card.get("schema") == CLEAN_SCHEMA and card.get("fingerprint") == clean_key:
            cached = read_json(samples_path(cpath))
    cached = broadcast(cached, ranks)
    if cached is not None:
        bar.update(len(decoded))
        return _Prepared(shard, info, prompts.to_dict(), cached, {"decode_s": round(t1 - t0, 3), "clean_pass_s": 0.0},
                         clf)
    clean = clean_pass(shard, ranks, progress=bar.update)
    timing = {"decode_s": round(t1 - t0, 3), "clean_pass_s": round(time.perf_counter() - t1, 3)}
    if ranks.main:
        acc = sum(clean["clean_correct"]) / max(len(clean["indices"]), 1)
        write_card(cpath, {"schema": CLEAN_SCHEMA, "fingerprint": clean_key, "clean_accuracy": acc,
                           "dataset": info}, clean)
    return _Prepared(shard, info, prompts.to_dict(), clean, timing, clf)


def _run_dataset(loaded: Any, model_info: dict[str, Any], setup: dict[str, Any], todo: list[Cell],
                 fps: dict[Cell, str], cfg: GridConfig, ranks: Dist, writer: _Writer, device: torch.device,
                 reference: Reference | None = None) -> list[dict[str, Any]]:
    label, dataset = todo[0].model, todo[0].dataset
    bar = tqdm(desc=f"{label} / {dataset}", unit="img", disable=not (cfg.progress and ranks.main), leave=False)
    t0 = time.time()
    prep, err = None, None
    try:
        prep = _prepare(loaded, label, dataset, setup, cfg, ranks, device, bar, writer.sources[dataset])
    except Exception as e:  # noqa: BLE001  (missing/unreadable data, prompts that do not fit, ...)
        err = e
    err = _agree(ranks, err)
    if err is not None:
        bar.close()
        return writer.errors(todo, model_info, fps, "dataset", err, t0)
    cards: list[dict[str, Any]] = []
    defended = None
    if any(c.defence for c in todo):
        defended, todo, cards = _set_up_defence(lambda: _defended(prep, reference, todo, cfg, ranks), todo, writer,
                                                model_info, fps, ranks, t0)
    for cell in todo:
        t1 = time.time()
        result, err = None, None
        try:
            if cell.defence:
                result = defended_cell(defended, cell, cfg.protocol, ranks, progress=bar.update)
            else:
                result = attack_cell(prep.shard, cell, prep.clean, cfg.protocol, ranks, early_exit=cfg.early_exit,
                                     progress=bar.update)
        except Exception as e:  # noqa: BLE001  (recorded; the grid goes on)
            err = e
        err = _agree(ranks, err)
        if err is not None:
            cards += writer.errors([cell], model_info, fps, "attack", err, t1)
            continue
        fields, samples = result
        card = _base_card(cell, cfg, model_info, fps[cell], writer.sources[dataset])
        clean_ok = sum(samples["clean_correct"])  # the defended classifier's, in a defended cell
        n = len(samples["indices"])
        card.update(dataset=prep.info, prompts=prep.prompts, **fields, n=n, clean_correct=clean_ok,
                    clean_accuracy=clean_ok / max(n, 1), samples=samples_path(cell.path(cfg.out)).name,
                    run={**writer.run(t1), "dataset": prep.timing})
        cards.append(writer.card(cell, card, samples))
    bar.close()
    return cards


def _set_up_defence(build: Callable[[], Any], todo: list[Cell], writer: _Writer, model_info: dict[str, Any],
                    fps: dict[Cell, str], ranks: Dist, t0: float) -> tuple[Any, list[Cell], list[dict[str, Any]]]:
    """``build()`` (a set-up step of the defence) on every rank: (its result, the cells still to run, error cards).
    When it fails on any rank, the defended cells get error cards and the undefended ones still run."""
    result, err = None, None
    try:
        result = build()
    except Exception as e:  # noqa: BLE001  (the defended cells' error)
        err = e
    err = _agree(ranks, err)
    if err is None:
        return result, todo, []
    failed = writer.errors([c for c in todo if c.defence], model_info, fps, "defence", err, t0)
    return None, [c for c in todo if not c.defence], failed


def _defended(prep: _Prepared, reference: Reference | None, todo: list[Cell], cfg: GridConfig,
              ranks: Dist) -> DefendedShard:
    """The dataset's shard under the defence; its clean pass is read from a finished defended clean card."""
    assert cfg.defence is not None and reference is not None
    clean_cell = Cell(todo[0].model, todo[0].dataset, "none", 0.0, 0, cfg.defence.name)
    cached = None
    if clean_cell not in todo and ranks.main:  # finished (--skip-existing): its per-sample file holds the pass
        cached = read_json(samples_path(clean_cell.path(cfg.out)))
    cached = broadcast(cached, ranks)
    encoder = None
    if reference.loaded is not None:
        encoder = reference_encoder(prep.classifier, reference.loaded.model, AUTOCAST[cfg.precision])
    return DefendedShard(prep.shard, cfg.defence, encoder, cfg.protocol.seed, reference_info=reference.info,
                         cached_clean=cached)
