"""``train(config) -> out_dir``: the training run, from config checks to the last checkpoint.

Order: validate the config and build the method (bad input fails before any work), load the data (class and
size checks), load the target and the frozen original CLIP, freeze everything but the image tower, then loop
over optimizer steps (:func:`~pmgaft.training.step.train_step`) with periodic validation and checkpoints.
"""
from __future__ import annotations

import copy
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch

from pmgaft.errors import PmgaftError
from pmgaft.methods import build_method
from pmgaft.models import ZeroShotClassifier, load_clip
from pmgaft.prompts import get_prompts
from pmgaft.training import checkpoint as ckpt
from pmgaft.training.config import TrainConfig, config_to_yaml, resolve_config, validate
from pmgaft.training.data import BatchPlan, load_train_data, plan_loader, resolve_grad_accum
from pmgaft.training.distributed import Dist, init_distributed, reduce_mean, shutdown, wrap_tower
from pmgaft.training.logger import RunLogger
from pmgaft.training.optim import build_optimizer, build_scheduler
from pmgaft.training.step import StepContext, train_step
from pmgaft.training.validate import validate as run_validation
from pmgaft.utils import atomic_write_json, atomic_write_text, resolve_device, seed_everything

_AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def train(config: TrainConfig | Mapping[str, Any]) -> Path:
    """Fine-tune the image tower as ``config`` says; returns the run directory with the checkpoints.

    ``config``: a :class:`TrainConfig` or a mapping of its keys (resolved over the recipe and method defaults).
    """
    config = config if isinstance(config, TrainConfig) else resolve_config(config)
    validate(config)
    method = build_method(config)
    if not method.trainable:
        method.losses(None, None, None, None, None)  # raises the method's explanation
    device = resolve_device(config.device)
    d = init_distributed(device.type)
    try:
        return _train(config, method, device, d)
    finally:
        shutdown(d)


def _classifiers(config: TrainConfig, classes: list[str], device: torch.device, method: Any
                 ) -> tuple[ZeroShotClassifier, ZeroShotClassifier | None, bool]:
    """(target, frozen original or None, whether the architecture uses QuickGELU)."""
    loaded = load_clip(config.model, config.pretrained, device=device, text_pretrained=config.text_pretrained,
                       quick_gelu=config.quick_gelu, trust_checkpoint=config.trust_checkpoint)
    try:
        prompts = get_prompts(config.dataset, config.prompt_style, classnames=classes)
    except PmgaftError as err:  # a subset of a registered set (other classes): its own names, the style's rules
        warnings.warn(f"{err} Using the data's own class names.", stacklevel=3)
        prompts = get_prompts(f"folder:{config.dataset}", config.prompt_style, classnames=classes)
    kwargs = {"normalization": config.normalization, "logit_scale": config.logit_scale}
    target = ZeroShotClassifier.build(loaded.model, loaded.tokenizer, prompts.classnames, prompts.templates, **kwargs)
    original = None
    if method.needs_original:
        frozen = copy.deepcopy(loaded.model).eval().requires_grad_(False)
        original = ZeroShotClassifier(frozen, target.text_embeddings, image_size=target.image_size,
                                      classnames=prompts.classnames, templates=prompts.templates, **kwargs).eval()
    target.requires_grad_(False)
    target.clip.visual.requires_grad_(True)  # the image tower only: text tower and logit scale stay frozen
    return target.train(), original, loaded.quick_gelu


def _train(config: TrainConfig, method: Any, device: torch.device, d: Dist) -> Path:
    out = config.resolved_out_dir()
    if not config.resume and d.main and (out / ckpt.STATE).exists():
        raise PmgaftError(f"{out} already holds a training run; pass --resume to continue it or choose another "
                          f"--out-dir.")
    state = ckpt.load_state(out, config) if config.resume else None
    data = load_train_data(config)
    accum = resolve_grad_accum(config, d.world)
    plan = BatchPlan(len(data.train), config.batch_size, config.seed, d.world, d.rank, accum)
    total = plan.steps_per_epoch * config.epochs
    seed_everything(config.seed)
    target, original, quick_gelu = _classifiers(config, data.classes, device, method)
    if state is not None:
        target.clip.load_state_dict(_read(out / ckpt.LAST))  # the weights of the saved step
    optimizer = build_optimizer(target.clip.visual.parameters(), config)
    scheduler = build_scheduler(optimizer, config, total)
    dtype = _AUTOCAST[config.precision] if device.type == "cuda" else None
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    start, best = 0, None
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"])
        start, best = state["step"], state["best"]
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / ckpt.CONFIG, config_to_yaml(config))
        atomic_write_json(out / "prompts.json", {"classnames": target.classnames, "templates": target.templates})
    ctx = StepContext(method, target, original, wrap_tower(target.clip.visual, d, device), optimizer, scheduler,
                      scaler, config.attack_settings(), device, dtype, config.seed, d)
    end = min(total, config.max_steps) if config.max_steps else total
    eval_every = config.eval_every or plan.steps_per_epoch
    save_every = config.save_every or plan.steps_per_epoch
    logger = RunLogger(out, total=total, initial=start, enabled=d.main, progress=config.progress)

    def save(step: int, scores: dict[str, float]) -> None:
        meta = ckpt.weights_metadata(config, step, step / plan.steps_per_epoch, scores,
                                                  quick_gelu=quick_gelu)
        ckpt.save_weights(out / ckpt.LAST, target.clip, meta)
        ckpt.save_state(out / ckpt.STATE, step=step, config=config, optimizer=optimizer, scheduler=scheduler,
                        scaler=scaler, best=best)

    micro: list[tuple[torch.Tensor, torch.Tensor]] = []
    tick = time.perf_counter()
    for x, y in plan_loader(data.train, plan, start, end, config.num_workers):
        micro.append((x, y))
        if len(micro) < accum:
            continue
        step, lr = start + 1, scheduler.get_last_lr()[0]
        terms = reduce_mean(train_step(ctx, start, micro), d, device)
        micro, start = [], step
        now = time.perf_counter()
        rate = config.batch_size / max(now - tick, 1e-9)
        tick = now
        logger.progress({**terms, "img/s": rate})
        if d.main and (step % config.log_every == 0 or step == end):
            logger.log(step, {**terms, "lr": lr, "images_per_s": rate,
                              "epoch": step / plan.steps_per_epoch})
        scores: dict[str, float] = {}
        if data.val is not None and (step % eval_every == 0 or step == total):
            if d.main:
                scores = run_validation(target, data.val, config, device,
                                        config.val_batch_size or config.batch_size // (d.world * accum))
                logger.log(step, scores, prefix="val")
                if best is None or (scores["val_robust"], scores["val_clean"]) > (best["val_robust"],
                                                                                  best["val_clean"]):
                    best = {"step": step, **scores}
                    ckpt.save_weights(out / ckpt.BEST, target.clip,
                                      ckpt.weights_metadata(config, step, step / plan.steps_per_epoch, scores,
                                                               quick_gelu=quick_gelu))
            d.barrier()
        if d.main and (step % save_every == 0 or step == end):
            save(step, scores)
    if d.main:
        if data.val is None and end == total:  # nothing to select on: the last weights are the best
            ckpt.save_weights(out / ckpt.BEST, target.clip,
                              ckpt.weights_metadata(config, end, end / plan.steps_per_epoch, {},
                                                       quick_gelu=quick_gelu))
        atomic_write_json(out / "summary.json", {"steps": end, "total_steps": total, "best": best,
                                                 "finished": end == total})
    logger.close()
    d.barrier()
    return out


def _read(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))
