"""The dataset registry: every registered dataset loads from a format-faithful fixture (or its bundled data)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dataset_fixtures import BUNDLED, FIXTURES, Fixture, color, image, save
from pmgaft.cli import main
from pmgaft.data import DATASETS, ImageDataset, load_dataset, make_transform, stratified_subset
from pmgaft.data.offline import DEBIAN_FASHION_MNIST
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
