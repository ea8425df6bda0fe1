"""``pmgaft eval``: the evaluation grid from the command line (see :func:`pmgaft.evaluation.run_grid`).

eps and step sizes are given in 1/255 units and converted once, in the grid. A protocol preset
(``--protocol``) fills every setting; each flag given explicitly overrides it. ``--dry-run`` prints what the
protocol scores per dataset (split, image count, preprocessing, prompts) and exits; with ``--defence``, also the
defended cells and the defence's settings (and, like the run, a refusal of attacks the defence cannot wrap).
"""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import replace
from pathlib import Path

from pmgaft.attacks import ATTACKS, SCORINGS
from pmgaft.attacks.pgd import REDUCTIONS
from pmgaft.cli_args import parse_logit_scale
from pmgaft.data import SOURCES, TRANSFORM_PRESETS
from pmgaft.data.sources import DEFAULT_SOURCE
from pmgaft.errors import PmgaftError
from pmgaft.evaluation import defence_args
from pmgaft.evaluation.defended import unwrappable_attack
from pmgaft.evaluation.grid import PRECISIONS, GridConfig, run_grid
from pmgaft.evaluation.models import model_specs
from pmgaft.evaluation.protocols import PROTOCOLS, Protocol
from pmgaft.models import NORMALIZATIONS
from pmgaft.prompts import PROMPT_STYLES
from pmgaft.utils import lookup, resolve_device

_EVAL_TRANSFORMS = [t for t in TRANSFORM_PRESETS if not t.startswith("train")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    m = parser.add_argument_group("models")
    m.add_argument("--model", help="open_clip architecture (e.g. ViT-B-32), also of checkpoints without pmgaft "
                                   "metadata; or a hub model with its weights: hf-hub:ORG/NAME, local-dir:PATH, or a "
                                   "name from `pmgaft models` (e.g. fare4-clip)")
    m.add_argument("--pretrained", help="open_clip tag (openai) or weights file for --model; also the base weights "
                                        "(text tower) of image-tower-only checkpoints (FARE, TeCoA/PMG-AFT/TGA-ZSR "
                                        "releases); omitted with --checkpoint: only the checkpoints are evaluated")
    m.add_argument("--label", help="label of the --model entry in the results (default: MODEL_PRETRAINED)")
    m.add_argument("--checkpoint", action="append", default=[], metavar="[LABEL=]PATH",
                   help="a fine-tuned checkpoint to evaluate, e.g. pmgaft=runs/pmg_aft/best.safetensors, or a hub "
                        "model, e.g. fare=fare4-clip (repeatable)")
    m.add_argument("--quick-gelu", action=argparse.BooleanOptionalAction, default=None,
                   help="force QuickGELU (OpenAI CLIP's activation) on or off; default: what each model's weights "
                        "were trained with (a warning says which when a file cannot tell)")
    m.add_argument("--trust-checkpoint", action="store_true",
                   help="allow checkpoints that need more than torch.load(weights_only=True): they can execute code")
    g = parser.add_argument_group("grid (defaults from --protocol)")
    g.add_argument("--protocol", default="paper", choices=list(PROTOCOLS),
                   help="evaluation preset (default: paper). " + " ".join(
                       f"{name} = {p.description}." for name, p in PROTOCOLS.items()))
    g.add_argument("--datasets", nargs="+", metavar="NAME",
                   help="registered names or folder:PATH (default: the 16 paper sets; `pmgaft datasets` lists them)")
    g.add_argument("--attacks", nargs="+", choices=list(ATTACKS),
                   help="; ".join(f"{n}: {s.description}" for n, s in ATTACKS.items()) + " (default: the protocol's)")
    g.add_argument("--eps", nargs="+", type=float, metavar="K", help="L-inf radii in 1/255 units, e.g. 1 2 4 "
                                                                   "(default: 1; fare: 2 4)")
    g.add_argument("--steps", nargs="+", type=int, help="attack steps for pgd/cw, several = one cell each "
                                                        "(default: 100; official-code, ttc: 10; agft: 20)")
    g.add_argument("--step-size", type=float, metavar="K", help="PGD/CW step size in 1/255 units (default: 1)")
    g.add_argument("--n-samples", type=int, metavar="N",
                   help="class-stratified seeded subset of N images per dataset, 0 = every image of the split "
                        "(default: every image; fare 1000, ImageNet 5000)")
    g.add_argument("--prompts", choices=list(PROMPT_STYLES),
                   help="paper = the reference codes' one prompt per class, ensemble = CLIP_benchmark templates, "
                        "agft / ttc = those evaluations' own prompts (default: paper; fare: ensemble; agft: agft; "
                        "ttc: ttc)")
    g.add_argument("--transform", choices=_EVAL_TRANSFORMS,
                   help="preprocessing before the attack: tga-zsr = every image at the model's input size "
                        "(Resize((S,S)) for small sets, Resize+CenterCrop otherwise); official = CIFAR/STL native, "
                        "Resize(256)+CenterCrop(224) otherwise; agft = CIFAR/STL native, Resize(224)+CenterCrop(224) "
                        "otherwise; ttc = Resize(256)+CenterCrop(224) for every set; clip = small sets native, CLIP's "
                        "bicubic resize otherwise (default: tga-zsr; official-code: official; fare: clip; agft: "
                        "agft; ttc: ttc)")
    g.add_argument("--normalization", choices=list(NORMALIZATIONS),
                   help="input mean/std for every model (default: each model's own, clip when unrecorded; tga-zsr, "
                        "agft, ttc: clip; official-code: imagenet)")
    g.add_argument("--logit-scale", type=parse_logit_scale,
                   help="logits = SCALE x cosine for every model: 'model' (100 for OpenAI CLIP) or a number, 1 = raw "
                        "cosine (default: each model's own; tga-zsr, agft, ttc: 100; official-code: 1)")
    g.add_argument("--scoring", choices=SCORINGS,
                   help="worst = robust only if clean-correct and correct at every iterate (PGD stops at the first "
                        "miss); final = the final iterate of every image, as the reference codes (default: paper "
                        "worst; tga-zsr, official-code, agft and ttc final)")
    g.add_argument("--attack-reduction", choices=REDUCTIONS,
                   help="PGD objective over a batch: sum (per-sample gradients, pmgaft) or mean (the released codes' "
                        "arithmetic, weaker under fp16) (default: sum)")
    g.add_argument("--cw-kappa", type=float, metavar="K",
                   help="cap the CW margin at K (the attack stops pushing a sample once its best wrong logit leads "
                        "by K): 0 = AGFT's CW, 50 = TTC's (default: uncapped; agft: 0; ttc: 50)")
    g.add_argument("--split", help="dataset split for every set (default: whole SUN397/EuroSAT/Caltech, test "
                                   "elsewhere; fare: test)")
    g.add_argument("--seed", type=int, help="seed of the subset and the attacks' random starts (default: 0)")
    defence_args.add_arguments(parser)
    r = parser.add_argument_group("running")
    r.add_argument("--out", "--results", dest="out", type=Path, default=Path("results"),
                   help="results directory (default: ./results)")
    r.add_argument("--data-root", type=Path, default=Path("data"), help="folder holding the datasets (default: ./data)")
    r.add_argument("--download", action="store_true",
                   help="download datasets torchvision can fetch (--source hub: their Hugging Face hub copies)")
    r.add_argument("--source", choices=SOURCES, default=DEFAULT_SOURCE,
                   help="which copy of each dataset: torchvision = the layout under --data-root; hub = the Hugging "
                        "Face hub copy in the Hugging Face cache (HF_HUB_CACHE; `pmgaft datasets --download NAME "
                        "--source hub`); auto = torchvision where present, else a cached hub copy. A protocol "
                        "refuses a hub copy holding other images than it scores (VTAB EuroSAT, Caltech-101) except "
                        "fare, which scores CLIP_benchmark's sets (default: torchvision)")
    r.add_argument("--batch-size", type=int, default=256,
                   help="images per forward/attack batch; results do not depend on it (default: 256)")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    r.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="bf16/fp16: autocast forward passes on CUDA, attack gradients stay fp32 (default: fp32)")
    r.add_argument("--workers", type=int, default=0, help="data-decoding worker processes (default: 0)")
    r.add_argument("--compile", nargs="?", const="inductor", metavar="BACKEND",
                   help="torch.compile the classifier (default backend: inductor; worth it for long GPU runs, "
                        "costs a compile per model)")
    r.add_argument("--skip-existing", action="store_true", help="resume: reuse finished cells and clean passes")
    r.add_argument("--no-early-exit", action="store_true",
                   help="attack every sample for all steps even under worst-case scoring (same result, more work; "
                        "records both scorings)")
    r.add_argument("--skip-corrupt", action="store_true",
                   help="skip unreadable images (counted, first paths listed in the card) instead of failing")
    r.add_argument("--allow-missing", action="store_true",
                   help="datasets missing under --data-root get error cards instead of stopping the run")
    r.add_argument("--decoded-cache", choices=["auto", "memory", "disk"], default="auto",
                   help="where decoded images live: memory when they fit, else a memory-mapped file under "
                        "$PMGAFT_CACHE/decoded (default: auto)")
    r.add_argument("--dist-timeout", type=float, default=1800.0, metavar="S",
                   help="under torchrun: seconds a rank waits for the others before giving up (default: 1800)")
    r.add_argument("--dry-run", action="store_true",
                   help="print what the protocol scores per dataset (split, images, preprocessing, prompts) and exit")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")


def resolve_protocol(args: argparse.Namespace) -> Protocol:
    """The preset with every explicitly given flag applied, validated."""
    base: Protocol = lookup(PROTOCOLS, args.protocol, "protocol")
    p = base.override(datasets=tuple(args.datasets) if args.datasets else None,
                      attacks=tuple(dict.fromkeys(args.attacks)) if args.attacks else None,
                      eps=tuple(dict.fromkeys(args.eps)) if args.eps else None,
                      steps=tuple(dict.fromkeys(args.steps)) if args.steps else None, step_size=args.step_size,
                      prompts=args.prompts, transform=args.transform, normalization=args.normalization,
                      logit_scale=args.logit_scale, split=args.split, seed=args.seed, scoring=args.scoring,
                      attack_reduction=args.attack_reduction, cw_kappa=args.cw_kappa)
    if args.n_samples is not None:
        if args.n_samples < 0:
            raise PmgaftError(f"--n-samples must be >= 0 (0 = every image of the split), got {args.n_samples}.")
        p = replace(p, n_samples=args.n_samples or None, n_samples_per_dataset={})
    bad = [e for e in p.eps if not (0 <= e <= 255)]  # also NaN
    if bad:
        raise PmgaftError(f"--eps is in 1/255 units and must be in [0, 255], got {bad} (for eps = 4/255 pass 4).")
    if not (0 < p.step_size <= 255):
        raise PmgaftError(f"--step-size is in 1/255 units and must be in (0, 255], got {p.step_size}.")
    if any(s < 1 for s in p.steps):
        raise PmgaftError(f"--steps must be >= 1, got {list(p.steps)}.")
    if p.cw_kappa is not None and not (math.isfinite(p.cw_kappa) and p.cw_kappa >= 0):
        raise PmgaftError(f"--cw-kappa is a margin in logit units and must be a finite number >= 0, got "
                          f"{p.cw_kappa} (AGFT's CW uses 0, TTC's 50).")
    if p.logit_scale not in (None, "model") and not math.isfinite(float(p.logit_scale)):
        raise PmgaftError(f"--logit-scale must be finite, got {p.logit_scale}.")
    return p


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise PmgaftError(f"--batch-size must be >= 1, got {args.batch_size}.")
    if args.workers < 0:
        raise PmgaftError(f"--workers must be >= 0 (0: decode in the main process), got {args.workers}.")
    if not args.dist_timeout > 0:
        raise PmgaftError(f"--dist-timeout must be > 0 seconds, got {args.dist_timeout}.")
    protocol = resolve_protocol(args)
    defence = defence_args.resolve_defence(args)
    if args.dry_run:
        from pmgaft.evaluation.dryrun import print_plan

        print_plan(protocol, model=args.model, data_root=args.data_root, source=args.source, defence=defence)
        refusal = unwrappable_attack(protocol, defence)
        if refusal:  # the run itself would stop here, before any work
            raise PmgaftError(f"{refusal}.")
        return 0
    resolve_device(args.device)  # malformed or unavailable: a PmgaftError before any work
    specs = model_specs(args.model, args.pretrained, args.checkpoint, args.label, quick_gelu=args.quick_gelu,
                        trust_checkpoint=args.trust_checkpoint)
    cfg = GridConfig(protocol=protocol, out=args.out, data_root=args.data_root, batch_size=args.batch_size,
                     device=args.device, precision=args.precision, skip_existing=args.skip_existing,
                     workers=args.workers, download=args.download, progress=not args.no_progress,
                     early_exit=not args.no_early_exit, skip_corrupt=args.skip_corrupt,
                     allow_missing=args.allow_missing, trust_checkpoint=args.trust_checkpoint,
                     decoded_storage=args.decoded_cache, dist_timeout_s=args.dist_timeout, compile=args.compile,
                     source=args.source, defence=defence)
    print(f"pmgaft eval: {len(specs)} model(s) x {len(protocol.datasets)} dataset(s); protocol {protocol.name}; "
          f"attacks {', '.join(protocol.attacks)}; eps {', '.join(f'{e:g}' for e in protocol.eps)}/255"
          f"{f'; defence {defence.name}, non-adaptive and adaptive' if defence else ''} -> {args.out}", flush=True)
    cards = run_grid(specs, cfg, log=lambda line: print(line, flush=True))
    failed = [c for c in cards if "error" in c]
    done = len(cards) - len(failed)
    skipped = sum(bool(c.get("_skipped")) for c in cards)
    if int(os.environ.get("RANK", "0")) != 0:
        return 1 if failed else 0
    print(f"pmgaft eval: {done} cell(s) finished ({skipped} reused), {len(failed)} failed; results in {args.out}")
    by_reason: dict[tuple[str, str, str], list[str]] = {}
    for c in failed:
        key = (c["model"]["label"], c["dataset"]["name"], c["error"].splitlines()[0][:300])
        by_reason.setdefault(key, []).append(f"{c['attack']['id']}@{c['attack']['eps_255']:g}")
    for (label, dataset, reason), which in by_reason.items():
        print(f"  FAILED {label} / {dataset} [{', '.join(which)}]: {reason}")
    return 1 if failed else 0
