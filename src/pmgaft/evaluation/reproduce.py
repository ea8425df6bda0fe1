"""``pmgaft reproduce``: train the paper's methods from the training configs, evaluate them with the paper
protocol, write the paper-style table. ``--dry-run`` prints every command and an estimated GPU cost.

Training goes through ``pmgaft.cli.main(["train", ...])`` (imported only when it runs, never at import time);
a run whose ``best.safetensors`` exists is not retrained, and evaluation uses ``--skip-existing``, so an
interrupted reproduction resumes where it stopped.
"""
from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass
from pathlib import Path

from pmgaft.data import PAPER_DATASETS
from pmgaft.errors import PmgaftError

# method -> training config file under --configs (None: evaluated as is)
METHODS: dict[str, str | None] = {"clip": None, "ft_clean": "ft_clean.yaml", "tecoa": "tecoa.yaml",
                                  "fare": "fare.yaml", "pmg_aft": "pmg_aft.yaml", "tga_zsr": "tga_zsr.yaml"}

# --- cost model: stated assumptions, ViT-B/32 at 224 px, fp32/TF32, batch >= 128 -------------------------------
FWD_BWD_IMAGES_PER_S = {"A100": 1000.0, "H100": 2000.0}  # forward+backward (input gradient) per second
FORWARD_SPEEDUP = 3.0  # a forward pass alone costs ~1/3 of forward+backward
TRAIN_IMAGES = 100_000 * 10  # TinyImageNet train x 10 epochs
# forward+backward passes per training image: PGD-2 steps + the passes the loss needs (forward-only as 1/3)
TRAIN_UNITS = {"ft_clean": 1.0, "tecoa": 2 + 1.0, "fare": 2 + 1 + 1 / 3, "pmg_aft": 2 + 2 + 1 / 3,
               "tga_zsr": 2 + 2 + 2 / 3}
AA_SURVIVORS = 0.3  # fraction of images still robust after APGD-CE (what the costly AutoAttack stages see)
# per test image: PGD-100 + CW-100 (100 each), AutoAttack: APGD-CE 100, then on survivors APGD-T 9x100,
# FAB-T 9x100, Square 5000 queries (forward only); clean pass 1/3
EVAL_UNITS = 1 / 3 + 100 + 100 + 100 + AA_SURVIVORS * (900 + 900 + 5000 / FORWARD_SPEEDUP)
TEST_SIZES = {"tinyimagenet": 10_000, "cifar10": 10_000, "cifar100": 10_000, "stl10": 8_000, "sun397": 19_850,
              "food101": 25_250, "oxford_pets": 3_669, "flowers102": 6_149, "dtd": 1_880, "eurosat": 2_700,
              "fgvc_aircraft": 3_333, "imagenet": 50_000, "caltech101": 6_085, "caltech256": 6_000,
              "stanford_cars": 8_041, "pcam": 32_768}


@dataclass
class Plan:
    commands: list[list[str]]
    train_gpu_hours: dict[str, float]
    eval_gpu_hours: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=Path, required=True,
                        help="folder holding TinyImageNet and the 15 zero-shot test sets (see `pmgaft datasets`)")
    parser.add_argument("--model", default="ViT-B-32", help="open_clip architecture (default: ViT-B-32)")
    parser.add_argument("--pretrained", default="openai",
                        help="open_clip tag or weights file of the starting / reference CLIP (default: openai)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
                        help="methods to train and evaluate; 'clip' = the pre-trained model as is (default: all)")
    parser.add_argument("--recipe", choices=["paper", "official"], default="paper",
                        help="training recipe: 'paper' (as written) or 'official' (the released PMG_AFT.py) "
                             "(default: paper)")
    parser.add_argument("--configs", type=Path, default=Path("configs"),
                        help="folder of the per-method training configs METHOD.yaml (default: ./configs)")
    parser.add_argument("--out", type=Path, default=Path("reproduce"),
                        help="output folder: runs/, results/ and report/ go under it (default: ./reproduce)")
    parser.add_argument("--n-samples", type=int,
                        help="evaluate on a class-stratified subset of N images per set (default: full test sets)")
    parser.add_argument("--gpu", choices=list(FWD_BWD_IMAGES_PER_S), default="A100",
                        help="GPU the cost estimate assumes (default: A100)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the cost estimate only")


def _train_flags() -> set[str] | None:
    """The option strings ``pmgaft train`` accepts, or None when the training module is not installed."""
    try:
        import importlib

        module = importlib.import_module("pmgaft.training.cli")
    except ImportError:
        return None
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return set(parser._option_string_actions)


def build_plan(args: argparse.Namespace, known: set[str] | None = None) -> Plan:
    out, steps, checkpoints = args.out, [], []
    optional = {"--model": args.model, "--pretrained": args.pretrained, "--data-root": str(args.data_root),
                "--device": args.device}
    rate = FWD_BWD_IMAGES_PER_S[args.gpu] * 3600
    train_hours = {}
    for method in args.methods:
        config = METHODS[method]
        if config is None:
            continue
        run_dir = out / "runs" / method
        cmd = ["train", "--config", str(args.configs / config), "--out-dir", str(run_dir), "--recipe", args.recipe,
               "--method", method]
        cmd += [x for flag, value in optional.items() if known is None or flag in known for x in (flag, value)]
        steps.append(cmd)
        checkpoints += ["--checkpoint", f"{method}={run_dir / 'best.safetensors'}"]
        train_hours[method] = TRAIN_IMAGES * TRAIN_UNITS[method] / rate
    evaluate = ["eval", "--protocol", "paper", "--model", args.model, "--data-root", str(args.data_root),
                "--out", str(out / "results"), "--device", args.device, "--skip-existing", *checkpoints]
    if "clip" in args.methods:
        evaluate += ["--pretrained", args.pretrained, "--label", "clip"]
    if args.n_samples:
        evaluate += ["--n-samples", str(args.n_samples)]
    n_models = len(args.methods)
    images = sum(min(TEST_SIZES[d], args.n_samples or TEST_SIZES[d]) for d in PAPER_DATASETS)
    eval_hours = n_models * images * EVAL_UNITS / rate
    return Plan(steps + [evaluate, ["report", str(out / "results"), "--out", str(out / "report")]],
                train_hours, eval_hours)


def _print_plan(plan: Plan, args: argparse.Namespace) -> None:
    print(f"pmgaft reproduce plan ({len(plan.commands)} commands):")
    for cmd in plan.commands:
        print("  pmgaft " + " ".join(shlex.quote(c) for c in cmd))
    print(f"\nestimated cost on one {args.gpu} (ViT-B/32, {FWD_BWD_IMAGES_PER_S[args.gpu]:.0f} img/s forward+"
          f"backward, forward {FORWARD_SPEEDUP:g}x faster; AutoAttack survivors {AA_SURVIVORS:.0%}):")
    for method, hours in plan.train_gpu_hours.items():
        print(f"  train {method:<9} {hours:7.1f} GPU-h  ({TRAIN_IMAGES:,} images x {TRAIN_UNITS[method]:.2f} "
              f"forward+backward each)")
    print(f"  evaluate        {plan.eval_gpu_hours:7.1f} GPU-h  ({len(args.methods)} models x 16 sets; "
          f"{EVAL_UNITS:.0f} forward+backward per image: PGD-100, CW-100, AutoAttack)")
    total = sum(plan.train_gpu_hours.values()) + plan.eval_gpu_hours
    print(f"  total           {total:7.1f} GPU-h")


def run(args: argparse.Namespace) -> int:
    known = _train_flags()
    plan = build_plan(args, known)
    _print_plan(plan, args)
    if args.dry_run:
        return 0
    missing = [c[2] for c in plan.commands if c[0] == "train" and not Path(c[2]).is_file()]
    if known is None or missing:
        raise PmgaftError("cannot train: " + (f"training configs missing: {missing} (see --configs)" if missing
                                              else "the training module pmgaft.training is not installed"))
    from pmgaft.cli import main

    failed = []
    for cmd in plan.commands:
        if cmd[0] == "train" and (Path(cmd[4]) / "best.safetensors").is_file():
            print(f"skip training: {cmd[4]}/best.safetensors exists")
            continue
        print("\n$ pmgaft " + " ".join(shlex.quote(c) for c in cmd), flush=True)
        if main(cmd) != 0:
            failed.append(cmd[0] + " " + cmd[-1 if cmd[0] == "report" else 4])
    if failed:
        print("pmgaft reproduce: failed steps: " + "; ".join(failed))
    return 1 if failed else 0
