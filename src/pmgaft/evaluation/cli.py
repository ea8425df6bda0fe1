"""``pmgaft eval``: the evaluation grid from the command line (see :func:`pmgaft.evaluation.run_grid`).

eps and step sizes are given in 1/255 units and converted once, in the grid. A protocol preset
(``--protocol``) fills every setting; each flag given explicitly overrides it.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from pmgaft.attacks import ATTACKS
from pmgaft.cli_args import parse_logit_scale
from pmgaft.errors import PmgaftError
from pmgaft.evaluation.grid import PRECISIONS, GridConfig, run_grid
from pmgaft.evaluation.models import model_specs
from pmgaft.evaluation.protocols import PROTOCOLS, Protocol
from pmgaft.models import NORMALIZATIONS
from pmgaft.prompts import PROMPT_STYLES
from pmgaft.utils import lookup, resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    m = parser.add_argument_group("models")
    m.add_argument("--model", help="open_clip architecture (e.g. ViT-B-32); also the architecture of checkpoints "
                                   "without pmgaft metadata")
    m.add_argument("--pretrained", help="open_clip tag (openai) or weights file for --model; omitted with "
                                        "--checkpoint: only the checkpoints are evaluated")
    m.add_argument("--label", help="label of the --model entry in the results (default: MODEL_PRETRAINED)")
    m.add_argument("--checkpoint", action="append", default=[], metavar="[LABEL=]PATH",
                   help="a fine-tuned checkpoint to evaluate, e.g. pmgaft=runs/pmg_aft/best.safetensors (repeatable)")
    g = parser.add_argument_group("grid (defaults from --protocol)")
    g.add_argument("--protocol", default="paper", choices=list(PROTOCOLS),
                   help="evaluation preset: paper = PGD-100, CW-100, AutoAttack at 1/255 on full test sets; "
                        "official-code = the released code's PGD-10; fare = AutoAttack at 2 and 4/255 on 1000 "
                        "images per set (default: paper)")
    g.add_argument("--datasets", nargs="+", metavar="NAME",
                   help="registered names or folder:PATH (default: the 16 paper sets; `pmgaft datasets` lists them)")
    g.add_argument("--attacks", nargs="+", choices=list(ATTACKS),
                   help="pgd (CE), cw (PGD on the margin loss), autoattack (standard), none (clean only) "
                        "(default: paper: pgd cw autoattack)")
    g.add_argument("--eps", nargs="+", type=float, metavar="K", help="L-inf radii in 1/255 units, e.g. 1 2 4 (default: paper 1, fare 2 4)")
    g.add_argument("--steps", nargs="+", type=int, help="attack steps for pgd/cw, several = one cell each (default: paper 100, official-code 10)")
    g.add_argument("--step-size", type=float, metavar="K", help="PGD/CW step size in 1/255 units (default: 1)")
    g.add_argument("--n-samples", type=int, metavar="N",
                   help="class-stratified seeded subset of N test images per dataset, 0 = full test set "
                        "(default: paper full; fare 1000, ImageNet 5000)")
    g.add_argument("--prompts", choices=list(PROMPT_STYLES),
                   help="paper = one prompt per class as the released code, ensemble = CLIP_benchmark templates "
                        "(default: paper; fare: ensemble)")
    g.add_argument("--transform", choices=["clip", "official"],
                   help="image preprocessing preset: clip = Resize(224, bicubic)+CenterCrop, small sets at native "
                        "size; official = the released code's Resize(256)+CenterCrop(224) (default: clip)")
    g.add_argument("--normalization", choices=list(NORMALIZATIONS),
                   help="input mean/std applied inside the model (default: clip; official-code: imagenet)")
    g.add_argument("--logit-scale", type=parse_logit_scale, help="logits = SCALE x cosine: 'model' (100 for OpenAI CLIP) or a number, 1 = raw cosine "
                        "(default: model; official-code: 1)")
    g.add_argument("--split", help="dataset split (default: test)")
    g.add_argument("--seed", type=int, help="seed of the subset and the attacks' random starts (default: 0)")
    r = parser.add_argument_group("running")
    r.add_argument("--out", "--results", dest="out", type=Path, default=Path("results"),
                   help="results directory (default: ./results)")
    r.add_argument("--data-root", type=Path, default=Path("data"), help="folder holding the datasets (default: ./data)")
    r.add_argument("--download", action="store_true", help="download datasets torchvision can fetch")
    r.add_argument("--batch-size", type=int, default=64, help="images per forward/attack batch (default: 64)")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    r.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="bf16: autocast forward passes on CUDA (attack gradients stay fp32)")
    r.add_argument("--workers", type=int, default=0, help="data-loading worker processes (default: 0)")
    r.add_argument("--skip-existing", action="store_true", help="resume: reuse finished cells and clean passes")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")


def resolve_protocol(args: argparse.Namespace) -> Protocol:
    """The preset with every explicitly given flag applied, validated."""
    base: Protocol = lookup(PROTOCOLS, args.protocol, "protocol")
    n = args.n_samples
    p = base.override(datasets=tuple(args.datasets) if args.datasets else None,
                      attacks=tuple(dict.fromkeys(args.attacks)) if args.attacks else None,
                      eps=tuple(dict.fromkeys(args.eps)) if args.eps else None,
                      steps=tuple(dict.fromkeys(args.steps)) if args.steps else None, step_size=args.step_size,
                      prompts=args.prompts, transform=args.transform, normalization=args.normalization,
                      logit_scale=args.logit_scale, split=args.split, seed=args.seed)
    if n is not None:
        if n < 0:
            raise PmgaftError(f"--n-samples must be >= 0 (0 = full test set), got {n}.")
        p = replace(p, n_samples=n or None, n_samples_per_dataset={})  # 0: the full test sets
    bad = [e for e in p.eps if not 0 <= e <= 255]
    if bad:
        raise PmgaftError(f"--eps is in 1/255 units and must be in [0, 255], got {bad} (for eps = 4/255 pass 4).")
    if not 0 < p.step_size <= 255:
        raise PmgaftError(f"--step-size is in 1/255 units and must be in (0, 255], got {p.step_size}.")
    if any(s < 1 for s in p.steps):
        raise PmgaftError(f"--steps must be >= 1, got {list(p.steps)}.")
    return p


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise PmgaftError(f"--batch-size must be >= 1, got {args.batch_size}.")
    if args.workers < 0:
        raise PmgaftError(f"--workers must be >= 0 (0: load data in the main process), got {args.workers}.")
    resolve_device(args.device)  # malformed or unavailable: a PmgaftError before any work
    protocol = resolve_protocol(args)
    specs = model_specs(args.model, args.pretrained, args.checkpoint, args.label)
    cfg = GridConfig(protocol=protocol, out=args.out, data_root=args.data_root, batch_size=args.batch_size,
                     device=args.device, precision=args.precision, skip_existing=args.skip_existing,
                     workers=args.workers, download=args.download, progress=not args.no_progress,
                     extra={"protocol_name": args.protocol})
    print(f"pmgaft eval: {len(specs)} model(s) x {len(protocol.datasets)} dataset(s); attacks "
          f"{', '.join(protocol.attacks)}; eps {', '.join(f'{e:g}' for e in protocol.eps)}/255 -> {args.out}",
          flush=True)
    cards = run_grid(specs, cfg, log=lambda line: print(line, flush=True))
    failed = [c for c in cards if "error" in c]
    done = len(cards) - len(failed)
    skipped = sum(bool(c.get("_skipped")) for c in cards)
    print(f"pmgaft eval: {done} cell(s) finished ({skipped} reused), {len(failed)} failed; results in {args.out}")
    by_reason: dict[tuple[str, str, str], list[str]] = {}
    for c in failed:
        key = (c["model"]["label"], c["dataset"]["name"], c["error"].splitlines()[0][:300])
        by_reason.setdefault(key, []).append(f"{c['attack']['id']}@{c['attack']['eps_255']:g}")
    for (label, dataset, reason), which in by_reason.items():
        print(f"  FAILED {label} / {dataset} [{', '.join(which)}]: {reason}")
    return 1 if failed else 0
