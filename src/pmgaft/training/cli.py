"""``pmgaft train``: fine-tune CLIP's image encoder with PMG-AFT or a baseline.

Settings resolve as recipe (``--recipe``) < the method's defaults < ``--config FILE.yaml`` < flags. Every
config key has a flag (``batch_size`` -> ``--batch-size``); ``--eps`` and ``--step-size`` are in 1/255 units.

Examples::

    pmgaft train --method pmg_aft --recipe paper --data-root data --out-dir runs/pmg_aft
    pmgaft train --config configs/pmg_aft.yaml --micro-batch 64          # batch 256 on a small GPU
    pmgaft train --config configs/tiny/pmg_aft.yaml --max-steps 20      # CPU smoke run
    pmgaft train --config configs/imagenet/agft.yaml --dry-run          # every setting and its source
    pmgaft train --out-dir runs/pmg_aft --resume                        # continue it: nothing else needed
    torchrun --nproc_per_node 4 -m pmgaft train --config configs/pmg_aft.yaml   # see docs/distributed.md
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import typing
from dataclasses import fields
from pathlib import Path

from pmgaft.attacks.pgd import REDUCTIONS as ATTACK_REDUCTIONS
from pmgaft.data.transforms import PRESETS as TRANSFORMS
from pmgaft.cli_args import parse_logit_scale
from pmgaft.losses import KL_DIRECTIONS, KL_REDUCTIONS
from pmgaft.methods import METHODS
from pmgaft.models import NORMALIZATIONS
from pmgaft.prompts import PROMPT_STYLES
from pmgaft.training.config import MEMORY_MODES, OPTIMIZERS, PRECISIONS, TrainConfig
from pmgaft.training.recipes import RECIPES

_CHOICES = {"method": list(METHODS), "recipe": list(RECIPES), "optimizer": list(OPTIMIZERS),
            "precision": list(PRECISIONS), "kl_reduction": list(KL_REDUCTIONS), "kl_direction": list(KL_DIRECTIONS),
            "normalization": list(NORMALIZATIONS), "prompt_style": list(PROMPT_STYLES),
            "transform": list(TRANSFORMS), "attack_reduction": list(ATTACK_REDUCTIONS), "memory": list(MEMORY_MODES)}
# One line per config key: what it is and its units. The default (and what a recipe or method changes) is
# appended by _help_for, so it cannot drift from RECIPES / Method.defaults.
_HELP = {
    "method": "training method: pmg_aft (the paper), tecoa (FT-adv), ft_clean, fare, tga_zsr, comp_tga, agft",
    "recipe": "preset of every paper setting: 'paper' (as written) or 'official' (the released PMG_AFT.py)",
    "model": "open_clip architecture of the model to fine-tune, or a hub model to start from (hf-hub:ORG/NAME, "
             "local-dir:PATH, or a name from `pmgaft models`: its own config and weights)",
    "pretrained": "open_clip tag or checkpoint path of the starting weights ('none': random init; not used with a "
                  "hub --model, which brings its weights)",
    "text_pretrained": "base weights (tag or file) whose text tower an image-tower-only --pretrained file (FARE, "
                       "TeCoA-lineage releases) was fine-tuned from",
    "quick_gelu": "build the architecture with QuickGELU (OpenAI CLIP's activation); default: what the starting "
                  "weights were trained with (a warning says which when they cannot tell)",
    "dataset": "training set: a registered name or folder:PATH",
    "data_root": "folder holding the datasets",
    "out_dir": "run directory for checkpoints and logs (default: runs/METHOD-RECIPE)",
    "alpha": "weight of the first regularizer: PMG-AFT KL(P_ori||P_adv) (default 1), TGA-ZSR / Comp-TGA "
             "adversarial attention distance (default 0.08 / 0.10)",
    "beta": "weight of the second regularizer: PMG-AFT KL(P_clean||P_adv) (default 1), TGA-ZSR / Comp-TGA clean "
            "attention distance (default 0.05 / 0.07)",
    "agft_scale": "AGFT's logit scale s of the trained model's logits in its loss and train-time attack (training "
                  "only: evaluation keeps --logit-scale, CLIP's 100; default 180, the paper run's)",
    "agft_ratio": "AGFT's teacher/student scale ratio rho: the original model's soft target is softmax(rho x s x "
                  "cosine) (default 0.4, the paper run's)",
    "kl_reduction": "PMG-AFT KL terms: 'batchmean' (averaged over the batch) or 'sum' (summed, as the released code)",
    "kl_direction": "PMG-AFT KL direction: 'official' = KL(P_ori||P_adv), KL(P_clean||P_adv); 'reversed' = the "
                    "released code before its 2024-05-29 fix",
    "logit_scale": "zero-shot logits = SCALE x cosine: 'model' (CLIP's learned scale, 100) or a number (1 = raw "
                   "cosine)",
    "normalization": "input mean/std applied inside the model: 'clip' or 'imagenet'",
    "prompt_style": "class prompts: 'train' = \"This is a photo of a {}\", 'agft_train' = AGFT's \"This is a photo "
                    "of a {}.\" (names not lower-cased), 'paper' = per-dataset, 'ensemble'",
    "transform": "image preprocessing preset ('train': Resize(256)+CenterCrop(224), 'train224': AGFT's "
                 "Resize(224)+CenterCrop(224); native size for small images)",
    "augment": "random resized crops and flips on the training images (not the paper's)",
    "val_size": "images held out of the training set for model selection (default: val_fraction of it)",
    "val_fraction": "fraction of the training set held out for model selection when val_size is not given",
    "optimizer": "optimizer of the image tower: 'sgd' or 'adamw'",
    "lr": "peak learning rate (after warm-up)",
    "momentum": "SGD momentum (ignored by adamw)",
    "weight_decay": "decoupled (adamw) or L2 (sgd) weight decay of the image tower",
    "batch_size": "images per optimizer step, over all processes and micro-batches",
    "grad_accum": "micro-batches per optimizer step per process (default: 1, or derived from --micro-batch)",
    "micro_batch": "largest micro-batch per process; --grad-accum is derived from it (default: the whole "
                   "per-process batch)",
    "epochs": "passes over the training set (the cosine schedule spans all of them)",
    "warmup_steps": "optimizer steps of linear learning-rate warm-up before the per-step cosine decay",
    "precision": "autocast dtype on CUDA, fp32 master weights (the CPU always runs fp32)",
    "seed": "seed of the data order, validation split, attack starts and random init",
    "eps": "train-time PGD radius, L-inf, in 1/255 units",
    "step_size": "train-time PGD step size in 1/255 units",
    "attack_steps": "train-time PGD steps",
    "random_start": "start the train-time PGD uniformly inside the eps-ball",
    "attack_reduction": "train-time PGD objective: 'sum' (per-sample gradients, batch- and precision-independent) "
                        "or 'mean' (the released codes' batch-mean CE; with --precision fp16 its gradients "
                        "underflow at large batch, as theirs did)",
    "val_attack_steps": "PGD steps of the validation attack used for model selection",
    "memory": "PMG-AFT only. 'lean' (default): one batch's autograd graph alive instead of two, by recomputing the "
              "clean branch in the backward, for one more forward per step (+9% of the arithmetic at 2 attack "
              "steps); 'fast': no recomputation, both graphs alive. Same gradients either way; ViT-B/32 fp32, peak of "
              "live tensors against TeCoA's: lean 1.18x at batch 32 and 1.04x at 256, fast 1.69x and 1.92x (fitted)",
    "device": "auto, cpu, cuda or cuda:N",
    "max_steps": "stop after N optimizer steps; the schedule still spans all epochs (default: run them all; "
                 "'none' lifts a limit the run was started with, on --resume)",
    "num_workers": "data-loading worker processes",
    "log_every": "optimizer steps between log lines",
    "eval_every": "optimizer steps between validations (default: once per epoch)",
    "save_every": "optimizer steps between checkpoints (default: once per epoch)",
    "val_batch_size": "validation batch size (default: the per-process micro-batch size)",
    "progress": "show a progress bar",
    "resume": "continue the run in --out-dir from its newest complete checkpoint, with its own config.yaml (flags "
              "given with it must agree, except run-control ones, which are logged; no checkpoint: step 0)",
    "allow_change": "with --resume: comma-separated settings that may differ from the checkpoint's (e.g. lr,epochs); "
                    "each change is logged",
    "trust_checkpoint": "allow a --pretrained pickle that needs more than torch.load(weights_only=True): it can "
                        "execute code, so only for files you trust",
    "skip_nonfinite": "batches with a NaN/inf loss or gradient to skip (no update, logged) before training stops "
                      "on one",
    "keep_checkpoints": "newest step checkpoints kept under RUN/checkpoints/ (the best one is always kept)",
    "dist_timeout": "seconds a rank waits for the others in a collective (torchrun) before the run stops with an "
                    "error naming the missing rank; must exceed rank 0's validation and checkpoint time",
}

EXIT_STOPPED = 75  # EX_TEMPFAIL: stopped on SIGTERM/SIGINT with a checkpoint; resume (a SLURM script may requeue)
EPILOG = f"""\
exit status: 0 done; 2 bad input, a numerical fault (NaN/inf; the last good checkpoint is kept) or a failed rank;
{EXIT_STOPPED} stopped by SIGTERM/SIGINT at a step boundary after writing a checkpoint (EX_TEMPFAIL: resume with
--resume; a SLURM script can requeue on it); 130/143 stopped at once by a second SIGINT/SIGTERM.

run directory: config.yaml, checkpoints/step-NNNNNN/ (weights.safetensors, state.pt, manifest.json; each
committed atomically), last.safetensors and best.safetensors (the newest and the selected weights), log.jsonl,
tb/, prompts.json, summary.json."""


def _help_for(name: str, default: typing.Any) -> str:
    """``_HELP[name]`` plus its default and what the recipes and methods set (argparse ``%`` escaped)."""
    if default is None:  # the help text says what None means
        return _HELP[name].replace("%", "%%")
    changes = [f"recipe {r}: {v[name]}" for r, v in RECIPES.items() if name in v and v[name] != default]
    changes += [f"{m}: {cls.defaults[name]}" for m, cls in METHODS.items() if name in cls.defaults]
    text = f"{_HELP[name]} (default: {default}" + "".join(f"; {c}" for c in changes) + ")"
    return text.replace("%", "%%")


def _optional(kind: type):
    """A flag type for an optional key: 'none' / 'null' give None (e.g. ``--max-steps none`` on a resume)."""
    def parse(text: str):
        return None if text.lower() in ("none", "null") else kind(text)
    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def _flag_type(name: str, hint: typing.Any):
    if name == "logit_scale":
        return parse_logit_scale
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return _optional(args[0]) if type(None) in typing.get_args(hint) else args[0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog, parser.formatter_class = EPILOG, argparse.RawDescriptionHelpFormatter  # exit statuses, run dir
    parser.add_argument("--config", help="YAML file of config keys (see configs/); flags override it")
    parser.add_argument("--dry-run", action="store_true",
                        help="resolve and check the settings, print each with where it comes from (recipe, method "
                             "default, config file, flag) and the data the run would read, then exit: no model is "
                             "built")
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = _help_for(f.name, f.default)
        if hints[f.name] is bool or bool in typing.get_args(hints[f.name]):  # --x / --no-x
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=_flag_type(f.name, hints[f.name]),
                                choices=_CHOICES.get(f.name), default=argparse.SUPPRESS, help=help_text)


def resume_command(run_dir: Path) -> str:
    """The command that continues ``run_dir`` (under torchrun, with the same number of processes)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = f"torchrun --nproc_per_node {world} -m pmgaft" if world > 1 else "pmgaft"
    return f"{launcher} train --out-dir {shlex.quote(str(run_dir))} --resume"


def run(args: argparse.Namespace) -> int:
    from pmgaft.training import TrainingStopped, latest_checkpoint, resolve_config, resume_config, train

    given = {k: v for k, v in vars(args).items() if k not in ("config", "dry_run")}
    if args.dry_run:
        from pmgaft.training.dryrun import print_plan

        print_plan(given, args.config)
        return 0
    config = resume_config(given, args.config) if given.get("resume") else resolve_config(given, args.config)
    rank0 = os.environ.get("RANK", "0") == "0"
    try:
        out = train(config)
    except TrainingStopped as stop:
        if rank0:
            print(f"pmgaft train: stopped by {stop.signal_name} after step {stop.step}; its checkpoint is "
                  f"committed. Resume with:\n  {resume_command(stop.run)}", file=sys.stderr)
        return EXIT_STOPPED
    except KeyboardInterrupt as err:  # a second signal: stopped at once
        run_dir = config.resolved_out_dir()
        kept = latest_checkpoint(run_dir) if run_dir.is_dir() else None
        if rank0:
            print(f"pmgaft train: stopped at once by a second {err or 'SIGINT'}; steps after the last checkpoint "
                  f"(step {kept.step if kept else 0}) are lost. Resume with:\n  {resume_command(run_dir)}",
                  file=sys.stderr)
        return 143 if str(err) == "SIGTERM" else 130
    if rank0:
        print(f"pmgaft train: checkpoints in {out} (last.safetensors, best.safetensors, checkpoints/, config.yaml, "
              f"log.jsonl)")
    return 0
