"""The zero-shot classifier: one callable ``model(x in [0, 1]) -> logits`` shared by attacks, losses, AutoAttack.

Inside its forward: bicubic resize to the model's input size, normalization (CLIP or ImageNet statistics),
image embedding, cosine similarity with fixed class text embeddings, times a logit scale. The text embeddings
are computed once (open_clip's ``build_zero_shot_classifier``: templates averaged over normalized embeddings,
renormalized) and cached on disk keyed by the text tower's weights and the prompts.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import open_clip

from pmgaft.errors import PmgaftError
from pmgaft.models.loading import NORMALIZATIONS
from pmgaft.utils import atomic_torch_save, state_dict_hash


def default_cache_dir() -> Path:
    root = os.environ.get("PMGAFT_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "pmgaft")
    return Path(root).expanduser()


def text_tower_hash(model: nn.Module) -> str:
    """Hash of every weight that influences ``encode_text`` (everything outside ``visual.``)."""
    return state_dict_hash({k: v for k, v in model.state_dict().items() if not k.startswith("visual.")})


def build_text_embeddings(model: nn.Module, tokenizer: Callable, classnames: Sequence[str],
                          templates: Sequence[str], *, cache_dir: str | os.PathLike | None = None,
                          cache: bool = True) -> torch.Tensor:
    """Class text embeddings [C, D] (unit norm, float32), from the disk cache when this exact build was seen."""
    if not classnames or not templates:
        raise PmgaftError("zero-shot classifier needs at least one class name and one template.")
    bad = [t for t in templates if "{}" not in t and "{c}" not in t]
    if bad:
        raise PmgaftError(f"templates must contain a '{{}}' or '{{c}}' placeholder for the class name: {bad[:3]}")
    templates = [t.replace("{c}", "{}") for t in templates]
    device = next(model.parameters()).device
    path = None
    if cache:
        key = hashlib.sha256(json.dumps([text_tower_hash(model), list(classnames), list(templates)]).encode())
        path = Path(cache_dir or default_cache_dir() / "text_embeddings") / f"{key.hexdigest()[:32]}.pt"
        if path.is_file():
            try:
                return torch.load(path, map_location=device, weights_only=True)
            except Exception:
                pass  # a corrupt cache entry is recomputed and overwritten
    was_training = model.training
    model.eval()
    weights = open_clip.build_zero_shot_classifier(model, tokenizer, list(classnames), list(templates),
                                                   num_classes_per_batch=50, device=device)
    model.train(was_training)
    emb = weights.T.float().contiguous()  # [C, D]
    if path is not None:
        atomic_torch_save(path, emb.cpu())
    return emb


def preprocess_images(x: torch.Tensor, image_size: int, mean: torch.Tensor, std: torch.Tensor, *,
                      antialias: bool = False) -> torch.Tensor:
    """[0, 1] images [B, 3, H, W] of any size -> bicubic resize to ``image_size`` -> (x - mean) / std.

    ``antialias=True`` is torchvision's tensor ``Resize`` (its default since 0.17): PIL-style bicubic weights
    (a = -0.5) even when upsampling, unlike plain ``interpolate`` (a = -0.75); a 32 px image upsampled to 224
    differs by up to ~0.1 per pixel between the two. AGFT's model resizes with it.
    """
    if x.dim() != 4 or x.shape[1] != 3:
        raise PmgaftError(f"expected images [B, 3, H, W] in [0, 1], got shape {tuple(x.shape)}")
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bicubic", align_corners=False, antialias=antialias)
    return (x - mean.view(1, 3, 1, 1).to(x)) / std.view(1, 3, 1, 1).to(x)


class ZeroShotClassifier(nn.Module):
    """CLIP as a classifier over fixed class prompts: ``forward(x [B,3,H,W] in [0,1]) -> logits [B, C]``.

    The image tower stays trainable through it (training uses the same module); the text embeddings are a
    buffer. ``logit_scale``: ``"model"`` = exp(model.logit_scale) (100 for OpenAI CLIP), or a float; 1.0 gives
    the raw cosine the released PMG-AFT code uses. ``antialias``: the inner resize of smaller images as
    torchvision's tensor ``Resize`` (see :func:`preprocess_images`).
    """

    def __init__(self, clip_model: nn.Module, text_embeddings: torch.Tensor, *, image_size: int,
                 normalization: str | tuple[Sequence[float], Sequence[float]] = "clip",
                 logit_scale: str | float = "model", classnames: Sequence[str] | None = None,
                 templates: Sequence[str] | None = None, antialias: bool = False) -> None:
        super().__init__()
        self.clip = clip_model
        self.image_size = int(image_size)
        self.antialias = bool(antialias)
        if isinstance(normalization, str):
            if normalization not in NORMALIZATIONS:
                raise PmgaftError(f"unknown normalization {normalization!r}; use one of {list(NORMALIZATIONS)} "
                                  f"or a (mean, std) pair.")
            mean, std = NORMALIZATIONS[normalization]
        else:
            mean, std = normalization
        self.normalization = normalization if isinstance(normalization, str) else "custom"
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("text_embeddings", text_embeddings.detach().float(), persistent=False)  # [C, D]
        if logit_scale == "model":
            scale = float(clip_model.logit_scale.detach().exp().item())
        elif isinstance(logit_scale, (int, float)) and logit_scale > 0:
            scale = float(logit_scale)
        else:
            raise PmgaftError(f"logit_scale must be 'model' or a positive number, got {logit_scale!r}.")
        self.logit_scale = scale
        self.classnames = list(classnames) if classnames is not None else None
        self.templates = list(templates) if templates is not None else None

    @classmethod
    def build(cls, clip_model: nn.Module, tokenizer: Callable, classnames: Sequence[str], templates: Sequence[str],
              *, image_size: int | None = None, cache_dir: str | os.PathLike | None = None, cache: bool = True,
              **kwargs) -> "ZeroShotClassifier":
        """Compute (or fetch from the cache) the class text embeddings and wrap the model."""
        emb = build_text_embeddings(clip_model, tokenizer, classnames, templates, cache_dir=cache_dir, cache=cache)
        if image_size is None:
            size = clip_model.visual.image_size
            image_size = size[0] if isinstance(size, (tuple, list)) else size
        return cls(clip_model, emb, image_size=image_size, classnames=classnames, templates=templates, **kwargs)

    def frozen_copy(self) -> "ZeroShotClassifier":
        """This classifier frozen (eval mode, no gradients) with its **own copy of the image tower** only.

        The pre-trained model that PMG-AFT, FARE and TGA-ZSR are guided by: only the image tower is fine-tuned,
        so the text tower, the logit scale and the text embeddings are shared with this classifier, not copied
        (ViT-B/32: 242 MiB of text tower not duplicated).
        """
        visual = self.clip.visual
        own = {id(obj) for obj in itertools.chain(visual.modules(), visual.parameters(), visual.buffers())}
        shared = {id(obj): obj for obj in itertools.chain(self.clip.modules(), self.clip.parameters(),
                                                           self.clip.buffers())
                  if id(obj) not in own and obj is not self.clip}
        clip = copy.deepcopy(self.clip, memo=shared)  # new root and image tower; every other part shared
        clip.visual.requires_grad_(False)
        normalization = self.normalization if self.normalization != "custom" else (
            self.mean.flatten().tolist(), self.std.flatten().tolist())
        frozen = ZeroShotClassifier(clip, self.text_embeddings, image_size=self.image_size,
                                    normalization=normalization, logit_scale=self.logit_scale,
                                    classnames=self.classnames, templates=self.templates,
                                    antialias=self.antialias).to(self.mean.device)
        for module in (frozen, clip, *clip.visual.modules()):  # not .eval(): it would reach the shared modules
            module.training = False
        return frozen

    @property
    def num_classes(self) -> int:
        return self.text_embeddings.shape[0]

    @property
    def visual(self) -> nn.Module:
        return self.clip.visual

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images of any size -> normalized model input at ``image_size`` (bicubic, as CLIP)."""
        return preprocess_images(x, self.image_size, self.mean, self.std, antialias=self.antialias)

    def image_features(self, x: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
        """Image embeddings [B, D] of [0, 1] images (unnormalized with ``normalize=False``, as FARE uses)."""
        return self.clip.encode_image(self.preprocess(x), normalize=normalize)

    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
        features = F.normalize(features, dim=-1)
        return self.logit_scale * features @ self.text_embeddings.to(features.dtype).T  # [B, C]

    def cosines(self, x: torch.Tensor) -> torch.Tensor:
        """Cosine similarities [B, C] of [0, 1] images with the class text embeddings (logits without the scale,
        for methods that train at their own scale, e.g. AGFT)."""
        features = F.normalize(self.image_features(x, normalize=False), dim=-1)
        return features @ self.text_embeddings.to(features.dtype).T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_features(self.image_features(x, normalize=False))
