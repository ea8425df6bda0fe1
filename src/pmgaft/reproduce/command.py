"""``pmgaft reproduce``: train the paper's methods from their configs, evaluate them under a protocol, write the
table. ``--dry-run`` prints the plan and, given ``pmgaft bench`` figures (``--bench``), its cost.

Each method's settings are ``configs/<method>.yaml`` (``--configs``: e.g. ``configs/tga-zsr`` for the table's
runs) resolved over ``--recipe``, built into a :class:`~pmgaft.training.TrainConfig` and trained by
:func:`~pmgaft.training.train`; the checkpoints and the pre-trained model are evaluated by
:func:`~pmgaft.evaluation.run_grid` and reported by :func:`~pmgaft.evaluation.report.write_report` -- the library
calls ``pmgaft train`` / ``eval`` / ``report`` make. A finished run is not retrained, an unfinished one resumes,
and the evaluation reuses finished cells: an interrupted reproduction continues where it stopped.

The cost estimate multiplies image counts by per-image seconds *measured* by ``pmgaft bench`` on the device
that will run the job (:func:`pmgaft.bench.costs.per_image_costs`), never by constants, and each attack's model
passes by what its registry entry says it runs (:attr:`pmgaft.attacks.AttackSpec.passes`): see :func:`estimate`.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pmgaft.attacks import ATTACKS, Passes
from pmgaft.data import DATASETS
from pmgaft.errors import PmgaftError
from pmgaft.evaluation.grid import cells_for
from pmgaft.evaluation.protocols import PROTOCOLS, Protocol
from pmgaft.methods import METHODS

BASE = "clip"  # the pre-trained model, evaluated as is
TRAINED = tuple(name for name, cls in METHODS.items() if cls.trainable)
SURVIVORS = 0.3  # fraction of images a multi-stage attack's later stages still see (an assumption: AutoAttack
#                  runs APGD-T, FAB-T and Square only on the images APGD-CE left robust)


@dataclass
class Plan:
    """What a reproduction runs: one training config per method, the evaluation, and where things go."""

    trainings: dict[str, Any]  # method -> TrainConfig
    protocol: Protocol
    out: Path
    models: list[str] = field(default_factory=list)  # labels, in table order

    @property
    def results(self) -> Path:
        return self.out / "results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=Path, required=True,
                        help="folder holding the configs' training set (TinyImageNet; ImageNet for "
                             "configs/imagenet) and the protocol's test sets (see `pmgaft datasets`)")
    parser.add_argument("--model", default="ViT-B-32", help="open_clip architecture (default: ViT-B-32)")
    parser.add_argument("--pretrained", default="openai",
                        help="open_clip tag or weights file of the starting / reference CLIP (default: openai)")
    parser.add_argument("--methods", nargs="+", choices=[BASE, *TRAINED],
                        default=[BASE, "ft_clean", "tecoa", "fare", "pmg_aft", "tga_zsr"],
                        help="methods to train and evaluate; 'clip' = the pre-trained model as is (default: the "
                             "paper's six; agft: with --configs configs/imagenet)")
    parser.add_argument("--recipe", choices=["paper", "official"], default="paper",
                        help="training recipe: 'paper' (as written) or 'official' (the released PMG_AFT.py) "
                             "(default: paper)")
    parser.add_argument("--configs", type=Path, default=Path("configs"),
                        help="folder of the per-method training configs METHOD.yaml (default: ./configs; the "
                             "table's runs: configs/tga-zsr; ImageNet fine-tuning, agft included: "
                             "configs/imagenet)")
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default="paper",
                        help="evaluation protocol (default: paper; the 16-set table's: tga-zsr; AGFT's: agft)")
    parser.add_argument("--out", type=Path, default=Path("reproduce"),
                        help="output folder: runs/, results/ and report/ go under it (default: ./reproduce)")
    parser.add_argument("--n-samples", type=int,
                        help="evaluate on a class-stratified subset of N images per set (default: every image)")
    parser.add_argument("--bench", type=Path, metavar="JSON",
                        help="`pmgaft bench --json` figures of the GPU that will run this: the cost estimate is "
                             "computed from them")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (and its cost with --bench) only")


def build_plan(args: argparse.Namespace) -> Plan:
    """Every training config resolved (a typo in a config file fails here, before any work) and the protocol."""
    from pmgaft.training import resolve_config

    trainings = {}
    for method in args.methods:
        if method == BASE:
            continue
        path = args.configs / f"{method}.yaml"
        if not path.is_file():
            raise PmgaftError(f"no training config for {method!r}: {path} does not exist (see --configs; "
                              f"configs/tga-zsr has tecoa, tga_zsr and comp_tga, configs/imagenet every method "
                              f"but ft_clean).")
        overrides = {"method": method, "recipe": args.recipe, "model": args.model, "pretrained": args.pretrained,
                     "data_root": str(args.data_root), "out_dir": str(args.out / "runs" / method),
                     "device": args.device}
        trainings[method] = resolve_config(overrides, path)
    protocol = PROTOCOLS[args.protocol]
    if args.n_samples is not None:
        if args.n_samples < 0:
            raise PmgaftError(f"--n-samples must be >= 0 (0 = every image), got {args.n_samples}.")
        protocol = replace(protocol, n_samples=args.n_samples or None, n_samples_per_dataset={})
    return Plan(trainings, protocol, args.out, [m for m in args.methods])


def _images(protocol: Protocol) -> dict[str, int]:
    counts = {}
    for name in protocol.datasets:
        spec = DATASETS.get(name)
        total = spec.size(protocol.split_for(name)) if spec is not None else None
        n = protocol.samples_for(name)
        counts[name] = (min(n, total) if n is not None and total is not None else (n or total or 0))
    return counts


def _training_images(config: Any) -> int | None:
    """The standard image count of a config's training set (None: not a registered set, e.g. ``folder:``)."""
    return DATASETS[config.dataset].size("train") if config.dataset in DATASETS else None


def attack_passes(protocol: Protocol, dataset: str) -> Passes:
    """Model passes per image of every attack cell of ``dataset`` under ``protocol`` (the grid's cells), from each
    attack's registry metadata at the set's class count; a later stage counts for the :data:`SURVIVORS` share."""
    total = Passes()
    for cell in cells_for("m", dataset, protocol):
        spec = ATTACKS[cell.attack]
        if spec.passes is None:
            raise PmgaftError(f"no cost estimate for attack {cell.attack!r}: its registry entry (pmgaft.attacks."
                              f"ATTACKS) does not say how many model passes it runs (AttackSpec.passes); drop "
                              f"--bench or the attack.")
        for k, stage in enumerate(spec.passes(cell.steps, DATASETS[dataset].num_classes)):
            total = total + (stage if k == 0 else SURVIVORS * stage)
    return total


def estimate(plan: Plan, costs: Any) -> dict[str, Any]:
    """GPU-hours from measured per-image seconds (``costs``: :class:`pmgaft.bench.costs.PerImageCosts`).

    Training: the method's measured seconds per training image x the images of its config's training set x
    epochs. Evaluation, per model and image: one clean forward, then for every attack cell the passes its registry
    entry gives (:func:`attack_passes`) -- gradient passes at the measured PGD step, forward passes at the measured
    clean forward. PGD/CW count every step (with worst-case scoring, early exit stops at the first misclassified
    iterate); AutoAttack's later stages count on the :data:`SURVIVORS` share of the images.
    """
    train = {}
    for method, config in plan.trainings.items():
        if method not in costs.train_step:
            raise PmgaftError(f"the bench figures hold no training step for {method!r}: rerun `pmgaft bench` with "
                              f"--method {method}.")
        images = _training_images(config)
        if images is None:
            raise PmgaftError(f"no cost estimate for training {method!r}: its training set {config.dataset!r} has no "
                              f"standard image count (a registered dataset has one); drop --bench.")
        train[method] = costs.train_step[method] * images * config.epochs / 3600
    counts = _images(plan.protocol)
    seconds = 0.0
    for dataset, images in counts.items():
        passes = attack_passes(plan.protocol, dataset)
        seconds += images * (costs.clean_forward + passes.gradients * costs.pgd_step
                             + passes.forwards * costs.clean_forward)
    return {"train_hours": train, "eval_hours": len(plan.models) * seconds / 3600, "images": sum(counts.values()),
            "source": costs.source}


def _print_plan(plan: Plan, cost: dict[str, Any] | None, args: argparse.Namespace) -> None:
    print(f"pmgaft reproduce: {len(plan.trainings)} training run(s), {len(plan.models)} model(s) evaluated with "
          f"--protocol {plan.protocol.name} -> {plan.out}")
    for method, config in plan.trainings.items():
        size = _training_images(config)
        print(f"  train {method:<9} {args.configs / (method + '.yaml')} (recipe {config.recipe}, lr {config.lr:g}, "
              f"batch {config.batch_size}, {config.epochs} epochs) on {config.dataset}"
              f"{f' ({size:,} images)' if size else ''} -> {config.out_dir}")
    counts = _images(plan.protocol)
    print(f"  evaluate {', '.join(plan.models)} on {len(counts)} sets ({sum(counts.values()):,} images per model), "
          f"attacks {', '.join(plan.protocol.attacks)} at eps {', '.join(f'{e:g}' for e in plan.protocol.eps)}/255")
    print(f"  report -> {plan.out / 'report'}")
    if cost is None:
        print("\nno cost estimate: measure the GPU that will run this with `pmgaft bench --model "
              f"{args.model} --device cuda --json bench.json` and pass --bench bench.json")
        return
    src = cost["source"]
    print(f"\nestimated cost, from pmgaft bench figures ({args.bench}: {src.get('model')} on {src.get('device')}, "
          f"batch {src.get('batch_size')}, {src.get('precision')}):")
    for method, hours in cost["train_hours"].items():
        print(f"  train {method:<9} {hours:8.2f} GPU-h")
    print(f"  evaluate        {cost['eval_hours']:8.2f} GPU-h (AutoAttack's later stages on {SURVIVORS:.0%} of the "
          f"images; worst-case scoring's early exit cuts PGD)")
    print(f"  total           {sum(cost['train_hours'].values()) + cost['eval_hours']:8.2f} GPU-h")


def run(args: argparse.Namespace) -> int:
    plan = build_plan(args)
    cost = None
    if args.bench is not None:
        from pmgaft.bench.costs import per_image_costs

        cost = estimate(plan, per_image_costs(args.bench))
    _print_plan(plan, cost, args)
    if args.dry_run:
        return 0
    return execute(plan, args)


def execute(plan: Plan, args: argparse.Namespace) -> int:
    """Train what is not trained yet, evaluate every model, write the report; 1 when a cell failed."""
    from pmgaft.evaluation.grid import GridConfig, run_grid
    from pmgaft.evaluation.models import model_specs
    from pmgaft.evaluation.report import write_report
    from pmgaft.training import train

    checkpoints = []
    for method, config in plan.trainings.items():
        run_dir = Path(config.out_dir)
        if (run_dir / "summary.json").is_file() and (run_dir / "best.safetensors").is_file():
            print(f"\nskip training {method}: {run_dir} is finished")
        else:
            print(f"\ntraining {method} -> {run_dir}", flush=True)
            train(replace(config, resume=run_dir.exists()))
        checkpoints.append(f"{method}={run_dir / 'best.safetensors'}")
    base = args.pretrained if BASE in plan.models else None
    specs = model_specs(args.model, base, checkpoints, BASE if base else None)
    cfg = GridConfig(plan.protocol, out=plan.results, data_root=args.data_root, device=args.device,
                     skip_existing=True)
    cards = run_grid(specs, cfg, log=lambda line: print(line, flush=True))
    write_report(plan.results, plan.out / "report")
    failed = [c for c in cards if "error" in c]
    print(f"\npmgaft reproduce: {len(cards) - len(failed)} cell(s) done, {len(failed)} failed; table in "
          f"{plan.out / 'report' / 'report.md'}")
    return 1 if failed else 0
