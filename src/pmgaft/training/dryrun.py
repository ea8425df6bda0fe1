"""``pmgaft train --dry-run``: every setting of a run with where it comes from, and the data it would read.

The config is resolved and validated as for a real run (a bad value is the same one-line error, exit 2); then
the settings are listed with their source (``recipe paper``, ``method agft default``, ``config file PATH``,
``flag``, or ``pmgaft default``), followed by the data: the training set and whether it is on disk (a registered
set is not listed: its standard image count is used), the held-out split, the optimizer steps, the
preprocessing, the prompts and the class names' source. No model is built and no image is read.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping

from pmgaft.data import DATASETS, describe_transform
from pmgaft.data.folder import PREFIX as FOLDER_PREFIX
from pmgaft.data.folder import load_folder
from pmgaft.errors import PmgaftError
from pmgaft.methods import build_method
from pmgaft.training.checkpoint import holds_run
from pmgaft.training.config import TrainConfig, config_layers, setting_sources, validate
from pmgaft.training.data import TRAIN_IMAGE_SIZE, train_prompts
from pmgaft.utils import lookup

Echo = Callable[[str], None]


def _training_set(config: TrainConfig) -> tuple[str, int | None, list[str] | None]:
    """(where the training images are, or why they are not there; their count; the class keys of a folder)."""
    if config.dataset.startswith(FOLDER_PREFIX):
        path = Path(config.dataset[len(FOLDER_PREFIX):]).expanduser()
        try:
            folder = load_folder(path, "train")  # lists the files: folder sets have no standard count
        except PmgaftError as err:
            return f"NOT FOUND: {err}", None, None
        return f"found: {folder.location} (counted on disk)", len(folder), list(folder.classes)
    spec = lookup(DATASETS, config.dataset, "dataset")
    found = spec.locate(config.data_root, "train")
    where = f"found: {found}" if found is not None else f"NOT FOUND: {spec.not_found(config.data_root, 'train')}"
    return f"{spec.display_name}, {spec.describe_split('train')}; {where}", spec.size("train"), None


def _prompts(config: TrainConfig, classes: list[str] | None) -> tuple[str, str]:
    try:
        prompts = train_prompts(config, classes)
    except PmgaftError as err:
        return "-", str(err)
    names = ", ".join(prompts.classnames[:3]) + (", ..." if prompts.num_classes > 3 else "")
    return " | ".join(prompts.templates), f"{prompts.num_classes} classes from {prompts.names_source}; e.g. {names}"


def describe_run(given: Mapping[str, Any], config_file: str | Path | None = None) -> dict[str, Any]:
    """What :func:`print_plan` shows, as data: ``settings`` ({key: (value, source)}) and ``data`` / ``run`` lines."""
    if given.get("resume"):
        raise PmgaftError("--dry-run shows the settings of a new run; a run being resumed keeps those in its "
                          "RUN/config.yaml (read it, or drop --resume).")
    layers = config_layers(given, config_file)
    config = TrainConfig(**{k: v for _, values in layers for k, v in values.items()})
    validate(config)
    sources = setting_sources(layers)
    settings = {key: (value, sources[key]) for key, value in config.to_dict().items()}
    method = build_method(config)
    where, n_images, classes = _training_set(config)
    n_val = config.val_size if config.val_size is not None else (
        None if n_images is None else int(round(config.val_fraction * n_images)))
    spec = DATASETS.get(config.dataset)
    preset = "train_augment" if config.augment else config.transform
    template, names = _prompts(config, classes)
    data = {"training set": f"{config.dataset} under {config.data_root}: {where}",
            "held out for model selection": ("none: the final weights are the selected ones" if n_val == 0 else
                                             f"{n_val:,} images of the training set" if n_val is not None else
                                             f"{config.val_fraction:.0%} of the training set")}
    if n_images is not None:
        per_epoch = (n_images - (n_val or 0)) // config.batch_size
        total = per_epoch * config.epochs
        data["optimizer steps"] = (f"{per_epoch:,} per epoch x {config.epochs} epochs = {total:,} at batch "
                                   f"{config.batch_size} ({config.warmup_steps:,} warm-up, then cosine)"
                                   + (f"; stops after {config.max_steps:,}" if config.max_steps else ""))
    data["preprocessing"] = (f"{describe_transform(spec, preset, TRAIN_IMAGE_SIZE)} to [0, 1], read by "
                             f"{config.num_workers} loader worker(s); the model resizes and normalizes inside")
    data["prompt"] = template
    data["class names"] = names
    scale = "CLIP's own (100 for OpenAI CLIP)" if config.logit_scale == "model" else f"{config.logit_scale:g} x cos"
    run_dir = config.resolved_out_dir()
    run = {"method settings": ", ".join(f"{k} {v}" for k, v in method.hparams().items()) or "-",
           "logit scale recorded for evaluation": scale,
           "run directory": f"{run_dir}" + (" (holds a run: pass --resume or another --out-dir)"
                                            if holds_run(run_dir) else "")}
    return {"config": config, "settings": settings, "data": data, "run": run}


def print_plan(given: Mapping[str, Any], config_file: str | Path | None = None, *, echo: Echo = print) -> None:
    """Print every setting with its source, then the data and the run it would produce."""
    plan = describe_run(given, config_file)
    config: TrainConfig = plan["config"]
    echo(f"pmgaft train --dry-run: {config.method} (recipe {config.recipe}) on {config.dataset}; nothing is built "
         f"or read\n\nsettings:")
    width = max(map(len, plan["settings"]))
    for key, (value, source) in plan["settings"].items():
        shown = f"{value:g}" if isinstance(value, float) and math.isfinite(value) else str(value)
        echo(f"  {key:<{width}}  {shown:<24} {source}")
    for title in ("data", "run"):
        echo(f"\n{title}:")
        for key, line in plan[title].items():
            echo(f"  {key}: {line}")
