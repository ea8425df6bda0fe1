"""``pmgaft train``: fine-tune CLIP's image encoder with PMG-AFT or a baseline.

Settings resolve as recipe (``--recipe``) < the method's defaults < ``--config FILE.yaml`` < flags. Every
config key has a flag (``batch_size`` -> ``--batch-size``); ``--eps`` and ``--step-size`` are in 1/255 units.

Examples::

    pmgaft train --method pmg_aft --recipe paper --data-root data --out-dir runs/pmg_aft
    pmgaft train --config configs/pmg_aft.yaml --micro-batch 64          # batch 256 on a small GPU
    pmgaft train --config configs/tiny/pmg_aft.yaml --max-steps 20      # CPU smoke run
    torchrun --nproc_per_node 4 -m pmgaft train --config configs/pmg_aft.yaml
"""
from __future__ import annotations

import argparse
import typing
from dataclasses import fields

from pmgaft.methods import METHODS
from pmgaft.training.config import OPTIMIZERS, PRECISIONS, TrainConfig
from pmgaft.training.recipes import RECIPES

_CHOICES = {"method": list(METHODS), "recipe": list(RECIPES), "optimizer": list(OPTIMIZERS),
            "precision": list(PRECISIONS), "kl_reduction": ["batchmean", "sum"],
            "kl_direction": ["official", "reversed"], "device": None}
_HELP = {
    "method": "training method", "recipe": "preset of every paper setting (PAPER.md)",
    "model": "open_clip architecture", "pretrained": "open_clip tag or checkpoint path ('none': random init)",
    "dataset": "training set (registered name or folder:PATH)", "data_root": "data root folder",
    "out_dir": "run directory (default runs/METHOD-RECIPE)", "eps": "train attack eps in 1/255 units",
    "step_size": "train attack step in 1/255 units", "logit_scale": "'model' or a number (1 = raw cosine)",
    "micro_batch": "largest micro-batch per process; grad_accum is derived", "max_steps": "stop after N steps",
    "val_size": "images held out of the training set for model selection",
    "precision": "autocast dtype on CUDA (CPU: fp32)", "device": "auto, cpu, cuda or cuda:N",
}


def _parse_scale(text: str) -> str | float:
    return text if text == "model" else float(text)


def _parse_optional_str(text: str) -> str | None:
    return None if text.lower() in ("none", "null") else text


def _flag_type(name: str, hint: typing.Any):
    if name == "logit_scale":
        return _parse_scale
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    kind = args[0]
    return _parse_optional_str if kind is str and type(None) in typing.get_args(hint) else kind


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (see configs/)")
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = _HELP.get(f.name, f.name.replace("_", " "))
        if hints[f.name] is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=_flag_type(f.name, hints[f.name]),
                                choices=_CHOICES.get(f.name), default=argparse.SUPPRESS, help=help_text)


def run(args: argparse.Namespace) -> int:
    from pmgaft.training.config import resolve_config
    from pmgaft.training.loop import train

    overrides = {k: v for k, v in vars(args).items() if k != "config"}
    out = train(resolve_config(overrides, args.config))
    print(f"pmgaft train: checkpoints in {out} (last.safetensors, best.safetensors, config.yaml, log.jsonl)")
    return 0
