"""``pmgaft bench``: time training steps, PGD, clean inference and data loading; print a table, write JSON.

    pmgaft bench --model ViT-B-32 --method pmg_aft tecoa --batch-size 32 --device cpu --json bench.json
    pmgaft bench --what data --dataset folder:/data/jpegs --workers 4
    pmgaft bench --what data --dataset imagenet --data-root DATA --data-split train --data-transform train224 \
                 --workers 0 2 4 8                                  # images/s per loader worker, ImageNet train
    pmgaft bench --model ViT-B-32 --method pmg_aft --variant stock_kernels --profile prof/
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from pmgaft.bench.harness import PRECISIONS
from pmgaft.bench.runner import WHAT, BenchConfig, run_bench
from pmgaft.bench.train import TRAINABLE
from pmgaft.bench.variants import VARIANTS
from pmgaft.data.transforms import PRESETS as TRANSFORM_PRESETS
from pmgaft.utils import atomic_write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = BenchConfig()
    parser.add_argument("--model", default=d.model, help=f"open_clip architecture, random init (default: {d.model}); "
                        f"or a hub model (hf-hub:ORG/NAME, local-dir:PATH, a name from `pmgaft models`) with its "
                        f"weights")
    parser.add_argument("--method", nargs="+", choices=TRAINABLE, default=list(TRAINABLE), metavar="METHOD",
                        help=f"training methods to time: {', '.join(TRAINABLE)} (default: all)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"images per step (default: "
                        f"{d.batch_size})")
    parser.add_argument("--steps", type=int, default=d.steps,
                        help=f"attack steps: the train-time PGD and the PGD-k batch (default: {d.steps})")
    parser.add_argument("--precision", choices=list(PRECISIONS), default=d.precision,
                        help="fp32, or bf16/fp16 autocast on CUDA (default: fp32)")
    parser.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the image towers (compile time is "
                        "reported as warm-up: use --warmup 2 or more, each input shape compiles on its first call; "
                        "the released-recipe reference is skipped)")
    parser.add_argument("--classes", type=int, default=d.classes, help=f"zero-shot classes (default: {d.classes}, "
                        f"TinyImageNet's)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="side of the input images (default: the model's; the classifier resizes inside)")
    parser.add_argument("--repeats", type=int, default=d.repeats, help=f"timed repeats, median reported (default: "
                        f"{d.repeats})")
    parser.add_argument("--warmup", type=int, default=d.warmup, help=f"untimed warm-up calls (default: {d.warmup})")
    parser.add_argument("--what", default=",".join(d.what),
                        help=f"comma list of {', '.join(WHAT)} (default: {','.join(d.what)}; data needs --dataset)")
    parser.add_argument("--no-released", action="store_true",
                        help="skip the released PMG-AFT recipe's arithmetic (measured with pmg_aft by default)")
    parser.add_argument("--variant", nargs="+", choices=list(VARIANTS), default=[], metavar="NAME",
                        help=f"prototype optimizations to apply to our steps: {', '.join(VARIANTS)}")
    parser.add_argument("--dataset", help="dataset for --what data: a registered name or folder:PATH")
    parser.add_argument("--data-root", help="data root holding --dataset")
    parser.add_argument("--workers", type=int, nargs="+", default=[max(1, (os.cpu_count() or 2) - 1)],
                        metavar="N", help="data loader worker counts for --what data, one measurement each with "
                        "images/s per worker (default: cores - 1)")
    parser.add_argument("--data-images", type=int, default=d.data_images,
                        help=f"images read per data-loading repeat, spread over the split (default: "
                             f"{d.data_images})")
    parser.add_argument("--data-split", default=d.data_split,
                        help=f"split read by --what data, e.g. train for a training set (default: {d.data_split})")
    parser.add_argument("--data-transform", choices=list(TRANSFORM_PRESETS), default=d.data_transform,
                        help=f"transform preset of --what data: train224 is AGFT's ImageNet training input, train "
                             f"the TinyImageNet one (default: {d.data_transform}, evaluation's)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--gemm-size", type=int, help="side of the square matmul that measures the GEMM peak "
                        "(default: 2048 on CPU, 8192 on CUDA)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="also profile one call of each measurement and write torch.profiler tables to DIR")
    parser.add_argument("--tensor-memory", action="store_true",
                        help="also replay one training step's tensor lifetimes with the profiler: the peak bytes of "
                             "live tensors (weights, optimizer state, activations), independent of the allocator")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON to PATH")


def run(args: argparse.Namespace) -> int:
    config = BenchConfig(model=args.model, methods=list(args.method), batch_size=args.batch_size, steps=args.steps,
                         precision=args.precision, device=args.device, compile=args.compile, classes=args.classes,
                         input_size=args.image_size, repeats=args.repeats, warmup=args.warmup,
                         what=tuple(w.strip() for w in args.what.split(",") if w.strip()),
                         released=not args.no_released, variants=list(args.variant), dataset=args.dataset,
                         data_root=args.data_root, workers=list(args.workers), data_images=args.data_images,
                         data_split=args.data_split, data_transform=args.data_transform,
                         threads=args.threads, gemm_size=args.gemm_size, profile=args.profile,
                         tensor_memory=args.tensor_memory)
    doc = run_bench(config, echo=lambda line: print(line, flush=True))
    if args.json:
        atomic_write_json(args.json, doc)
        print(f"wrote {args.json}")
    return 0
