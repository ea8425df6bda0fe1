"""The dataset registry: every registered dataset loads from a format-faithful fixture (or its bundled data)."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from dataset_fixtures import BUNDLED, FIXTURES, Fixture, color, image, save
from pmgaft.cli import main
from pmgaft.data import (DATASETS, PAPER_DATASETS, ImageDataset, describe_transform, load_dataset, make_transform,
                         preprocess_for, stratified_subset)
from pmgaft.data.base import FileImages
from pmgaft.data.offline import DEBIAN_FASHION_MNIST
from pmgaft.data.reference import describe_data, reference_split
from pmgaft.data.transforms import transform_identity
from pmgaft.data.splits import UNSPLIT_SPLITS
from pmgaft.errors import PmgaftError

FIXTURE_SPLITS = [(name, split) for name in FIXTURES for split in DATASETS[name].splits]


def check_items(ds: ImageDataset, size: tuple[int, int] | None = None, gray: bool = False) -> None:
    """Every item: float [3, H, W] in [0, 1], an int label equal to ``.targets``, a solid colour of that label."""
    for i in range(len(ds)):
        x, y = ds[i]
        assert isinstance(y, int) and y == ds.targets[i] and 0 <= y < len(ds.classes)
        assert x.dtype == torch.float32 and x.ndim == 3 and x.shape[0] == 3
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        if size is not None:
            assert tuple(x.shape[1:]) == size
            mean = x.mean(dim=(1, 2)).numpy() * 255
            r = color(y)[0]
            # the fixture image of label y (grayscale ones keep the red value in all channels)
            assert np.abs(mean - color(y)).max() < 8 or np.abs(mean - r).max() < 8, (i, y, mean)


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_registered_dataset_is_exercised(name: str) -> None:
    assert name in FIXTURES or name in BUNDLED, f"add a fixture for {name!r} in tests/dataset_fixtures.py"
    spec = DATASETS[name]
    assert spec.name == name and spec.layout and spec.splits and "test" in spec.splits
    assert spec.download or spec.source or spec.offline


@pytest.mark.parametrize(("name", "split"), FIXTURE_SPLITS)
def test_loads_fixture(name: str, split: str, tmp_path: Path) -> None:
    fixture: Fixture = FIXTURES[name](tmp_path)
    ds = load_dataset(name, tmp_path, split)
    assert ds.location is not None and tmp_path in ds.location.parents
    assert ds.classes == fixture.classes
    if split in fixture.splits:
        assert ds.targets == fixture.splits[split]
    else:  # unsplit sets: train/test are a partition of 'all'
        assert split in ("train", "test") and 0 < len(ds) < len(fixture.splits["all"])
    check_items(ds, fixture.size, fixture.gray)


@pytest.mark.parametrize("name", [n for n in FIXTURES if DATASETS[n].splits == UNSPLIT_SPLITS])
def test_unsplit_sets_get_a_deterministic_stratified_split(name: str, tmp_path: Path) -> None:
    FIXTURES[name](tmp_path)
    whole = load_dataset(name, tmp_path, "all")
    train, test = (load_dataset(name, tmp_path, s) for s in ("train", "test"))
    assert sorted(train._indices + test._indices) == list(range(len(whole)))
    assert set(test.targets) == set(whole.targets)  # every class with >= 2 images is in test
    assert load_dataset(name, tmp_path, "test")._indices == test._indices


@pytest.mark.parametrize("name", list(BUNDLED))
def test_bundled_offline_sets(name: str) -> None:
    spec = DATASETS[name]
    for split, size in BUNDLED[name].items():
        ds = load_dataset(name, "/nonexistent/root/is/ignored", split)
        assert len(ds) == size and len(ds.classes) == spec.num_classes
        assert min(ds.targets) >= 0 and max(ds.targets) < spec.num_classes
        side = spec.native_size or 224
        check_items(ds.select(range(3), split))
        assert tuple(ds[0][0].shape) == (3, side, side)


def test_foolbox_labels_come_from_file_names() -> None:
    ds = load_dataset("foolbox_cifar10", ".")
    names = sorted(p.name for p in ds.location.glob("cifar10_*"))
    assert ds.targets == [int(n.rsplit("_", 1)[1].split(".")[0]) for n in names]
    assert ds.classes[ds.targets[0]] == "cat"  # cifar10_00_3.png


def test_fashion_mnist_from_debian_package(tmp_path: Path) -> None:
    if not (DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"{DEBIAN_FASHION_MNIST} missing (apt-get install dataset-fashion-mnist)")
    ds = load_dataset("fashion_mnist", tmp_path)
    assert len(ds) == 10_000 and ds.location == DEBIAN_FASHION_MNIST
    assert len(load_dataset("fashion_mnist", tmp_path, "train")) == 60_000
    check_items(ds.select(range(4), "test"))


def test_folder_dataset(tmp_path: Path) -> None:
    for split, files in {"train": ["cat/a.png", "dog/b.jpg"], "test": ["cat/c.png", "dog/d.png", "dog/e.jpg"]}.items():
        for rel in files:
            save(tmp_path / split / rel, ["cat", "dog"].index(rel.split("/")[0]))
    ds = load_dataset(f"folder:{tmp_path}", "ignored")
    assert ds.classes == ["cat", "dog"] and ds.targets == [0, 1, 1] and ds.location == tmp_path / "test"
    check_items(ds, (224, 224))
    assert len(load_dataset(f"folder:{tmp_path / 'train'}", "ignored")) == 2


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: load_dataset("cifar1O", p), "unknown dataset 'cifar1O'. Did you mean 'cifar10'"),
    (lambda p: load_dataset("food101", p), "download it with `pmgaft datasets --data-root"),
    (lambda p: load_dataset("imagenet", p), "image-net.org"),
    (lambda p: load_dataset("stanford_cars", p, download=True), "cannot be downloaded automatically"),
    (lambda p: load_dataset("cifar10", p, "val"), "no split 'val'; valid: train, test"),
    (lambda p: (p / "cifar-10-batches-py").mkdir() or load_dataset("cifar10", p),
     "missing batches.meta, test_batch"),
    (lambda p: (p / "tiny-imagenet-200").mkdir() or load_dataset("tinyimagenet", p), "missing wnids.txt"),
    (lambda p: load_dataset(f"folder:{p / 'nope'}", p), "does not exist"),
    (lambda p: load_dataset(f"folder:{p}", p), "holds no images in class folders"),
])
def test_errors_name_the_fix(make, message: str, tmp_path: Path) -> None:
    with pytest.raises(PmgaftError) as info:
        make(tmp_path)
    assert message in str(info.value)


def test_malformed_files_are_clear_errors(tmp_path: Path) -> None:
    FIXTURES["cifar10"](tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(PmgaftError, match="dataset 'cifar10' could not be read from .*cifar-10-batches-py"):
        load_dataset("cifar10", tmp_path)
    FIXTURES["tinyimagenet"](tmp_path)
    (tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99999999\n")
    with pytest.raises(PmgaftError, match="val_annotations.txt:1: expected"):
        load_dataset("tinyimagenet", tmp_path)


def test_dataset_folder_itself_is_accepted_as_root(tmp_path: Path) -> None:
    FIXTURES["tinyimagenet"](tmp_path)
    FIXTURES["dtd"](tmp_path)
    assert len(load_dataset("tinyimagenet", tmp_path / "tiny-imagenet-200")) == 3
    assert len(load_dataset("dtd", tmp_path / "dtd")) == 3


def test_transform_presets_and_batching(tmp_path: Path) -> None:
    FIXTURES["pcam"](tmp_path)
    assert load_dataset("pcam", tmp_path)[0][0].shape == (3, 96, 96)  # "clip": native, the model upsamples
    assert load_dataset("pcam", tmp_path, transform="official")[0][0].shape == (3, 224, 224)  # as PMG_AFT.py
    assert make_transform(DATASETS["cifar10"], "official")(image(0)).shape[1:] == (8, 10)
    with pytest.raises(PmgaftError, match="unknown transform preset"):
        load_dataset("pcam", tmp_path, transform="imagenet")
    x, y = next(iter(torch.utils.data.DataLoader(load_dataset("pcam", tmp_path), batch_size=4)))
    assert x.shape == (4, 3, 96, 96) and y.tolist() == [0, 1, 1, 0]


class _Labels(torch.utils.data.Dataset):
    """A dataset without ``.targets`` (stratified_subset reads labels through __getitem__)."""

    def __init__(self, labels: list[int]) -> None:
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[None, int]:
        return None, self.labels[i]


def test_stratified_subset() -> None:
    ds = load_dataset("mnist", ".", "test")  # 10 classes x 100
    a = stratified_subset(ds, 25, seed=0)
    assert a == stratified_subset(ds, 25, seed=0) and a != stratified_subset(ds, 25, seed=1)
    assert len(a) == 25 == len(set(a)) and a == sorted(a)
    counts = np.bincount([ds.targets[i] for i in a], minlength=10)
    assert counts.min() >= 2 and counts.max() <= 3  # every class, proportional
    skewed = _Labels([0] * 90 + [1] * 9 + [2] * 1)
    b = stratified_subset(skewed, 10, seed=3)
    assert np.bincount([skewed.labels[i] for i in b]).tolist() == [8, 1, 1]  # shares 9/0.9/0.1, >= 1 each
    for n in range(3, 100):
        counts = np.bincount([skewed.labels[i] for i in stratified_subset(skewed, n, seed=n)], minlength=3)
        assert counts.sum() == n and counts.min() >= 1 and (counts <= [90, 9, 1]).all()
    assert len(set(skewed.labels[i] for i in stratified_subset(skewed, 2))) == 2  # n < C: distinct classes
    assert stratified_subset(skewed, 1000) == list(range(100))
    with pytest.raises(PmgaftError):
        stratified_subset(skewed, -1)


def test_datasets_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    FIXTURES["cifar10"](tmp_path)
    (tmp_path / "food-101").mkdir()  # present but empty: shown as missing, with the fix
    assert main(["datasets", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in DATASETS}
    assert set(rows) == set(DATASETS)
    assert " present " in rows["cifar10"] and " 4 " in rows["cifar10"]
    assert " missing " in rows["food101"] and f"--data-root {tmp_path} --download food101" in rows["food101"]
    assert " missing " in rows["imagenet"] and "image-net.org" in rows["imagenet"]
    assert " bundled " in rows["mnist"] and "1,000" in rows["mnist"]
    assert main(["datasets", "--data-root", str(tmp_path), "--download", "imagenet"]) == 2
    assert "cannot be downloaded automatically" in capsys.readouterr().err


# --- transform presets of the reference protocols -------------------------------------------------------------

R_C = "Resize(256, bilinear) + CenterCrop(224)"
SQUARE = "Resize((224, 224), bilinear)"
PRESET_CASES = [  # (dataset, preset, image_size, description, output side for the fixture image)
    ("cifar10", "tga-zsr", 224, SQUARE, 224), ("cifar10", "official", 224, "native 32x32", None),
    ("cifar100", "tga-zsr", 224, SQUARE, 224), ("stl10", "tga-zsr", 224, SQUARE, 224),
    ("stl10", "official", 224, "native 96x96", None), ("pcam", "tga-zsr", 224, R_C, 224),
    ("pcam", "official", 224, R_C, 224), ("pcam", "clip", 224, "native 96x96", None),
    ("food101", "tga-zsr", 224, R_C, 224), ("food101", "official", 224, R_C, 224),
    ("food101", "tga-zsr", 336, "Resize(384, bilinear) + CenterCrop(336)", 336),
    ("food101", "clip", 224, "Resize(224, bicubic) + CenterCrop(224)", 224),
    ("sun397", "tga-zsr", 224, R_C, 224), ("digits", "tga-zsr", 32, "Resize((32, 32), bilinear)", 32),
    ("digits", "official", 224, "native 8x8", None), ("mnist", "clip", 224, "native 28x28", None),
    ("foolbox_imagenet", "tga-zsr", 224, R_C, 224), ("tinyimagenet", "train", 224, R_C, 224),
    ("cifar10", "agft", 224, "native 32x32", None), ("stl10", "agft", 224, "native 96x96", None),
    ("pcam", "agft", 224, "Resize(224, bilinear) + CenterCrop(224)", 224),
    ("food101", "agft", 224, "Resize(224, bilinear) + CenterCrop(224)", 224), ("cifar10", "ttc", 224, R_C, 224),
    ("stl10", "ttc", 224, R_C, 224), ("country211", "ttc", 224, R_C, 224), ("digits", "ttc", 224, R_C, 224),
    ("imagenet", "train224", 224, "Resize(224, bilinear) + CenterCrop(224)", 224),  # AGFT's utils.py
    ("cifar10", "train224", 224, "native 32x32", None),
]


@pytest.mark.parametrize(("name", "preset", "size", "description", "side"), PRESET_CASES)
def test_transform_presets_per_protocol(name: str, preset: str, size: int, description: str, side: int | None) -> None:
    spec = DATASETS[name]
    assert describe_transform(spec, preset, size).startswith(description)
    x = make_transform(spec, preset, size)(image(3, (40, 30)))
    assert x.shape == ((3, side, side) if side else (3, 30, 40))


def test_reference_transforms_equal_the_reference_torchvision_calls() -> None:
    """The reference codes' own calls: Resize((224, 224)) and Resize(256) + CenterCrop(224), default interpolation."""
    from torchvision import transforms as T

    real = load_dataset("foolbox_imagenet", ".").load_rgb(0)  # a real 224 px photo
    small = load_dataset("foolbox_cifar10", ".").load_rgb(0)  # a real 32 px photo
    square = T.Compose([T.Resize((224, 224)), T.ToTensor()])
    r_c = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])
    assert torch.equal(make_transform(DATASETS["cifar10"], "tga-zsr")(small), square(small))
    assert torch.equal(make_transform(DATASETS["food101"], "tga-zsr")(real), r_c(real))
    assert torch.equal(make_transform(DATASETS["food101"], "official")(real), r_c(real))
    assert torch.equal(make_transform(DATASETS["cifar10"], "official")(small), T.ToTensor()(small))
    r_c_224 = T.Compose([T.Resize(224), T.CenterCrop(224), T.ToTensor()])  # AGFT's utils.py val_transform
    assert torch.equal(make_transform(DATASETS["food101"], "agft")(real), r_c_224(real))
    assert torch.equal(make_transform(DATASETS["cifar10"], "agft")(small), T.ToTensor()(small))
    assert torch.equal(make_transform(DATASETS["cifar10"], "ttc")(small), r_c(small))  # TTC's preprocess224


def test_transform_identity() -> None:
    a = make_transform(DATASETS["food101"], "tga-zsr")
    assert transform_identity(a) == transform_identity(make_transform(DATASETS["sun397"], "official"))
    assert transform_identity(a) != transform_identity(make_transform(DATASETS["food101"], "tga-zsr", 336))
    assert transform_identity(a) != transform_identity(make_transform(DATASETS["food101"], "clip"))
    assert json.loads(json.dumps(transform_identity(a))) == transform_identity(a)
    assert transform_identity(lambda im: im) is None
    assert preprocess_for(DATASETS["mnist"], "train_augment").random
    assert not preprocess_for(DATASETS["mnist"], "train").random
    assert pickle.loads(pickle.dumps(a)).preprocess == a.preprocess  # DataLoader workers


# --- standard sizes, the whole-set split, select ------------------------------------------------------------

# docs/protocols.md: the images each set is scored on by the reference protocols (split, count)
REFERENCE_COUNTS = {
    "tinyimagenet": ("test", 10_000), "cifar10": ("test", 10_000), "cifar100": ("test", 10_000),
    "stl10": ("test", 8_000), "sun397": ("all", 108_754), "food101": ("test", 25_250),
    "oxford_pets": ("test", 3_669), "flowers102": ("test", 6_149), "dtd": ("test", 1_880),
    "eurosat": ("all", 27_000), "fgvc_aircraft": ("test", 3_333), "imagenet": ("test", 50_000),
    "caltech101": ("all", 8_677), "caltech256": ("all", 30_607), "stanford_cars": ("test", 8_041),
    "pcam": ("test", 32_768),
}


def test_standard_sizes_and_reference_splits() -> None:
    for name, spec in DATASETS.items():
        assert set(spec.sizes) == set(spec.splits), name
        unknown = {s for s, n in spec.sizes.items() if n is None}
        assert unknown == ({"train", "test"} if spec.splits == UNSPLIT_SPLITS else set()), name
    assert {n: (reference_split(n), DATASETS[n].size(reference_split(n))) for n in PAPER_DATASETS} \
        == REFERENCE_COUNTS
    row = describe_data("stl10", "test", "tga-zsr")
    assert row["n_images"] == 8_000 and row["preprocessing"] == SQUARE and "8,000" in row["split_description"]
    assert describe_data("eurosat", "test", "official")["n_images"] is None


def test_select_shares_class_metadata_and_checks_positions(tmp_path: Path) -> None:
    FIXTURES["tinyimagenet"](tmp_path)
    ds = load_dataset("tinyimagenet", tmp_path, "train")
    view = ds.select([3, 1], "val").select([1], "val2")
    assert view.wnids == ds.wnids and view.targets == [ds.targets[1]] and view.split == "val2"
    assert view.describe(0) == ds.describe(1) and view.describe(0).endswith("n01443537_1.JPEG")
    assert torch.equal(view[0][0], ds[1][0])
    with pytest.raises(PmgaftError, match=r"positions \[4\] are outside"):
        ds.select([0, 4], "x")


# --- bad images: true range, and errors that name the file --------------------------------------------------

def _png16(path: Path, values: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint16)).save(path)  # mode I;16, a 16-bit grayscale PNG


def test_16_bit_png_keeps_its_range(tmp_path: Path) -> None:
    from PIL import Image

    gray8 = np.array(load_dataset("foolbox_imagenet", ".").load_rgb(1).convert("L"))  # a real photo
    rng = np.random.default_rng(0)
    stored = np.minimum(gray8.astype(np.int64) * 257 + rng.integers(0, 129, gray8.shape), 65535)  # 16 bits
    _png16(tmp_path / "a" / "x.png", stored)
    with Image.open(tmp_path / "a" / "x.png") as im:
        assert im.mode == "I;16"
        clipped = np.asarray(im.convert("RGB"))[..., 0]
    assert (clipped == 255).mean() > 0.3  # what plain Pillow conversion does: most pixels saturate
    x, _ = load_dataset(f"folder:{tmp_path}", "test", transform=lambda im: torch.from_numpy(np.array(im)))[0]
    assert torch.equal(x[..., 0], torch.from_numpy(gray8)) and torch.equal(x[..., 1], x[..., 2])


@pytest.mark.parametrize(("mode", "expected"), [
    ("1", (255, 255, 255)), ("L", (77, 77, 77)), ("LA", (77, 77, 77)), ("RGBA", (10, 20, 30)),
    ("CMYK", (245, 235, 225)), ("P", (10, 20, 30)), ("P-transparent", (10, 20, 30)), ("I", (1, 1, 1)),
    ("F", (128, 128, 128)), ("I;16B", (1, 1, 1)),
])
def test_every_mode_becomes_rgb(mode: str, expected: tuple[int, int, int]) -> None:
    from PIL import Image

    from pmgaft.data.decode import to_rgb

    if mode.startswith("P"):
        im = Image.new("P", (4, 4), 0)
        im.putpalette([10, 20, 30] * 256)
        if mode == "P-transparent":
            im.info["transparency"] = 0
    elif mode in ("I", "I;16B"):
        im = Image.new(mode, (4, 4), 257)
    elif mode == "F":
        im = Image.new("F", (4, 4), 0.5)
    elif mode == "CMYK":
        im = Image.new("CMYK", (4, 4), (10, 20, 30, 0))
    elif mode in ("L", "LA"):
        im = Image.new(mode, (4, 4), 77 if mode == "L" else (77, 0))
    elif mode == "1":
        im = Image.new("1", (4, 4), 1)
    else:
        im = Image.new(mode, (4, 4), (10, 20, 30, 0) if mode == "RGBA" else (10, 20, 30))
    out = to_rgb(im)
    assert out.mode == "RGB" and out.getpixel((0, 0)) == expected


def test_unknown_ranges_are_refused_not_clipped(tmp_path: Path) -> None:
    from PIL import Image

    from pmgaft.data.decode import to_rgb

    with pytest.raises(ValueError, match=r"float image .* \[0.0, 2.0\]"):
        to_rgb(Image.fromarray(np.array([[0.0, 2.0]], dtype=np.float32)))
    with pytest.raises(ValueError, match=r"values in \[0, 70000\]"):
        to_rgb(Image.fromarray(np.array([[0, 70000]], dtype=np.int32)))
    Image.fromarray(np.array([[0.0, 2.0]], dtype=np.float32)).save(tmp_path / "f.tiff")
    ds = ImageDataset(FileImages([tmp_path / "f.tiff"]), [0], ["a"], name="t", split="test")
    with pytest.raises(PmgaftError, match=r"cannot decode .*f\.tiff: ValueError: float image"):
        ds[0]


def _corrupt(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 3])  # a truncated file


@pytest.mark.parametrize(("name", "split", "attribute"), [
    ("food101", "test", "_image_files"), ("dtd", "test", "_image_files"), ("stanford_cars", "test", "_samples"),
    ("imagenet", "test", "samples"), ("eurosat", "all", "samples"), ("caltech101", "all", "categories"),
    ("tinyimagenet", "test", "files"), ("folder", "test", "ImageFolder"),
])
def test_undecodable_file_fails_with_its_path(name: str, split: str, attribute: str, tmp_path: Path) -> None:
    if name == "folder":
        for rel in ("cat/a.jpg", "dog/b.jpg"):
            save(tmp_path / "f" / rel, 0)
        name = f"folder:{tmp_path / 'f'}"
    else:
        FIXTURES[name](tmp_path)
    ds = load_dataset(name, tmp_path, split)
    bad = Path(ds.describe(1))
    assert bad.is_file() and tmp_path in bad.parents
    _corrupt(bad)
    with pytest.raises(PmgaftError, match=f"cannot decode {bad}"):
        ds[1]
    ds[0]  # the others still load


def test_array_backed_items_say_where_they_live(tmp_path: Path) -> None:
    FIXTURES["cifar10"](tmp_path)
    assert load_dataset("cifar10", tmp_path).describe(2).endswith("item 2 of " + str(tmp_path / "cifar-10-batches-py")
                                                                  + "/test_batch")
    FIXTURES["stl10"](tmp_path)
    ds = load_dataset("stl10", tmp_path)
    assert "item 1 of" in ds.describe(1) and ds.describe(1).endswith("test_X.bin")
    check_items(ds, (96, 96))
