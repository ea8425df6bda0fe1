"""Golden tests: per protocol, the images the attack sees, the prompts and the logits equal a hand computation.

A 48 px micro CLIP (so that resizing is visible), CIFAR-10 (32 px) and DTD (non-square JPEG-named images) in
their real layouts with textured images; the hand computation follows docs/protocols.md with PIL and the
open_clip model directly, never through pmgaft's transforms or classifier.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from eval_fixtures import micro_checkpoint
from pmgaft.cli import main
from pmgaft.data import classnames

MICRO48 = {"embed_dim": 32, "vision_cfg": {"image_size": 48, "layers": 2, "width": 32, "head_width": 16,
                                          "patch_size": 8},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DTD_CLASSES = json.loads((Path(__file__).parents[1] / "src/pmgaft/prompts/data/classnames.json").read_text())["dtd"]
DTD_FILES = [f"{c}/{c}_{i:04d}.jpg" for i, c in enumerate(DTD_CLASSES)]  # DTD's loader needs all 47 classes
DTD_SIZES = [(70, 50), (41, 60), (64, 64)] + [(12, 9)] * (len(DTD_CLASSES) - 3)  # (W, H), non-square


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import open_clip

    tmp = tmp_path_factory.mktemp("golden")
    (tmp / "configs").mkdir()
    (tmp / "configs" / "pmgaft-micro48.json").write_text(json.dumps(MICRO48))
    open_clip.add_model_config(tmp / "configs")
    rng = np.random.default_rng(0)
    root = tmp / "data"
    cifar = root / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    images = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    labels = [0, 3, 9, 3, 1]
    rows = images.transpose(0, 3, 1, 2).reshape(5, -1)
    (cifar / "batches.meta").write_bytes(pickle.dumps({"label_names": classnames.CIFAR10}, protocol=2))
    (cifar / "test_batch").write_bytes(pickle.dumps({"data": rows, "labels": labels}, protocol=2))
    dtd = root / "dtd" / "dtd"
    (dtd / "labels").mkdir(parents=True)
    for split in ("train", "val", "test"):
        (dtd / "labels" / f"{split}1.txt").write_text("\n".join(DTD_FILES) + "\n")
    for rel, size in zip(DTD_FILES, DTD_SIZES):
        (dtd / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(dtd / "images" / rel,
                                                                                         format="PNG")
    ckpt = micro_checkpoint(tmp / "run" / "best.safetensors", model="pmgaft-micro48",
                            pmgaft_normalization="imagenet", pmgaft_logit_scale="1.0")
    return root, ckpt, {"cifar10": (images, labels), "dtd": [Image.open(dtd / "images" / r).convert("RGB")
                                                              for r in DTD_FILES]}


def _captured(monkeypatch) -> dict[str, dict]:
    """What the grid's clean pass sees, per dataset: images, labels, logits (the attack sees the same tensors)."""
    from pmgaft.evaluation import grid

    seen: dict[int, dict] = {}
    real = grid.clean_pass

    def spy(shard, ranks, progress=None):
        rows = list(range(len(shard.decoded)))
        x = shard.decoded.images(rows)
        with torch.no_grad():
            seen[len(seen)] = {"x": x, "y": shard.decoded.labels, "logits": shard.classifier(x),
                               "clf": shard.classifier}
        return real(shard, ranks, progress)

    monkeypatch.setattr(grid, "clean_pass", spy)
    return seen


def _run(root: Path, ckpt: Path, out: Path, protocol: str) -> None:
    assert main(["eval", "--protocol", protocol, "--checkpoint", f"m={ckpt}", "--datasets", "cifar10", "dtd",
                 "--attacks", "none", "--data-root", str(root), "--out", str(out), "--device", "cpu",
                 "--no-progress"]) == 0


def _reference_resize_crop(image: Image.Image, size: int) -> Image.Image:
    """torchvision Resize(int) + CenterCrop, written out: shorter side -> round(size*256/224), bilinear."""
    side = round(size * 256 / 224)
    w, h = image.size
    new = (side, int(side * h / w)) if w <= h else (int(side * w / h), side)
    image = image.resize(new, Image.BILINEAR)
    left, top = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)


def _hand_logits(model, x: torch.Tensor, prompts: list[str], mean, std, scale: float | None) -> torch.Tensor:
    import open_clip

    with torch.no_grad():
        if x.shape[-1] != 48:
            x = F.interpolate(x, size=(48, 48), mode="bicubic", align_corners=False)
        image = model.encode_image((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
        text = model.encode_text(open_clip.get_tokenizer("pmgaft-micro48")(prompts))
        scale = model.logit_scale.exp() if scale is None else scale
        return scale * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T


def _model(ckpt: Path):
    from pmgaft.models import load_clip

    return load_clip("pmgaft-micro48", ckpt).model


CIFAR_PROMPTS = [f"This is a photo of a {c}" for c in classnames.CIFAR10]
# the reference DTD's clip_prompts: lower-case, "_" and "-" as spaces ("polka-dotted" -> "polka dotted")
DTD_PROMPTS = [f"A surface with a {c.lower().replace('_', ' ').replace('-', ' ')} texture." for c in DTD_CLASSES]


@pytest.mark.parametrize("protocol", ["tga-zsr", "official-code", "paper"])
def test_images_prompts_and_logits_equal_the_hand_computation(setup, tmp_path, monkeypatch, protocol):
    root, ckpt, raw = setup
    seen = _captured(monkeypatch)
    _run(root, ckpt, tmp_path / "out", protocol)
    cifar, dtd = seen[0], seen[1]
    images, labels = raw["cifar10"]
    if protocol == "official-code":  # CIFAR at native 32 px, the model upsamples (bicubic) inside
        want_cifar = torch.stack([_tensor(Image.fromarray(a)) for a in images])
    else:  # Resize((48, 48)) before the attack, torchvision's default (bilinear)
        want_cifar = torch.stack([_tensor(Image.fromarray(a).resize((48, 48), Image.BILINEAR)) for a in images])
    want_dtd = torch.stack([_tensor(_reference_resize_crop(im, 48)) for im in raw["dtd"]])
    assert torch.equal(cifar["x"], want_cifar) and cifar["y"].tolist() == labels
    assert torch.equal(dtd["x"], want_dtd)
    norm, scale = {"tga-zsr": ((CLIP_MEAN, CLIP_STD), 100.0), "official-code": ((IMAGENET_MEAN, IMAGENET_STD), 1.0),
                   "paper": ((IMAGENET_MEAN, IMAGENET_STD), 1.0)}[protocol]  # paper: what the checkpoint records
    model = _model(ckpt)
    for got, x, prompts in ((cifar, want_cifar, CIFAR_PROMPTS), (dtd, want_dtd, DTD_PROMPTS)):
        want = _hand_logits(model, x, prompts, *norm, scale)
        assert (got["logits"] - want).abs().max() < 1e-4 * scale, (protocol, (got["logits"] - want).abs().max())
    card = json.loads(next((tmp_path / "out" / "m" / "dtd").glob("none_eps0.json")).read_text())
    assert card["prompts"]["templates"] == ["A surface with a {} texture."]
    assert card["model"]["normalization"] == ("clip" if protocol == "tga-zsr" else "imagenet")
    source = card["model"]["normalization_source"]
    assert source == ("recorded in the checkpoint" if protocol == "paper" else f"protocol {protocol}")
