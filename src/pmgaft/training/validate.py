"""Model selection on the held-out split of the *training* set: clean and PGD accuracy (never the test sets).

The attack is PGD-``val_attack_steps`` (L-inf, eps and step from the config, random start with a fixed seed)
with CE on the target's zero-shot logits, in eval mode.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from pmgaft.attacks import pgd
from pmgaft.data import ImageDataset
from pmgaft.models import ZeroShotClassifier
from pmgaft.training.config import TrainConfig
from pmgaft.training.data import ignore_stop_signals


def validate(model: ZeroShotClassifier, val: ImageDataset, config: TrainConfig, device: torch.device,
             batch_size: int) -> dict[str, float]:
    """``{"val_clean", "val_robust"}`` accuracies in [0, 1] on ``val``."""
    was_training = model.training
    model.eval()
    settings = config.attack_settings()
    correct_clean = correct_robust = n = 0
    generator = torch.Generator(device=device).manual_seed(config.seed)
    workers = config.num_workers  # decoding a held-out split of ImageNet train takes the loader workers too
    for x, y in DataLoader(val, batch_size=batch_size, shuffle=False, num_workers=workers,
                           worker_init_fn=ignore_stop_signals if workers else None):
        x, y = x.to(device), y.to(device)
        with torch.no_grad():
            correct_clean += (model(x).argmax(1) == y).sum().item()
        x_adv = pgd(model, x, y, eps=settings.eps, step_size=settings.step_size, steps=config.val_attack_steps,
                    generator=generator)
        with torch.no_grad():
            correct_robust += (model(x_adv).argmax(1) == y).sum().item()
        n += len(y)
    model.train(was_training)
    return {"val_clean": correct_clean / max(n, 1), "val_robust": correct_robust / max(n, 1)}
