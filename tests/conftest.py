"""Shared fixtures: tiny CLIP models, the real CIFAR-10 ResNet-18 shipped by pyautoattack, real images."""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# Keep every test's caches out of the user's home, before pmgaft reads the variable; removed when pytest exits.
if "PMGAFT_CACHE" not in os.environ:
    os.environ["PMGAFT_CACHE"] = tempfile.mkdtemp(prefix="pmgaft-test-cache-")
    atexit.register(shutil.rmtree, os.environ["PMGAFT_CACHE"], ignore_errors=True)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import pmgaft  # noqa: E402,F401  (torchvision shim)

torch.set_num_threads(1)  # pytest-xdist runs one worker per core


@pytest.fixture
def micro_clip():
    """A randomly initialised pmgaft-micro CLIP (32 px ViT, 2 layers), seeded."""
    from pmgaft.models import load_clip

    torch.manual_seed(0)
    return load_clip("pmgaft-micro")


def _site_packages_file(package: str, *parts: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{package} is not installed")
    return Path(list(spec.submodule_search_locations)[0], *parts)


@pytest.fixture(scope="session")
def cifar_resnet():
    """pyautoattack's real CIFAR-10 ResNet-18 (examples/model_test.pt), eval mode, inputs in [0, 1]."""
    examples = _site_packages_file("pyautoattack", "examples")
    sys.path.insert(0, str(examples))
    try:
        from resnet import ResNet18  # pyautoattack's examples/resnet.py
    finally:
        sys.path.remove(str(examples))
    model = ResNet18()
    model.load_state_dict(torch.load(examples / "model_test.pt", map_location="cpu", weights_only=True))
    return model.eval()


@pytest.fixture(scope="session")
def cifar_images():
    """foolbox's 20 real CIFAR-10 test images ([20, 3, 32, 32] in [0, 1]) and labels."""
    from PIL import Image

    files = sorted(_site_packages_file("foolbox", "data").glob("cifar10_*.png"))
    assert len(files) == 20
    x = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files])
    y = torch.tensor([int(f.stem.split("_")[-1]) for f in files])
    return x.float() / 255, y


@pytest.fixture(scope="session")
def digits_clip(tmp_path_factory) -> Path:
    """pmgaft-micro trained contrastively on scikit-learn's digits for a few seconds (~40% zero-shot accuracy):
    a model whose predictions differ between samples and that attacks can fool, for evaluation tests."""
    from pmgaft.quickstart.pretrain import PretrainConfig, pretrain_tiny_clip

    path = tmp_path_factory.mktemp("digits_clip") / "digits_clip.safetensors"
    cfg = PretrainConfig(model="pmgaft-micro", datasets=("digits",), steps=200, batch_size=64, warmup_steps=10)
    pretrain_tiny_clip(path, Path("data"), cfg, progress=False, log=lambda *_: None)
    return path
