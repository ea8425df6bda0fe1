"""``TrainConfig``: every training setting, resolved as recipe < method defaults < YAML file < command line.

ε and the attack step are in 1/255 units here (as users speak them); :meth:`TrainConfig.attack_settings`
converts once. Keys in :data:`RUN_CONTROL` steer the run but not the result (device, workers, logging, when to
stop, how a batch is split into micro-batches); every other key must match when a run is resumed, unless it is
named in ``allow_change``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from pmgaft.attacks.pgd import REDUCTIONS as ATTACK_REDUCTIONS
from pmgaft.data.transforms import PRESETS as TRANSFORMS
from pmgaft.errors import PmgaftError
from pmgaft.losses import KL_DIRECTIONS, KL_REDUCTIONS
from pmgaft.methods import METHODS, AttackSettings, build_method
from pmgaft.models import NORMALIZATIONS, hub_name
from pmgaft.prompts import PROMPT_STYLES
from pmgaft.training.recipes import RECIPES
from pmgaft.utils import did_you_mean, lookup, resolve_device

PRECISIONS = ("fp32", "bf16", "fp16")
OPTIMIZERS = ("sgd", "adamw")
MEMORY_MODES = ("fast", "lean")
# Keys that steer a run but not its result. grad_accum / micro_batch only change how each global batch is split
# (the same gradient up to float summation order), so a run can resume on another number of GPUs.
RUN_CONTROL = frozenset({"out_dir", "data_root", "device", "max_steps", "num_workers", "log_every", "eval_every",
                         "save_every", "resume", "progress", "val_batch_size", "trust_checkpoint", "grad_accum",
                         "micro_batch", "skip_nonfinite", "keep_checkpoints", "dist_timeout", "allow_change",
                         "memory"})


@dataclass
class TrainConfig:
    """All settings of one training run (defaults: the paper recipe on ViT-B/32 + TinyImageNet)."""

    method: str = "pmg_aft"
    recipe: str = "paper"
    model: str = "ViT-B-32"
    pretrained: str | None = "openai"
    text_pretrained: str | None = None  # base weights (tag or file) of an image-tower-only starting checkpoint
    quick_gelu: bool | None = None  # None: the activation the starting weights were trained with
    dataset: str = "tinyimagenet"
    data_root: str = "data"
    out_dir: str | None = None  # default runs/<method>-<recipe>
    # objective
    alpha: float | None = None  # None: the method's default (pmg_aft 1.0, tga_zsr 0.08, comp_tga 0.10)
    beta: float | None = None  # None: the method's default (pmg_aft 1.0, tga_zsr 0.05, comp_tga 0.07)
    agft_scale: float | None = None  # AGFT's training-only logit scale s (None: the method's default, 180)
    agft_ratio: float | None = None  # AGFT's teacher/student scale ratio rho (None: the method's default, 0.4)
    kl_reduction: str = "batchmean"
    kl_direction: str = "official"
    logit_scale: str | float = "model"
    normalization: str = "clip"
    prompt_style: str = "train"
    # data
    transform: str = "train"
    augment: bool = False
    val_size: int | None = None  # images held out of the training set for model selection
    val_fraction: float = 0.01  # used when val_size is None
    # optimization
    optimizer: str = "sgd"
    lr: float = 5e-5
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 256
    grad_accum: int | None = None  # micro-batches per optimizer step (per process)
    micro_batch: int | None = None  # alternative: the largest micro-batch that fits; grad_accum is derived
    epochs: int = 10
    warmup_steps: int = 1000
    precision: str = "bf16"  # autocast dtype on CUDA (fp32 master weights); CPU always runs fp32
    seed: int = 0
    # train-time attack (1/255 units)
    eps: float = 1.0
    step_size: float = 1.0
    attack_steps: int = 2
    random_start: bool = True
    attack_reduction: str = "sum"  # "mean": the released codes' batch-mean attack objective (opt-in)
    # validation (PGD on the held-out split)
    val_attack_steps: int = 10
    memory: str = "fast"  # "lean": PMG-AFT recomputes its clean branch in the backward (same gradients)
    # run control
    device: str = "auto"
    max_steps: int | None = None
    num_workers: int = 2
    log_every: int = 10
    eval_every: int | None = None  # steps; None = once per epoch
    save_every: int | None = None  # steps; None = once per epoch
    val_batch_size: int | None = None
    progress: bool = True
    resume: bool = False
    allow_change: str | None = None  # comma-separated result keys a --resume may change (logged)
    trust_checkpoint: bool = False
    skip_nonfinite: int = 0  # batches with a non-finite loss or gradient skipped (no update) before stopping
    keep_checkpoints: int = 2  # newest step checkpoints kept (the best one is kept as well)
    dist_timeout: float = 600.0  # seconds a collective may wait for the other ranks (torchrun)

    def attack_settings(self) -> AttackSettings:
        return AttackSettings(eps=self.eps / 255, step_size=self.step_size / 255, steps=self.attack_steps,
                              random_start=self.random_start, reduction=self.attack_reduction)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def result_keys(self) -> dict[str, Any]:
        """The settings that determine the trained weights (compared on ``--resume``)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUN_CONTROL}

    def resolved_out_dir(self) -> Path:
        return Path(self.out_dir or f"runs/{self.method}-{self.recipe}")

    def allowed_changes(self) -> set[str]:
        """The result keys ``allow_change`` names."""
        return {k.strip() for k in (self.allow_change or "").split(",") if k.strip()}


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(TrainConfig))


def check_keys(values: Mapping[str, Any], source: str) -> None:
    """PmgaftError naming every unknown key (with close matches)."""
    for key in values:
        if key not in FIELD_NAMES:
            raise PmgaftError(f"unknown config key {key!r} in {source}.{did_you_mean(key, FIELD_NAMES)}")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML (or JSON) mapping of config keys."""
    path = Path(path)
    if not path.is_file():
        raise PmgaftError(f"config file {str(path)!r} does not exist (see configs/ for examples).")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:  # one line: where and what, not PyYAML's multi-line excerpt
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or " ".join(str(err).split())
        raise PmgaftError(f"config file {path} is not valid YAML{where}: {problem} (see configs/ for examples).") \
            from None
    if not isinstance(values, dict):
        raise PmgaftError(f"config file {path} must hold a mapping of keys, got {type(values).__name__}.")
    check_keys(values, str(path))
    return _numbers_from_strings(values)


def _numbers_from_strings(values: dict[str, Any]) -> dict[str, Any]:
    """YAML 1.1 (PyYAML) reads ``5e-5`` as a string: turn such strings into floats for the float-typed keys."""
    hints = typing.get_type_hints(TrainConfig)
    out = dict(values)
    for key, value in values.items():
        if isinstance(value, str) and float in (typing.get_args(hints[key]) or (hints[key],)):
            try:
                out[key] = float(value)
            except ValueError:
                pass  # check_types names it
    return out


def config_layers(overrides: Mapping[str, Any] | None = None, config_file: str | Path | None = None
                  ) -> list[tuple[str, dict[str, Any]]]:
    """Where settings come from, lowest precedence first: ``(source, values)`` for the recipe, the method's
    defaults, ``config_file`` and ``overrides`` (the command-line flags); keys in none of them keep
    :class:`TrainConfig`'s default."""
    overrides = dict(overrides or {})
    check_keys(overrides, "the arguments")
    file_values = read_config_file(config_file) if config_file is not None else {}
    layered = {**file_values, **overrides}
    recipe_name, method_name = str(layered.get("recipe", "paper")), str(layered.get("method", "pmg_aft"))
    recipe = lookup(RECIPES, recipe_name, "recipe")
    method = lookup(METHODS, method_name, "method")
    layers = [(f"recipe {recipe_name}", dict(recipe)), (f"method {method_name} default", dict(method.defaults)),
              (f"config file {config_file}", file_values), ("flag", overrides)]
    model = {**recipe, **method.defaults, **layered}.get("model")
    hub = hub_name(model) if isinstance(model, str) else None
    if hub is not None:  # a hub model carries its own weights: the recipe's base tag does not apply to it
        own_weights = {} if "pretrained" in layered else {"pretrained": None}
        layers.append((f"hub model {model}", {"model": hub, **own_weights}))
    return layers


def setting_sources(layers: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """``{key: where its value comes from}`` for every config key (the last layer that sets it wins)."""
    sources = {name: "pmgaft default" for name in FIELD_NAMES}
    for source, values in layers:
        sources.update({key: source for key in values})
    return sources


def resolve_config(overrides: Mapping[str, Any] | None = None, config_file: str | Path | None = None) -> TrainConfig:
    """Recipe defaults < the method's defaults < ``config_file`` < ``overrides`` (e.g. command-line flags)."""
    config = TrainConfig(**{k: v for _, values in config_layers(overrides, config_file) for k, v in values.items()})
    validate(config)
    return config


def _type_ok(value: Any, hint: Any) -> bool:
    """``value`` fits the field's annotation (ints where floats are expected; never a bool for a number)."""
    options = typing.get_args(hint) or (hint,)
    for option in options:
        if option is type(None) and value is None:
            return True
        if option is bool and isinstance(value, bool):
            return True
        if option in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
            return option is float or isinstance(value, int)
        if option is str and isinstance(value, str):
            return True
    return False


def check_types(config: TrainConfig) -> None:
    """PmgaftError naming the first value whose type does not fit (e.g. ``lr: abc`` in a YAML file)."""
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        value = getattr(config, f.name)
        if not _type_ok(value, hints[f.name]):
            expected = " or ".join("null" if a is type(None) else a.__name__
                                   for a in (typing.get_args(hints[f.name]) or (hints[f.name],)))
            raise PmgaftError(f"config key {f.name!r} must be {expected}, got {value!r}.")


def relabel_refused(config: TrainConfig) -> PmgaftError:
    """A prompt style that merges or drops classes of the training set cannot train: training scores every image
    with the data's own labels."""
    return PmgaftError(f"prompt_style {config.prompt_style!r} scores {config.dataset!r} with merged or dropped "
                       f"classes (an evaluation protocol's label map), but training uses the data's own labels: "
                       f"use prompt_style 'train', 'agft_train' or 'paper'.")


def validate(config: TrainConfig) -> None:
    """Value checks that need no data or model (run before any work)."""
    check_types(config)
    lookup(RECIPES, config.recipe, "recipe")
    lookup(METHODS, config.method, "method")
    lookup({p: p for p in PRECISIONS}, config.precision, "precision")
    lookup({o: o for o in OPTIMIZERS}, config.optimizer, "optimizer")
    lookup({m: m for m in MEMORY_MODES}, config.memory, "memory")
    lookup({k: k for k in KL_REDUCTIONS}, config.kl_reduction, "kl_reduction")
    lookup({k: k for k in KL_DIRECTIONS}, config.kl_direction, "kl_direction")
    lookup({r: r for r in ATTACK_REDUCTIONS}, config.attack_reduction, "attack_reduction")
    lookup(NORMALIZATIONS, config.normalization, "normalization")
    lookup(PROMPT_STYLES, config.prompt_style, "prompt_style")
    if PROMPT_STYLES[config.prompt_style].relabel(config.dataset) is not None:  # a folder's is known from its files
        raise relabel_refused(config)
    lookup(TRANSFORMS, config.transform, "transform")
    if config.logit_scale != "model" and not (isinstance(config.logit_scale, (int, float))
                                              and config.logit_scale > 0):
        raise PmgaftError(f"logit_scale must be 'model' or a positive number (1 = raw cosine), "
                          f"got {config.logit_scale!r}.")
    for f in fields(TrainConfig):  # NaN and inf slip through every comparison below
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise PmgaftError(f"config key {f.name!r} must be a finite number, got {value}.")
    positive = {"batch_size": config.batch_size, "epochs": config.epochs, "lr": config.lr,
                "log_every": config.log_every, "keep_checkpoints": config.keep_checkpoints,
                "dist_timeout": config.dist_timeout}
    for key, value in positive.items():
        if not value > 0:
            raise PmgaftError(f"{key} must be > 0, got {value}.")
    for key in ("grad_accum", "micro_batch", "max_steps", "eval_every", "save_every", "val_batch_size"):
        value = getattr(config, key)
        if value is not None and value <= 0:
            raise PmgaftError(f"{key} must be > 0 when given, got {value}.")
    for key in ("momentum", "weight_decay", "num_workers", "skip_nonfinite"):
        value = getattr(config, key)
        if value is not None and value < 0:
            raise PmgaftError(f"{key} must be >= 0, got {value}.")
    if config.momentum >= 1:
        raise PmgaftError(f"momentum must be < 1 (SGD diverges at >= 1; paper: 0.9), got {config.momentum}.")
    if config.eps < 0 or config.step_size < 0 or config.attack_steps < 0 or config.val_attack_steps < 0:
        raise PmgaftError("eps, step_size (in 1/255 units), attack_steps and val_attack_steps must be >= 0.")
    if config.eps > 255 or config.step_size > 255:
        raise PmgaftError(f"eps and step_size are in 1/255 units and must be <= 255, got eps={config.eps}, "
                          f"step_size={config.step_size} (for eps = 4/255 pass 4).")
    if config.warmup_steps < 0 or not 0 <= config.val_fraction < 1 or (config.val_size or 0) < 0:
        raise PmgaftError("warmup_steps must be >= 0, val_fraction in [0, 1), val_size >= 0.")
    if config.grad_accum is not None and config.micro_batch is not None:
        raise PmgaftError("give either grad_accum or micro_batch, not both.")
    unknown = config.allowed_changes() - set(FIELD_NAMES)
    control = config.allowed_changes() & RUN_CONTROL
    if unknown or control:
        key = sorted(unknown or control)[0]
        raise PmgaftError(f"allow_change names {key!r}, which is " + (
            f"not a config key.{did_you_mean(key, [k for k in FIELD_NAMES if k not in RUN_CONTROL])}" if unknown
            else "a run-control key: it may change on --resume without being allowed."))
    resolve_device(config.device)  # malformed or unavailable: a PmgaftError before any work
    build_method(config)  # the method's own argument checks (alpha, beta, KL settings)


# not written to a run's config.yaml: the folder holding it is the run (a copied folder resumes in place), and
# resume / allow_change are one-time requests
_NOT_SAVED = ("out_dir", "resume", "allow_change")


def saved_values(config: TrainConfig) -> dict[str, Any]:
    """The settings a run records (``config.yaml``, checkpoint state): every key but :data:`_NOT_SAVED`."""
    return {k: v for k, v in config.to_dict().items() if k not in _NOT_SAVED}


def config_to_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump(json.loads(json.dumps(saved_values(config))), sort_keys=False)
