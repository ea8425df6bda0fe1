"""Throughput of the evaluation path on pmgaft-tiny: clean zero-shot inference and PGD-10 (images/s).

    .venv/bin/python benchmarks/eval_attack.py [--device cpu|cuda] [--batch-size 32] [--batches 3]

Random images at the model's input size, 10 classes, one template; fp32. PGD-10 counts attacked images/s
(10 forward+backward passes each, fp32 gradient of the summed loss, as ``pmgaft eval`` runs it).
"""
from __future__ import annotations

import argparse
import time

import torch

from pmgaft.attacks import pgd
from pmgaft.models import ZeroShotClassifier, load_clip
from pmgaft.utils import resolve_device


def _rate(fn, n_images: int, batches: int) -> float:
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(batches):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return n_images * batches / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="pmgaft-tiny")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--batches", type=int, default=3)
    args = ap.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    loaded = load_clip(args.model, device=device)
    clf = ZeroShotClassifier.build(loaded.model, loaded.tokenizer, [str(i) for i in range(10)], ["a photo of {}"],
                                   cache=False).to(device).eval().requires_grad_(False)
    x = torch.rand(args.batch_size, 3, loaded.image_size, loaded.image_size, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)

    def clean() -> None:
        with torch.no_grad():
            clf(x).argmax(1)

    def attack() -> None:
        pgd(clf, x, y, eps=1 / 255, step_size=1 / 255, steps=10)

    print(f"{args.model} ({loaded.image_size}px) on {device}, batch {args.batch_size}, "
          f"threads {torch.get_num_threads()}")
    print(f"clean eval: {_rate(clean, args.batch_size, args.batches):8.1f} images/s")
    print(f"PGD-10:     {_rate(attack, args.batch_size, args.batches):8.1f} images/s")


if __name__ == "__main__":
    main()
