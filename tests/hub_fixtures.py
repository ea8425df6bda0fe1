"""Hub test helpers: open_clip hub folders written by the test, and a Hugging Face cache filled by hand in the
layout huggingface_hub uses (``models--ORG--NAME/{refs/main, blobs/<hash>, snapshots/<commit>/<file> -> blob}``),
read offline (HF_HUB_CACHE + HF_HUB_OFFLINE=1)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from hub_data_fixtures import COMMIT
from hub_data_fixtures import offline_hub as use_offline_cache


def hub_folder(folder: Path, state_dict: dict[str, torch.Tensor] | None, model_cfg: dict, *,
               preprocess: dict | None = None, weights: str = "open_clip_model.safetensors") -> Path:
    """open_clip's hub folder: open_clip_config.json and (unless ``state_dict`` is None) the weights file."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess or {}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    if state_dict is not None:
        tensors = {k: v.contiguous() for k, v in state_dict.items()}
        if weights.endswith(".safetensors"):
            save_file(tensors, str(folder / weights))
        else:
            torch.save(tensors, folder / weights)
    return folder


def fill_hf_cache(cache: Path, repo: str, files: Path) -> Path:
    """Put every file of the folder ``files`` into the cache as ``repo``'s main revision; returns the snapshot."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    (root / "blobs").mkdir(exist_ok=True)
    snapshot = root / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    for f in sorted(p for p in files.iterdir() if p.is_file()):
        blob = root / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copyfile(f, blob)
        (snapshot / f.name).symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch) -> Path:
    """An empty Hugging Face cache, used offline (env variables and huggingface_hub's constants both set)."""
    return use_offline_cache(monkeypatch, tmp_path / "hf-cache")
