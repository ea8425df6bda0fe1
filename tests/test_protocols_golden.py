"""Golden tests: per protocol, the images the attack sees, the prompts and the logits equal a hand computation.

A 48 px micro CLIP (so that resizing is visible), CIFAR-10 (32 px) and DTD (non-square JPEG-named images) in
their real layouts with textured images (Caltech-101 and ImageNet with all their class folders for agft/ttc);
the hand computation follows docs/protocols.md (tga-zsr, official-code, agft, ttc) with PIL and the open_clip model
directly, never through pmgaft's transforms or classifier.
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


def _reference_resize_crop(image: Image.Image, size: int, side: int | None = None) -> Image.Image:
    """torchvision Resize(int) + CenterCrop, written out: shorter side -> ``side`` (default round(size*256/224),
    R256/C224 at 224; AGFT: ``size``), bilinear."""
    side = round(size * 256 / 224) if side is None else side
    w, h = image.size
    new = (side, int(side * h / w)) if w <= h else (int(side * w / h), side)
    image = image.resize(new, Image.BILINEAR)
    left, top = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)


def _hand_logits(model, x: torch.Tensor, prompts: list[str], mean, std, scale: float | None,
                 resize=lambda x: F.interpolate(x, size=(48, 48), mode="bicubic", align_corners=False)) -> torch.Tensor:
    import open_clip

    with torch.no_grad():
        if x.shape[-1] != 48:
            x = resize(x)
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


# --- agft and ttc: AGFT's and the test-time-counterattack evaluations -------------------------------------------
# Caltech-101 with all 101 class folders (AGFT merges the two face folders), ImageNet with all 1000 (TTC drops the
# duplicate 'maillot' n03710637 and its images); the hand computation follows their code: AGFT's Resize(224) +
# CenterCrop(224) and torchvision's (antialiased) bicubic tensor Resize inside the model for CIFAR, TTC's
# Resize(256) + CenterCrop(224) for every set, their prompt strings, CLIP mean/std and 100 x cosine.

PAPER_DATA = json.loads((Path(__file__).parents[1] / "src/pmgaft/prompts/data/paper.json").read_text())
CALTECH_FOLDERS = PAPER_DATA["datasets"]["caltech101"]["raw_classnames"]  # sorted, BACKGROUND_Google removed
CALTECH_FILES = {"Faces": [(30, 20), (20, 31)], "Faces_easy": [(25, 25), (40, 18)], "Leopards": [(17, 29)],
                 "car_side": [(33, 22)]}  # (W, H) of each image, in file order
IMAGENET_NAMES = json.loads((Path(__file__).parents[1] /
                             "src/pmgaft/prompts/data/imagenet_reference_names.json").read_text())["names"]
MAILLOT, MAILLOT_TANK_SUIT = "n03710637", "n03710721"


def _refine(name: str) -> str:
    """The reference codes' refine_classname: lower-case, '_', '-', '/' -> space."""
    return " ".join(name.lower().replace("_", " ").replace("-", " ").replace("/", " ").split())


@pytest.fixture(scope="module")
def reference_sets(setup):
    """Caltech-101 and ImageNet added to the golden data root (CIFAR-10 is already there)."""
    root, ckpt, raw = setup
    rng = np.random.default_rng(1)
    caltech = root / "caltech101" / "101_ObjectCategories"
    images: dict[str, list[Image.Image]] = {"caltech101": [], "imagenet": []}
    for folder in ["BACKGROUND_Google", *CALTECH_FOLDERS]:
        (caltech / folder).mkdir(parents=True, exist_ok=True)
        for k, (w, h) in enumerate(CALTECH_FILES.get(folder, []), 1):
            image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            image.save(caltech / folder / f"image_{k:04d}.jpg", format="PNG")
            images["caltech101"].append(image)
    imagenet, wnids = root / "imagenet", sorted(IMAGENET_NAMES)
    imagenet.mkdir()
    torch.save(({w: (IMAGENET_NAMES[w],) for w in wnids}, []), imagenet / "meta.bin")  # as parse_devkit writes
    for wnid in wnids:  # every class folder, as in the real val set; two images in both 'maillot' classes
        (imagenet / "val" / wnid).mkdir(parents=True)
        for k in range(2 if wnid in (MAILLOT, MAILLOT_TANK_SUIT) else 1):
            image = Image.fromarray(rng.integers(0, 256, (9, 12, 3), dtype=np.uint8))
            image.save(imagenet / "val" / wnid / f"ILSVRC2012_val_{wnid}_{k}.JPEG", format="PNG")
            images["imagenet"].append(image)
    return root, ckpt, {**raw, **images}


def _texts(clf) -> list[str]:
    return [t.format(c) for c in clf.classnames for t in clf.templates]


def _repeat(label_counts: list[tuple[int, int]]) -> list[int]:
    return [label for label, n in label_counts for _ in range(n)]


def test_agft_images_prompts_labels_and_logits(reference_sets, tmp_path, monkeypatch):
    root, ckpt, raw = reference_sets
    seen = _captured(monkeypatch)
    assert main(["eval", "--protocol", "agft", "--checkpoint", f"m={ckpt}", "--datasets", "cifar10", "caltech101",
                 "--attacks", "none", "--data-root", str(root), "--out", str(tmp_path), "--device", "cpu",
                 "--no-progress"]) == 0
    cifar, caltech = seen[0], seen[1]
    images, labels = raw["cifar10"]
    want_cifar = torch.stack([_tensor(Image.fromarray(a)) for a in images])  # native 32 px
    want_caltech = torch.stack([_tensor(_reference_resize_crop(im, 48, side=48)) for im in raw["caltech101"]])
    assert torch.equal(cifar["x"], want_cifar) and cifar["y"].tolist() == labels
    assert torch.equal(caltech["x"], want_caltech)
    # AGFT's Caltech101: labels 0 (Faces) and 1 (Faces_easy) -> 0 'person', every other k -> k - 1
    assert caltech["y"].tolist() == [0, 0, 0, 0, 1, CALTECH_FOLDERS.index("car_side") - 1]
    assert _texts(cifar["clf"]) == [f"This is a photo of a {c}." for c in classnames.CIFAR10]
    want_texts = ["A photo of a person."] + [f"A photo of a {_refine(f)}." for f in CALTECH_FOLDERS[2:]]
    assert _texts(caltech["clf"]) == want_texts and len(want_texts) == 100 and "A photo of a car side." in want_texts
    from torchvision.transforms import InterpolationMode, Resize

    model = _model(ckpt)
    torchvision_resize = Resize(48, interpolation=InterpolationMode.BICUBIC)  # AGFT's model: a tensor Resize
    for got, x, texts in ((cifar, want_cifar, _texts(cifar["clf"])), (caltech, want_caltech, want_texts)):
        want = _hand_logits(model, x, texts, CLIP_MEAN, CLIP_STD, 100.0, resize=torchvision_resize)
        assert (got["logits"] - want).abs().max() < 1e-2
    plain = _hand_logits(model, want_cifar, _texts(cifar["clf"]), CLIP_MEAN, CLIP_STD, 100.0)
    assert (cifar["logits"] - plain).abs().max() > 1e-2  # the antialiased resize is not plain interpolate
    card = json.loads((tmp_path / "m" / "caltech101" / "none_eps0.json").read_text())
    assert card["n"] == 6 and card["dataset"]["num_classes"] == 100 and card["prompts"]["label_map"][:3] == [0, 0, 1]
    assert card["dataset"]["relabel"] == {"note": "'Faces' and 'Faces_easy' scored as one class 'person' "
                                                  "(100 classes)", "n_raw": 6, "n_dropped": 0, "num_raw_classes": 101}
    protocol = card["config"]["protocol"]
    assert protocol["cw_kappa"] == 0.0 and protocol["resize_antialias"] and len(protocol["averaged"]) == 15


def test_ttc_images_prompts_labels_and_logits(reference_sets, tmp_path, monkeypatch):
    root, ckpt, raw = reference_sets
    seen = _captured(monkeypatch)
    assert main(["eval", "--protocol", "ttc", "--checkpoint", f"m={ckpt}", "--datasets", "cifar10", "caltech101",
                 "imagenet", "--attacks", "none", "--data-root", str(root), "--out", str(tmp_path), "--device",
                 "cpu", "--no-progress"]) == 0
    cifar, caltech, imagenet = seen[0], seen[1], seen[2]
    images, labels = raw["cifar10"]

    def r_c(image: Image.Image) -> torch.Tensor:  # Resize(55) + CenterCrop(48): R256/C224 at the 48 px input
        return _tensor(_reference_resize_crop(image, 48))

    want = {"cifar10": torch.stack([r_c(Image.fromarray(a)) for a in images]),
            "caltech101": torch.stack([r_c(im) for im in raw["caltech101"]]),
            "imagenet": torch.stack([r_c(im) for i, im in enumerate(raw["imagenet"]) if i not in _maillot_positions()])}
    assert torch.equal(cifar["x"], want["cifar10"]) and cifar["y"].tolist() == labels
    assert torch.equal(caltech["x"], want["caltech101"]) and torch.equal(imagenet["x"], want["imagenet"])
    # Caltech-101 keeps its 101 labels; ImageNet drops n03710637's two images and shifts the later labels by one
    assert caltech["y"].tolist() == [0, 0, 1, 1, 2, CALTECH_FOLDERS.index("car_side")]
    drop = sorted(IMAGENET_NAMES).index(MAILLOT)
    kept = [(i - (i > drop), 2 if w == MAILLOT_TANK_SUIT else 1) for i, w in enumerate(sorted(IMAGENET_NAMES))
            if w != MAILLOT]
    assert imagenet["y"].tolist() == _repeat(kept) and len(imagenet["y"]) == 1000
    assert _texts(cifar["clf"]) == [f"This is a photo of a {c}." for c in classnames.CIFAR10]
    caltech_texts = [f"This is a photo of a {c}." for c in ["person", "person", *CALTECH_FOLDERS[2:]]]
    imagenet_texts = [f"This is a photo of a {_refine(IMAGENET_NAMES[w])}." for w in sorted(IMAGENET_NAMES)
                      if w != MAILLOT]
    assert _texts(caltech["clf"]) == caltech_texts and "This is a photo of a car_side." in caltech_texts
    assert _texts(imagenet["clf"]) == imagenet_texts and len(imagenet_texts) == 999
    model = _model(ckpt)
    for got, name, texts in ((cifar, "cifar10", _texts(cifar["clf"])), (caltech, "caltech101", caltech_texts),
                             (imagenet, "imagenet", imagenet_texts)):
        assert (got["logits"] - _hand_logits(model, want[name], texts, CLIP_MEAN, CLIP_STD, 100.0)).abs().max() < 1e-2
    # two identical 'person' prompts: their logits tie and the argmax takes the first, so no 'Faces_easy' image is
    # ever correct -- in TTC's run as here
    assert torch.equal(caltech["logits"][:, 0], caltech["logits"][:, 1])
    samples = json.loads((tmp_path / "m" / "caltech101" / "clean.samples.json").read_text())
    assert all(p != 1 for p, t in zip(samples["clean_pred"], samples["labels"]) if t == 1)
    card = json.loads((tmp_path / "m" / "imagenet" / "none_eps0.json").read_text())
    assert card["n"] == 1000 and card["dataset"]["num_classes"] == 999 and card["dataset"]["n_total"] == 1000
    assert card["dataset"]["relabel"]["n_dropped"] == 2 and card["dataset"]["relabel"]["num_raw_classes"] == 1000
    assert card["dataset"]["preprocessing"] == "Resize(55, bilinear) + CenterCrop(48)"


def _maillot_positions() -> set[int]:
    """Positions of n03710637's images among the fixture's ImageNet images (class order, two per maillot)."""
    start = sum(2 if w == MAILLOT_TANK_SUIT else 1 for w in sorted(IMAGENET_NAMES) if w < MAILLOT)
    return {start, start + 1}


@pytest.mark.parametrize("protocol, kappa", [("ttc", 50.0), ("agft", 0.0)])
def test_pgd_and_cw_final_iterates_equal_the_reference_loops(reference_sets, tmp_path, monkeypatch, protocol, kappa):
    """PGD (summed CE) and CW (the margin capped at kappa: TTC's -relu(z_y - max_other + 50), AGFT's
    -clamp(z_y - max_other, min=-0)) written as the reference loops, from pmgaft's per-sample random starts."""
    from pmgaft.attacks import sample_seeds
    from pmgaft.attacks.pgd import initial_delta
    from pmgaft.evaluation import engine

    root, ckpt, _ = reference_sets
    seen = _captured(monkeypatch)
    finals: list[torch.Tensor] = []  # per attack cell: the images its final-iterate predictions come from
    real_stream = engine.pgd_stream

    def stream_spy(model, fetch, n, **kwargs):
        def recording(x):
            if not torch.is_grad_enabled():  # the last no-grad forward scores the final iterate
                finals.append(x.detach().clone())
            return model(x)
        return real_stream(recording, fetch, n, **kwargs)

    monkeypatch.setattr(engine, "pgd_stream", stream_spy)
    assert main(["eval", "--protocol", protocol, "--checkpoint", f"m={ckpt}", "--datasets", "cifar10",
                 "--attacks", "pgd", "cw", "--eps", "8", "--steps", "3", "--data-root", str(root), "--out",
                 str(tmp_path), "--device", "cpu", "--no-progress"]) == 0
    x, y, clf = seen[0]["x"], seen[0]["y"], seen[0]["clf"]
    eps, alpha = 8 / 255, 1 / 255

    def loss(z: torch.Tensor, name: str) -> torch.Tensor:
        if name == "pgd":
            return F.cross_entropy(z, y, reduction="sum")
        true = z.gather(1, y[:, None]).squeeze(1)
        other = z.masked_fill(F.one_hot(y, z.shape[1]).bool(), -1e4).amax(1)
        return -F.relu(true - other + kappa).sum() if name == "cw" else (other - true).sum()

    uncapped = None
    for name, final in zip(("pgd", "cw", "uncapped"), [*finals, None]):
        delta = initial_delta(x, eps, "linf", seeds=sample_seeds(0, range(len(x))))
        for _ in range(3):
            delta.requires_grad_(True)
            (grad,) = torch.autograd.grad(loss(clf(x + delta), name), delta)
            delta = (delta.detach() + alpha * grad.sign()).clamp(-eps, eps)
            delta = (x + delta).clamp(0, 1) - x
        if final is None:
            uncapped = x + delta
            continue
        assert torch.equal(final, x + delta), name
        with torch.no_grad():
            want = clf(x + delta).argmax(1).tolist()
        card = json.loads((tmp_path / "m" / "cifar10" / f"{name}3_eps8.json").read_text())
        samples = json.loads((tmp_path / "m" / "cifar10" / card["samples"]).read_text())
        assert samples["adv_pred"] == want, name
        assert card["attack"]["scoring"] == "final" and card["attack"].get("kappa") == (kappa if name == "cw" else None)
    assert len(finals) == 2 and (kappa >= 50 or not torch.equal(finals[1], uncapped))  # AGFT's cap binds here
