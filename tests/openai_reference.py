"""OpenAI's own CLIP model code (PyPI ``clip-anytorch``, ``clip/model.py``) as the reference implementation.

``clip/__init__.py`` imports ``pkg_resources`` and fails on new setuptools, so ``clip/model.py`` is loaded by file
path (it imports only torch). ``MICRO`` is an OpenAI-shaped CLIP small enough for tests (OpenAI's code fixes the
head width at 64); :func:`register_micro_config` adds the open_clip config of the same architecture.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

MICRO_NAME = "openai-micro-test"
MICRO = dict(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=128, vision_patch_size=8,
             context_length=77, vocab_size=49408, transformer_width=128, transformer_heads=2, transformer_layers=2)
MICRO_OPEN_CLIP = {"embed_dim": 32,
                   "vision_cfg": {"image_size": 32, "layers": 2, "width": 128, "head_width": 64, "patch_size": 8},
                   "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2}}


def openai_model_module() -> ModuleType:
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("clip-anytorch (OpenAI's CLIP code) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "model.py"
    module_spec = importlib.util.spec_from_file_location("openai_clip_model", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def openai_micro(seed: int = 0) -> torch.nn.Module:
    """A randomly initialised OpenAI-shaped CLIP (OpenAI's code, QuickGELU), fp32, eval mode."""
    torch.manual_seed(seed)
    model = openai_model_module().CLIP(**MICRO).float().eval()
    with torch.no_grad():  # OpenAI's init leaves some tensors at exact constants: perturb everything a little
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


# OpenAI's released architectures at their real shapes (``clip/model.py`` CLIP(...) arguments)
REAL_SHAPES: dict[str, dict[str, int]] = {
    "ViT-B-32": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=32,
                     context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8,
                     transformer_layers=12),
    "ViT-B-16": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=16,
                     context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8,
                     transformer_layers=12),
    "ViT-L-14": dict(embed_dim=768, image_resolution=224, vision_layers=24, vision_width=1024, vision_patch_size=14,
                     context_length=77, vocab_size=49408, transformer_width=768, transformer_heads=12,
                     transformer_layers=12),  # ~428 M parameters, 1.7 GB in fp32
}


def openai_real_size(name: str, seed: int = 0) -> torch.nn.Module:
    """OpenAI's CLIP code at the real shapes of ``name`` with random weights (perturbed like
    :func:`openai_micro`), fp32, eval mode, no gradients."""
    torch.manual_seed(seed)
    model = openai_model_module().CLIP(**REAL_SHAPES[name]).float().eval().requires_grad_(False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p), alpha=0.02)
    return model


def register_micro_config(tmp: Path) -> str:
    import open_clip

    folder = tmp / "open_clip_configs"
    folder.mkdir(exist_ok=True)
    (folder / f"{MICRO_NAME}.json").write_text(json.dumps(MICRO_OPEN_CLIP))
    open_clip.add_model_config(folder)
    return MICRO_NAME


def inputs(seed: int = 1, image_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized images [2, 3, S, S] and token ids [2, 77] (real BPE tokens of two captions)."""
    import open_clip

    torch.manual_seed(seed)
    images = torch.randn(2, 3, image_size, image_size)
    tokens = open_clip.get_tokenizer("ViT-B-32")(["a photo of a cat", "a diagram of lymph node tissue"])
    return images, tokens


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())
