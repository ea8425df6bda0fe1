"""Training-step throughput per method: images/s and ms/step on pmgaft-tiny (or any open_clip model).

    python benchmarks/train_step.py                      # CPU, pmgaft-tiny, batch 32, 224 px inputs
    python benchmarks/train_step.py --device cuda --model ViT-B-32 --batch-size 128 --precision bf16

Each step is the real one (:func:`pmgaft.training.step.train_step`): PGD-2 attack + loss + backward + SGD.
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

from pmgaft.methods import METHODS, AttackSettings
from pmgaft.models import ZeroShotClassifier, load_clip
from pmgaft.training.distributed import Dist
from pmgaft.training.step import StepContext, train_step
from pmgaft.utils import resolve_device


def bench(method_name: str, args: argparse.Namespace, device: torch.device) -> tuple[float, float]:
    torch.manual_seed(0)
    loaded = load_clip(args.model, None, device=device)
    classes = [f"class {i}" for i in range(args.classes)]
    target = ZeroShotClassifier.build(loaded.model, loaded.tokenizer, classes, ["This is a photo of a {}"],
                                      cache=False)
    method = METHODS[method_name]()
    original = None
    if method.needs_original:
        frozen = copy.deepcopy(loaded.model).eval().requires_grad_(False)
        original = ZeroShotClassifier(frozen, target.text_embeddings, image_size=target.image_size).eval()
    target.requires_grad_(False)
    target.clip.visual.requires_grad_(True)
    target.train()
    optimizer = torch.optim.SGD(target.clip.visual.parameters(), lr=1e-5, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    dtype = dtype if device.type == "cuda" else None
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    ctx = StepContext(method, target, original, target.clip.visual, optimizer, scheduler, scaler, AttackSettings(),
                      device, dtype, 0, Dist())
    x = torch.rand(args.batch_size, 3, args.image_size, args.image_size)
    y = torch.randint(0, args.classes, (args.batch_size,))
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        train_step(ctx, step, [(x, y, torch.arange(len(y)))])  # (images, labels, dataset positions)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    return args.batch_size / seconds, 1000 * seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pmgaft-tiny")
    parser.add_argument("--methods", nargs="+", default=["ft_clean", "tecoa", "pmg_aft", "fare", "tga_zsr"],
                        choices=[m for m, c in METHODS.items() if c.trainable])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224, help="input size (the model resizes inside)")
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"model {args.model}, batch {args.batch_size}, {args.image_size} px, device {device}, "
          f"threads {torch.get_num_threads()}")
    bench(args.methods[0], argparse.Namespace(**{**vars(args), "steps": 1, "warmup": 1}), device)  # one-off init
    print(f"{'method':<10} {'images/s':>10} {'ms/step':>10}")
    for name in args.methods:
        rate, ms = bench(name, args, device)
        print(f"{name:<10} {rate:>10.1f} {ms:>10.1f}")


if __name__ == "__main__":
    main()
