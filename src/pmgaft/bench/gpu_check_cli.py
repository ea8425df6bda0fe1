"""``pmgaft gpu-check`` (``make gpu-check``): the GPU-specific paths in one run; see :mod:`pmgaft.bench.gpu_check`.

    pmgaft gpu-check                       # on a machine with a CUDA GPU: one table, gpu-check.json
    pmgaft gpu-check --device cpu --model pmgaft-micro --batch-size 8 --check-batch 8   # the check itself, on a CPU
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from pmgaft.bench.gpu_check import CHECKS, GpuCheckConfig, check_config, format_rows, run_gpu_check
from pmgaft.errors import PmgaftError
from pmgaft.evaluation.preflight import check_writable
from pmgaft.utils import atomic_write_json, resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = GpuCheckConfig()
    parser.add_argument("--model", default=d.model, help=f"open_clip architecture, random init (default: {d.model})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size,
                        help=f"images per step of the bench (default: {d.batch_size})")
    parser.add_argument("--check-batch", type=int, default=d.check_batch,
                        help=f"images of the bf16/fp32 and compile comparisons (default: {d.check_batch})")
    parser.add_argument("--classes", type=int, default=d.classes, help=f"zero-shot classes (default: {d.classes})")
    parser.add_argument("--device", default="auto",
                        help="auto or cuda[:N] (default: auto; without CUDA the check says so and exits 0); cpu runs "
                             "the check on the CPU anyway (how its tests run it; the bench then runs in fp32)")
    parser.add_argument("--compile-backend", default=d.compile_backend,
                        help=f"torch.compile backend of the compile check (default: {d.compile_backend})")
    parser.add_argument("--nproc", type=int, default=d.nproc,
                        help=f"torchrun processes of the smoke run, one GPU each: at most the GPUs here (default: "
                             f"{d.nproc})")
    parser.add_argument("--only", nargs="+", choices=list(CHECKS), metavar="CHECK",
                        help=f"run only these checks: {', '.join(CHECKS)} (default: all)")
    parser.add_argument("--json", type=Path, default=Path("gpu-check.json"), metavar="PATH",
                        help="where to write the results (default: gpu-check.json)")


def run(args: argparse.Namespace) -> int:
    config = GpuCheckConfig(model=args.model, device=args.device, batch_size=args.batch_size,
                            check_batch=args.check_batch, classes=args.classes, compile_backend=args.compile_backend,
                            nproc=args.nproc, checks=tuple(args.only or ()))
    check_config(config)
    if args.json.is_dir():
        raise PmgaftError(f"--json {args.json} is a folder; give a file path such as {args.json / 'gpu-check.json'}.")
    if args.device == "auto" and not torch.cuda.is_available():
        print(f"pmgaft gpu-check: no CUDA GPU here (torch {torch.__version__}); nothing to check -- run it on a "
              f"machine with one (--device cpu runs it on the CPU anyway).")
        return 0
    device = resolve_device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    config = replace(config, device=str(device))
    check_config(config)  # --nproc against this machine's GPUs
    problem = check_writable(args.json.resolve().parent, what="--json folder", flag="--json")
    if problem:  # refused before minutes of checks, not at the end
        raise PmgaftError(f"{problem}.")
    doc = run_gpu_check(config, echo=lambda line: print(line, flush=True))
    print(format_rows(doc["rows"]))
    atomic_write_json(args.json, doc)
    print(f"pmgaft gpu-check: {'all checks agree' if doc['ok'] else 'SOME CHECKS FAILED'}; wrote {args.json}")
    return 0 if doc["ok"] else 1
