"""Training test helpers: a small set in the TinyImageNet layout (3 classes x 6 noisy 16 px images), one in
torchvision's ImageNet layout, the argv of a pmgaft-micro run on it, and runs in forked processes (for kill -9
and signal tests)."""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

WNIDS = ["n01443537", "n01629819", "n02124075"]
NAMES = {"n01443537": "goldfish, Carassius auratus", "n01629819": "European fire salamander",
         "n02124075": "Egyptian cat"}


def tiny_imagenet(root: Path, per_class: int = 6, size: int = 16, classes: int = 3) -> Path:
    """Write ``root/tiny-imagenet-200`` and return ``root`` (the data root)."""
    d = root / "tiny-imagenet-200"
    wnids = WNIDS[:classes]
    (d / "val" / "images").mkdir(parents=True, exist_ok=True)
    (d / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (d / "words.txt").write_text("".join(f"{w}\t{NAMES[w]}\n" for w in WNIDS))
    rng = np.random.default_rng(0)
    lines = []
    for label, wnid in enumerate(wnids):
        base = np.array([60 + 70 * label, 200 - 60 * label, 90 + 40 * (label % 2)], dtype=np.float64)
        for i in range(per_class):
            pixels = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            path = d / "train" / wnid / "images" / f"{wnid}_{i}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path, quality=95)
        Image.fromarray(pixels).save(d / "val" / "images" / f"val_{label}.JPEG", quality=95)
        lines.append(f"val_{label}.JPEG\t{wnid}\t0\t0\t8\t8\n")
    (d / "val" / "val_annotations.txt").write_text("".join(lines))
    return root


def imagenet_train(root: Path, per_class: int = 4, size: int = 20) -> Path:
    """Write ``root/imagenet`` in torchvision's ImageNet layout (meta.bin, train/<wnid>/*.JPEG) for the 3 wnids
    of :data:`WNIDS` and return ``root`` (the data root)."""
    d = root / "imagenet"
    synonyms = {w: tuple(NAMES[w].split(", ")) for w in WNIDS}
    d.mkdir(parents=True, exist_ok=True)
    torch.save((synonyms, []), d / "meta.bin")  # what torchvision's parse_devkit_archive writes
    rng = np.random.default_rng(1)
    for label, wnid in enumerate(WNIDS):
        base = np.array([60 + 70 * label, 200 - 60 * label, 90 + 40 * (label % 2)], dtype=np.float64)
        for i in range(per_class):
            pixels = np.clip(base + rng.normal(0, 25, (size, size + 4, 3)), 0, 255).astype(np.uint8)
            path = d / "train" / wnid / f"{wnid}_{i}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path, quality=95)
    return root


def micro_argv(data_root: Path, out: Path, *extra: str) -> list[str]:
    """``pmgaft train`` on pmgaft-micro and the :func:`tiny_imagenet` fixture (15 training images after 3 are held
    out: 3 steps per epoch at batch 4), CPU, no workers, no progress bar."""
    return ["train", "--model", "pmgaft-micro", "--pretrained", "none", "--dataset", "tinyimagenet",
            "--data-root", str(data_root), "--out-dir", str(out), "--batch-size", "4", "--epochs", "1",
            "--warmup-steps", "1", "--val-size", "3", "--val-attack-steps", "1", "--num-workers", "0",
            "--device", "cpu", "--no-progress", "--lr", "1e-3", *extra]


def _child(argv: list[str], env: dict[str, str]) -> None:
    import warnings

    from pmgaft.cli import main

    os.environ.update(env)
    warnings.simplefilter("ignore")
    sys.exit(main(argv))


def run_forked(argv: list[str], env: dict[str, str] | None = None, kill_after: float | None = None) -> int:
    """``pmgaft.cli.main(argv)`` in a forked child (no interpreter start-up: torch is already imported); returns
    its exit status, -9 when it was killed. ``kill_after``: SIGKILL it after that many seconds, as ``kill -9``
    would, unless it finished first."""
    process = multiprocessing.get_context("fork").Process(target=_child, args=(argv, env or {}))
    process.start()
    process.join(kill_after)
    if process.is_alive():
        os.kill(process.pid, signal.SIGKILL)
        process.join()
    return process.exitcode


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def same_weights(a: Path, b: Path) -> bool:
    """Bit-identical tensors in two safetensors files."""
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
