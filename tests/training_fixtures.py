"""A small training set in the TinyImageNet layout (3 classes x 6 noisy 16 px images), for training tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
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
