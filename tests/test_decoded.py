"""Decode once: cached tensors equal the dataset's own, keys hit and miss when they should, builds are atomic,
bad files are collected (all of them, up to a cap) instead of stopping at the first."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torchvision import transforms as T

from dataset_fixtures import FIXTURES, save
from pmgaft.data import load_dataset
from pmgaft.data import cache as decoded_cache
from pmgaft.data.cache import build_decoded
from pmgaft.data.scan import scan_images
from pmgaft.errors import PmgaftError


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without live in-memory caches from other tests."""
    monkeypatch.setattr(decoded_cache, "_LIVE", decoded_cache.weakref.WeakValueDictionary())


def direct(ds, positions) -> torch.Tensor:
    return torch.stack([ds[p][0] for p in positions])


@pytest.mark.parametrize(("name", "preset", "size", "storage"), [
    ("cifar10", "tga-zsr", 224, "memory"), ("cifar10", "official", 224, "disk"), ("stl10", "tga-zsr", 64, "disk"),
    ("food101", "official", 224, "memory"), ("caltech101", "tga-zsr", 96, "disk"), ("pcam", "clip", 224, "auto"),
])
def test_cached_tensors_are_the_datasets_own(name: str, preset: str, size: int, storage: str, tmp_path: Path) -> None:
    FIXTURES[name](tmp_path / "data")
    ds = load_dataset(name, tmp_path / "data", "all" if name == "caltech101" else "test", transform=preset,
                      image_size=size)
    positions = list(range(len(ds)))[::-1]  # any order: rows follow the positions given
    decoded = build_decoded(ds, positions, storage=storage, cache_dir=tmp_path / "cache", progress=False)
    assert decoded.positions == positions and decoded.labels.tolist() == [ds.targets[p] for p in positions]
    assert torch.equal(decoded.images(range(len(decoded))), direct(ds, positions))  # bit-identical
    x, y = decoded[1]
    assert torch.equal(x, ds[positions[1]][0]) and y == ds.targets[positions[1]]
    assert (decoded.path is not None) == (storage == "disk") and not decoded.from_cache


def test_real_images_lossless_and_batches(tmp_path: Path) -> None:
    ds = load_dataset("mnist", ".", "test", transform="tga-zsr", image_size=32)
    positions = list(range(0, 1000, 7))
    decoded = build_decoded(ds, positions, storage="disk", cache_dir=tmp_path, num_workers=2, batch_size=16,
                            progress=False)
    seen = []
    for x, y, rows in decoded.batches(50):
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)
        assert torch.equal(x, direct(ds, [positions[r] for r in rows]))
        assert torch.equal(x, torch.round(x * 255) / 255)  # exactly k / 255
        assert y.tolist() == [ds.targets[positions[r]] for r in rows]
        seen += rows.tolist()
    assert seen == list(range(len(positions)))


def test_second_build_hits_and_other_keys_miss(tmp_path: Path) -> None:
    FIXTURES["food101"](tmp_path / "data")
    ds = load_dataset("food101", tmp_path / "data", "test", transform="tga-zsr")
    kw = {"storage": "disk", "cache_dir": tmp_path / "cache", "progress": False}
    first = build_decoded(ds, [0, 1], **kw)
    assert not first.from_cache
    decoded_cache._LIVE.clear()  # as a new process would: only the disk cache is left
    again = build_decoded(ds, [0, 1], **kw)
    assert again.from_cache and again.key == first.key and torch.equal(again.images([0, 1]), first.images([0, 1]))
    assert build_decoded(ds, [0, 1], **kw).from_cache  # the live one, in this process
    mem = build_decoded(ds, [0, 2], storage="memory", progress=False)
    assert not mem.from_cache and build_decoded(ds, [0, 2], storage="memory", progress=False).from_cache
    other_subset = build_decoded(ds, [0, 2], **kw)
    other_transform = build_decoded(load_dataset("food101", tmp_path / "data", "test", transform="clip"), [0, 1],
                                    **kw)
    other_size = build_decoded(load_dataset("food101", tmp_path / "data", "test", transform="tga-zsr",
                                            image_size=112), [0, 1], **kw)
    assert len({first.key, other_subset.key, other_transform.key, other_size.key}) == 4
    assert other_subset.key == mem.key and other_subset.from_cache  # the live in-memory build of that subset
    assert not (other_transform.from_cache or other_size.from_cache)
    assert other_size.shape == (3, 112, 112)
    time.sleep(0.01)
    save(Path(ds.describe(0)), 1)  # the file changed on disk: a new key
    decoded_cache._LIVE.clear()
    changed = build_decoded(ds, [0, 1], **kw)
    assert changed.key != first.key and not changed.from_cache
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())  # no temporary folder left behind
    assert names == sorted([first.key, other_transform.key, other_size.key, changed.key])


_KILLED_BUILD = """
import sys, time
sys.path.insert(0, {tests!r})
import pmgaft
from pmgaft.data import load_dataset
from pmgaft.data.cache import build_decoded
from pmgaft.data.base import FileImages

class Slow(FileImages):
    def __call__(self, i):
        time.sleep(0.2)
        return super().__call__(i)

ds = load_dataset("eurosat", {root!r}, "all", transform="tga-zsr", image_size=32)
ds._images = Slow(ds._images.paths)
print("start", flush=True)
build_decoded(ds, storage="disk", cache_dir={cache!r}, progress=False, batch_size=1)
print("finished", flush=True)
"""


def test_a_killed_build_leaves_no_readable_cache(tmp_path: Path) -> None:
    FIXTURES["eurosat"](tmp_path / "data")
    cache = tmp_path / "cache"
    script = _KILLED_BUILD.format(tests=str(Path(__file__).parent), root=str(tmp_path / "data"), cache=str(cache))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "start"
        deadline = time.time() + 60
        while not any(p.name.startswith(".") for p in cache.glob("*")) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # some images written
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    left = list(cache.iterdir())
    assert len(left) == 1 and left[0].name.startswith(".") and ".tmp-" in left[0].name  # only the temporary
    ds = load_dataset("eurosat", tmp_path / "data", "all", transform="tga-zsr", image_size=32)
    decoded = build_decoded(ds, storage="disk", cache_dir=cache, progress=False)
    assert not decoded.from_cache and torch.equal(decoded.images(range(len(ds))), direct(ds, range(len(ds))))
    assert [p.name for p in cache.iterdir()] == [decoded.key]  # the stale temporary was removed


def test_an_interrupted_build_in_process_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    FIXTURES["dtd"](tmp_path / "data")
    ds = load_dataset("dtd", tmp_path / "data", "test", transform="official")

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(decoded_cache._FileWriter, "finish", stop)
    with pytest.raises(KeyboardInterrupt):
        build_decoded(ds, storage="disk", cache_dir=tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def _bad_folder(root: Path, n_bad: int) -> Path:
    for i in range(4):
        save(root / "cat" / f"ok{i}.jpg", 0)
        save(root / "dog" / f"ok{i}.png", 1)
    for i in range(n_bad):
        (root / "dog" / f"bad{i:02d}.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return root


def test_bad_files_are_all_listed_or_skipped_and_reported(tmp_path: Path) -> None:
    root = _bad_folder(tmp_path / "f", 25)
    ds = load_dataset(f"folder:{root}", "test", transform="official")
    kw = {"storage": "disk", "cache_dir": tmp_path / "cache", "progress": False}
    with pytest.raises(PmgaftError) as info:
        build_decoded(ds, **kw)
    message = str(info.value)
    assert "25 image(s) cannot be decoded" in message and "... and 5 more" in message
    listed = [line for line in message.splitlines() if line.strip().startswith(str(root / "dog" / "bad"))]
    assert len(listed) == 20 and "skip_corrupt=True" in message
    assert list((tmp_path / "cache").iterdir()) == []  # nothing cached
    decoded = build_decoded(ds, skip_corrupt=True, **kw)
    report = decoded.report.to_dict()
    assert report["n_skipped"] == 25 and len(report["skipped"]) == 20
    assert report["skipped"][0].startswith(str(root / "dog" / "bad00.jpg") + ": ")
    assert len(decoded) == 8 and all("ok" in ds.describe(p) for p in decoded.positions)
    assert torch.equal(decoded.images(range(8)), direct(ds, decoded.positions))
    decoded_cache._LIVE.clear()
    with pytest.raises(PmgaftError, match="recorded by an earlier skip_corrupt build"):
        build_decoded(ds, **kw)
    assert build_decoded(ds, skip_corrupt=True, **kw).report.n_skipped == 25
    scan = scan_images(ds, num_workers=2, progress=False, max_listed=3)
    assert scan.n_skipped == 25 and len(scan.skipped) == 3
    assert scan_images(ds, [0, 1], progress=False).to_dict() == {"n_skipped": 0, "skipped": []}


def test_images_of_mixed_sizes_are_stored_per_image(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "f"
    for i, size in enumerate([(10, 8), (10, 8), (7, 5), (12, 12)]):
        (root / "c").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (i * 40, 20, 30)).save(root / "c" / f"{i}.png")
    ds = load_dataset(f"folder:{root}", "test")
    ds.transform = None  # native size: ToTensor only
    for storage in ("memory", "disk"):
        decoded = build_decoded(ds, storage=storage, cache_dir=tmp_path / "cache", progress=False)
        assert decoded.shape is None
        assert torch.equal(decoded.images([0, 1]), direct(ds, [0, 1]))
        assert all(torch.equal(decoded[i][0], ds[i][0]) for i in range(4))
        with pytest.raises(PmgaftError, match="different sizes"):
            decoded.images([1, 2])


def test_custom_and_random_transforms(tmp_path: Path) -> None:
    ds = load_dataset("digits", ".", "test")
    ds.transform = T.Compose([T.Resize(16), T.ToTensor()])
    with pytest.raises(PmgaftError, match="transform_id="):
        build_decoded(ds, range(4), progress=False)
    decoded = build_decoded(ds, range(4), transform_id="resize16", progress=False)
    assert torch.equal(decoded.images(range(4)), direct(ds, range(4)))
    ds.transform = T.Compose([T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
    with pytest.raises(PmgaftError, match="not multiples of 1/255"):
        build_decoded(ds, range(4), transform_id="normalized", progress=False)
    with pytest.raises(PmgaftError, match="is random"):
        build_decoded(load_dataset("digits", ".", "train", transform="train_augment"), range(4), progress=False)
    with pytest.raises(PmgaftError, match="outside"):
        build_decoded(load_dataset("digits", "."), [10_000], progress=False)
    with pytest.raises(PmgaftError, match="storage"):
        build_decoded(load_dataset("digits", "."), storage="ram")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_serving_is_identical(tmp_path: Path) -> None:
    ds = load_dataset("mnist", ".", "test", transform="tga-zsr", image_size=224)
    decoded = build_decoded(ds, range(64), progress=False)
    on_gpu = decoded.images(range(64), device="cuda", pin_memory=True)
    assert on_gpu.is_cuda and torch.equal(on_gpu.cpu(), decoded.images(range(64)))
    assert decoded.images(range(4), pin_memory=True).is_pinned()
