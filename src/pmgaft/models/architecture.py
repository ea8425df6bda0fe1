"""Which open_clip architecture a state_dict fits, read from its tensor shapes (for "wrong --model" errors).

A CLIP ViT's shapes pin down its architecture: the patch embedding ``visual.conv1.weight`` [width, 3, p, p], the
positional embedding [grid^2 + 1, width], the number of residual blocks, the text width/depth/context and the
joint embedding width. :func:`matching_architectures` compares them with every open_clip config.
"""
from __future__ import annotations

import re
from typing import Any

import torch

_BLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.")


def _blocks(keys: list[str], visual: bool) -> int:
    found = {int(m[2]) for k in keys for m in [_BLOCK.match(k)] if m and bool(m[1]) == visual}
    return max(found) + 1 if found else 0


def vit_signature(state_dict: dict[str, torch.Tensor]) -> dict[str, int] | None:
    """Shape facts of a CLIP ViT state_dict in open_clip/OpenAI key names, or None when it is not one."""
    conv = state_dict.get("visual.conv1.weight")
    pos = state_dict.get("visual.positional_embedding")
    if conv is None or pos is None or conv.dim() != 4:
        return None
    keys = list(state_dict)
    sig = {"width": conv.shape[0], "patch_size": conv.shape[-1], "layers": _blocks(keys, True),
           "image_size": int(round((pos.shape[0] - 1) ** 0.5)) * conv.shape[-1]}
    if "visual.proj" in state_dict:
        sig["embed_dim"] = state_dict["visual.proj"].shape[1]
    if "token_embedding.weight" in state_dict:
        sig["text_width"] = state_dict["token_embedding.weight"].shape[1]
        sig["text_layers"] = _blocks(keys, False)
    return sig


def _config_signature(cfg: dict[str, Any]) -> dict[str, int] | None:
    vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if "timm_model_name" in vision or not isinstance(vision.get("layers"), int) or "patch_size" not in vision:
        return None
    size = vision.get("image_size", 224)
    sig = {"width": vision.get("width", 768), "patch_size": vision["patch_size"], "layers": vision["layers"],
           "image_size": size[0] if isinstance(size, (list, tuple)) else size, "embed_dim": cfg.get("embed_dim")}
    if "hf_model_name" not in text:
        sig.update(text_width=text.get("width", 512), text_layers=text.get("layers", 12))
    return sig


def matching_architectures(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """open_clip architectures whose shapes equal ``state_dict``'s (image-tower-only dicts: vision shapes only)."""
    import open_clip

    sig = vit_signature(state_dict)
    if sig is None:
        return []
    matches = []
    for name in open_clip.list_models():
        cfg = _config_signature(open_clip.get_model_config(name) or {})
        if cfg is not None and all(cfg.get(k) == v for k, v in sig.items()):
            matches.append(name)
    # plain names first ("ViT-B-32" before "ViT-B-32-quickgelu" and other variants)
    return sorted(matches, key=lambda n: (n.count("-"), len(n), n))
