"""Hugging Face hub copies of the test sets, read offline from a Hugging Face cache the tests write.

Every test goes through pmgaft's real download code (``huggingface_hub.snapshot_download``) with
``HF_HUB_OFFLINE=1``: it resolves the cached snapshot exactly as it would after a download.
"""
from __future__ import annotations

import io
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dataset_fixtures import FIXTURES, color
from eval_fixtures import cards
from hub_data_fixtures import COMMIT, encode, offline_hub, parquet_file, wds_files, write_repo
from pmgaft.cli import main
from pmgaft.data import DATASETS, HUB_SOURCES, build_decoded, load_dataset
from pmgaft.data.cli import hub_status
from pmgaft.data.classnames import CIFAR10
from pmgaft.data.hub_sources import HubSplit
from pmgaft.errors import PmgaftError
from pmgaft.prompts import curated_classnames, get_prompts

FORMATS = ("webp", "png", "jpg")
TEMPLATES = ["a photo of a {c}.", "a blurry photo of a {c}."]


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Hugging Face cache, offline."""
    return offline_hub(monkeypatch, tmp_path / "hf")


def sized(monkeypatch: pytest.MonkeyPatch, name: str, size: int) -> None:
    """The hub source of ``name`` expecting ``size`` images (the fixtures are small)."""
    src = HUB_SOURCES[name]
    splits = {k: replace(v, size=size) for k, v in src.splits.items()}
    bench = replace(src.benchmark_test, size=size) if src.benchmark_test else None
    monkeypatch.setitem(HUB_SOURCES, name, replace(src, splits=splits, benchmark_test=bench))


def cifar10_copy(hub: Path, monkeypatch: pytest.MonkeyPatch, n: int = 12, commit: str = COMMIT, **kwargs
                 ) -> list[int]:
    """CIFAR-10's hub copy (at ``commit``) with its classes in reverse order (hub label 9 - c for class c); returns
    the registered labels of its samples in order. Images cycle through webp, png and jpg."""
    labels = [t % 10 for t in range(n)]
    rows = [(9 - t, FORMATS[i % 3], t) for i, t in enumerate(labels)]  # the image has its class's colour
    write_repo(hub, HUB_SOURCES["cifar10"].repo, wds_files(CIFAR10[::-1], TEMPLATES, {"test": rows}, **kwargs),
               commit=commit)
    sized(monkeypatch, "cifar10", n)
    return labels


def mean_rgb(x) -> np.ndarray:
    return x.mean(dim=(1, 2)).numpy() * 255


# --- readers -------------------------------------------------------------------------------------------------

def test_webdataset_copy_reads_every_image_format_with_labels_in_the_registered_order(hub, monkeypatch):
    labels = cifar10_copy(hub, monkeypatch)
    ds = load_dataset("cifar10", "/nonexistent", "test", source="hub", transform=lambda im: im)
    assert ds.targets == labels and ds.classes == CIFAR10 and len(ds) == 12
    assert ds.data_source == "hub:clip-benchmark/wds_vtab-cifar10" and ds.hub.revision == ds.location.name
    assert "10 of 10 classes reordered" in ds.hub.class_order and ds.hub.lost.n_skipped == 0
    assert ds.hub.text.classnames == CIFAR10 and ds.hub.text.templates == TEMPLATES
    assert {ds.describe(i).split("(.")[1][:4].rstrip(")") for i in range(3)} == set(FORMATS)
    for i, y in enumerate(labels):
        image, label = ds[i]
        pixel = np.asarray(image.convert("RGB"), dtype=float).mean(axis=(0, 1))
        assert label == y and np.abs(pixel - color(y)).max() < 6, (i, pixel, color(y))
    assert "test/1.tar" in ds.describe(4) and "sample s0000004 (.png)" in ds.describe(4)


def test_decode_once_cache_and_subsets_work_on_shards(hub, monkeypatch):
    cifar10_copy(hub, monkeypatch)
    ds = load_dataset("cifar10", "/nonexistent", source="hub", transform="tga-zsr", image_size=32)
    decoded = build_decoded(ds, [0, 5, 11], progress=False)
    for row, pos in enumerate(decoded.positions):
        x, y = ds[pos]
        assert int(decoded.labels[row]) == y and (decoded.images([row])[0] == x).all()


def test_parquet_copy_tinyimagenet_maps_wordnet_ids_to_the_sorted_order(hub, monkeypatch):
    from pmgaft.prompts._sources import data_json

    wnids = sorted(data_json("classnames")["tinyimagenet"])  # the registered label order
    names = [wnids[5], wnids[0], wnids[3]] + [w for i, w in enumerate(wnids) if i not in (0, 3, 5)]  # file order
    rows = [(0, "jpg", 5), (1, "png", 0), (2, "webp", 3), (1, "jpg", 0)]  # ClassLabel ids; colour = sorted label
    files = {"data/train-00000-of-00001.parquet": parquet_file(rows[:1], names),
             "data/valid-00000-of-00001.parquet": parquet_file(rows, names, rows_per_group=3)}
    write_repo(hub, HUB_SOURCES["tinyimagenet"].repo, files)
    sized(monkeypatch, "tinyimagenet", 4)
    ds = load_dataset("tinyimagenet", "/nonexistent", source="hub", transform=lambda im: im)
    assert ds.targets == [5, 0, 3, 0] and ds.classes == wnids and ds.hub.text is None
    assert "matched by name with the registered class ids" in ds.hub.class_order
    for i in range(4):
        pixel = np.asarray(ds[i][0], dtype=float).mean(axis=(0, 1))
        assert np.abs(pixel - color(ds.targets[i])).max() < 6
    assert "row 0 of row group 1 of" in ds.describe(3)


def test_parquet_copy_caltech256_is_every_split_together_with_one_based_labels_named_by_text(hub, monkeypatch):
    names = curated_classnames("caltech256")
    texts = {k + 1: f"{k + 1:03d}.{n.replace(' ', '-')}" for k, n in enumerate(names)}  # 1-based, folder names
    labels = list(range(257, 0, -1))  # every class once, the text column naming each
    splits = {"train": labels[:200], "validation": labels[200:230], "test": labels[230:]}
    files = {f"data/{split}-00000-of-00001.parquet": parquet_file([(t, "png") for t in rows], texts=texts,
                                                                 rows_per_group=64) for split, rows in splits.items()}
    write_repo(hub, HUB_SOURCES["caltech256"].repo, files)
    sized(monkeypatch, "caltech256", 257)
    ds = load_dataset("caltech256", "/nonexistent", "all", source="hub")
    assert len(ds.classes) == 257 and sorted(ds.targets) == list(range(257))
    # files in path order (test, train, validation), 1-based labels shifted by their class names
    assert [ds.targets[i] for i in (0, 26, 27, 227)] == [t - 1 for t in (27, 1, 257, 57)]
    with pytest.raises(PmgaftError, match="holds no images of pmgaft's 'test' split: it holds the whole set"):
        load_dataset("caltech256", "/nonexistent", "test", source="hub")


# --- the count, damaged shards, labels ------------------------------------------------------------------------

def test_sample_count_is_checked_against_the_split_size(hub, monkeypatch):
    cifar10_copy(hub, monkeypatch, n=12)
    sized(monkeypatch, "cifar10", 13)
    with pytest.raises(PmgaftError, match=r"1 sample\(s\) cannot be read:\n  1 sample\(s\) missing: the copy holds "
                                          r"12 of 13"):
        load_dataset("cifar10", "x", source="hub")
    ds = load_dataset("cifar10", "x", source="hub", skip_corrupt=True)
    assert len(ds) == 12 and ds.hub.lost.n_skipped == 1
    sized(monkeypatch, "cifar10", 11)
    with pytest.raises(PmgaftError, match="holds 12 samples where the official test split has 11"):
        load_dataset("cifar10", "x", source="hub", skip_corrupt=True)


def _rewrite_shard(hub: Path, rel: str, change) -> None:
    path = next(hub.glob("datasets--*/snapshots/*")) / rel
    data = change(path.read_bytes())
    path.unlink()  # the snapshot entry is a symlink into blobs/: replace the file, not the shared blob
    path.write_bytes(data)


def _header_offset(data: bytes, name: str) -> int:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return next(m.offset for m in tar.getmembers() if m.name == name)


def _garbage_header(data: bytes, name: str) -> bytes:
    at = _header_offset(data, name)
    return data[:at] + b"garbage!" * 64 + data[at + 512:]


@pytest.mark.parametrize(("damage", "message", "lost"), [  # shard 1 holds samples 3 (webp), 4 (png), 5 (jpg)
    (lambda d: d[:_header_offset(d, "s0000004.png") + 530],  # cut inside sample 4's image
     r"test/1.tar: sample s0000004: its .png runs past the end of the file", 2),
    (lambda d: d[:_header_offset(d, "s0000004.png") + 100],  # cut inside sample 4's tar header
     r"test/1.tar: after sample s0000003: unreadable tar header at byte \d+", 2),
    (lambda d: d[:_header_offset(d, "s0000005.jpg")],  # cut exactly between two samples
     r"test/1.tar: after sample s0000004: the file ends without tar's end-of-archive block", 1),
    (lambda d: _garbage_header(d, "s0000005.jpg"), r"test/1.tar: after sample s0000004: unreadable tar header", 1),
])
def test_damaged_shard_names_the_shard_and_the_sample(hub, monkeypatch, damage, message, lost):
    cifar10_copy(hub, monkeypatch, n=9)
    _rewrite_shard(hub, "test/1.tar", damage)
    with pytest.raises(PmgaftError, match=message) as info:
        load_dataset("cifar10", "x", source="hub")
    assert "--force-download" in str(info.value) and "--skip-corrupt" in str(info.value)
    ds = load_dataset("cifar10", "x", source="hub", skip_corrupt=True)
    assert len(ds) == 9 - lost and ds.hub.lost.n_skipped == lost
    assert any("test/1.tar" in line for line in ds.hub.lost.skipped)
    assert ds.describe(len(ds) - 1).startswith("sample s0000008")  # the shards after the damaged one are read


def test_sample_without_label_or_image_and_bad_label_are_named(hub, monkeypatch):
    rows = [(t, "webp") for t in range(6)]
    extra = {1: {"webp": encode(1, "webp")}, 2: {"cls": b"2"}, 3: {"webp": encode(3, "webp"), "cls": b"10"}}
    write_repo(hub, HUB_SOURCES["cifar10"].repo, wds_files(CIFAR10, TEMPLATES, {"test": rows}, extra=extra))
    sized(monkeypatch, "cifar10", 6)
    with pytest.raises(PmgaftError) as info:
        load_dataset("cifar10", "x", source="hub")
    text = str(info.value)
    assert "3 sample(s) cannot be read" in text and "sample s0000001: no .cls label" in text
    assert "sample s0000002: no image" in text and "sample s0000003: label '10' is not a class index in 0..9" in text
    ds = load_dataset("cifar10", "x", source="hub", skip_corrupt=True)
    assert ds.targets == [0, 4, 5] and ds.hub.lost.n_skipped == 3


def test_undecodable_image_in_a_good_shard_is_skipped_by_the_decode_pass(hub, monkeypatch):
    rows = [(t, "webp") for t in range(4)]
    jpg = encode(2, "jpg")
    extra = {2: {"jpg": jpg[:len(jpg) // 2], "cls": b"2"}}
    write_repo(hub, HUB_SOURCES["cifar10"].repo, wds_files(CIFAR10, TEMPLATES, {"test": rows}, extra=extra))
    sized(monkeypatch, "cifar10", 4)
    ds = load_dataset("cifar10", "x", source="hub")
    with pytest.raises(PmgaftError, match=r"cannot be decoded:\n  sample s0000002 \(.jpg\) of .*test/0.tar"):
        build_decoded(ds, progress=False)
    assert build_decoded(ds, progress=False, skip_corrupt=True).positions == [0, 1, 3]


def test_class_names_that_do_not_match_are_refused_not_shifted(hub, monkeypatch):
    names = CIFAR10[:9] + ["lorry"]
    write_repo(hub, HUB_SOURCES["cifar10"].repo, wds_files(names, TEMPLATES, {"test": [(0, "png")]}))
    sized(monkeypatch, "cifar10", 1)
    with pytest.raises(PmgaftError, match=r"class names do not match pmgaft's 10 classes one to one .*only in the "
                                          r"copy: \['lorry'\]; only in pmgaft's list: \['truck'\]"):
        load_dataset("cifar10", "x", source="hub")


def test_imagenet_names_that_repeat_are_kept_at_their_labels_and_refused_elsewhere(hub, monkeypatch):
    """CLIP_benchmark's ImageNet names (pmgaft's curated list) hold 'missile' and 'sunglasses' twice: matched where
    the copy has them at the same labels; a copy that moves them cannot say which is which and is refused."""
    names = curated_classnames("imagenet")
    assert names.count("missile") == names.count("sunglasses") == 2
    rows = [(t, "jpg") for t in (657, 744, 836, 837, 0, 999)]
    write_repo(hub, HUB_SOURCES["imagenet"].repo, wds_files(names, TEMPLATES, {"test": rows}))
    sized(monkeypatch, "imagenet", 6)
    ds = load_dataset("imagenet", "x", source="hub")
    assert ds.targets == [657, 744, 836, 837, 0, 999] and ds.classes == names
    assert "the same order; repeated names ['missile', 'sunglasses'] at the same labels" in ds.hub.class_order
    write_repo(hub, HUB_SOURCES["imagenet"].repo, wds_files(names[::-1], TEMPLATES, {"test": rows}))
    with pytest.raises(PmgaftError, match=r"do not match pmgaft's 1000 classes one to one \(closest: pmgaft's "
                                          r"curated class names; 'sunglasses' is 2 class\(es\) at labels "
                                          r"\[162, 163\] of the copy and 2 at \[836, 837\]"):
        load_dataset("imagenet", "x", source="hub")


# --- where the data comes from ------------------------------------------------------------------------------

def test_offline_with_nothing_cached_and_sets_without_a_hub_copy(hub, tmp_path, capsys):
    with pytest.raises(PmgaftError, match=r"not in the Hugging Face cache .*hf: download it with `pmgaft datasets "
                                          r"--download cifar10 --source hub`, or set HF_HUB_CACHE"):
        load_dataset("cifar10", tmp_path, source="hub")
    assert main(["datasets", "--data-root", str(tmp_path), "--download", "cifar10", "--source", "hub"]) == 2
    assert "HF_HUB_OFFLINE is set and it is not in the Hugging Face cache" in capsys.readouterr().err
    assert main(["datasets", "--download", "cifar10", "mnist", "--source", "hub"]) == 2
    assert "dataset 'mnist' has no Hugging Face hub copy" in capsys.readouterr().err
    assert not any(hub.iterdir())  # nothing fetched before the bad name was found
    with pytest.raises(PmgaftError, match="missing cifar-10-batches-py/.*; nor is its hub copy "
                                          "clip-benchmark/wds_vtab-cifar10 in the Hugging Face cache"):
        load_dataset("cifar10", tmp_path, source="auto")


def test_an_interrupted_download_is_named_not_read_as_a_smaller_set(hub, monkeypatch, tmp_path, capsys):
    """The repository's file listing (cached with the snapshot) names a shard the cache lacks."""
    rows = [(t % 10, "png") for t in range(6)]
    files = wds_files(CIFAR10, TEMPLATES, {"test": rows})
    del files["test/1.tar"]
    write_repo(hub, HUB_SOURCES["cifar10"].repo, files, listed=["test/1.tar"])
    sized(monkeypatch, "cifar10", 6)
    with pytest.raises(PmgaftError, match=r"clip-benchmark/wds_vtab-cifar10\) is only partly in the Hugging Face "
                                          r"cache .*hf \(an interrupted download\): run `pmgaft datasets --download "
                                          r"cifar10 --source hub` online to finish it"):
        load_dataset("cifar10", tmp_path, source="hub")
    assert main(["datasets", "--download", "cifar10", "--source", "hub"]) == 2
    assert "only partly in the Hugging Face cache" in capsys.readouterr().err
    assert hub_status(DATASETS["cifar10"]) == "not cached"  # what `pmgaft datasets` lists


def test_unknown_repository_is_one_sentence(hub, monkeypatch):
    import httpx2
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    def missing(repo_id, **kwargs):
        request = httpx2.Request("GET", f"https://huggingface.co/api/datasets/{repo_id}")
        raise RepositoryNotFoundError("404", response=httpx2.Response(404, request=request))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", missing)
    with pytest.raises(PmgaftError, match="the Hugging Face hub has no dataset repository "
                                          "'clip-benchmark/wds_vtab-pcam' that this machine may read"):
        load_dataset("pcam", "x", source="hub", download=True)


def test_auto_prefers_the_torchvision_layout_then_a_cached_hub_copy(hub, monkeypatch, tmp_path):
    cifar10_copy(hub, monkeypatch)
    assert load_dataset("cifar10", tmp_path, source="auto").data_source.startswith("hub:")
    FIXTURES["cifar10"](tmp_path)
    assert load_dataset("cifar10", tmp_path, source="auto").data_source == "torchvision"
    with pytest.raises(PmgaftError, match="unknown data source 'hf'"):
        load_dataset("cifar10", tmp_path, source="hf")


def test_datasets_command_downloads_checks_and_lists_hub_copies(hub, monkeypatch, tmp_path, capsys):
    cifar10_copy(hub, monkeypatch)
    assert main(["datasets", "--data-root", str(tmp_path), "--download", "cifar10", "--source", "hub"]) == 0
    out = capsys.readouterr().out
    assert "cifar10: 12 images, the official test split (12 images); labels matched by name" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert " cached " in rows["cifar10"] and " missing " in rows["cifar10"]  # hub copy yes, torchvision layout no
    assert " not cached " in rows["eurosat"] and "  -  " in rows["mnist"]
    assert "1/16 hub copies cached" in out
    _rewrite_shard(hub, "test/0.tar", lambda d: d[:_header_offset(d, "s0000001.png") + 530])
    assert main(["datasets", "--download", "cifar10", "--source", "hub"]) == 2
    assert "test/0.tar: sample s0000001" in capsys.readouterr().err
    assert main(["datasets", "--download", "cifar10", "--source", "hub", "--skip-corrupt"]) == 0
    assert "cifar10: 10 images" in capsys.readouterr().out


# --- evaluation ----------------------------------------------------------------------------------------------

def _eval(out: Path, root: Path, *extra: str) -> int:
    return main(["eval", "--model", "pmgaft-micro", "--attacks", "none", "--batch-size", "8", "--data-root",
                 str(root), "--out", str(out), "--no-progress", *extra])


def test_cards_record_the_source_and_fingerprints_tell_sources_apart(hub, monkeypatch, tmp_path):
    cifar10_copy(hub, monkeypatch)
    FIXTURES["cifar10"](tmp_path / "data")
    assert _eval(tmp_path / "hub", tmp_path / "data", "--datasets", "cifar10", "digits", "--source", "hub",
                 "--attacks", "none", "pgd", "--steps", "2") == 0
    assert _eval(tmp_path / "tv", tmp_path / "data", "--datasets", "cifar10") == 0
    hub_cards, tv_cards = cards(tmp_path / "hub"), cards(tmp_path / "tv")
    card = hub_cards["pmgaft-micro/cifar10/none_eps0.json"]
    assert card["dataset"]["source"] == "hub:clip-benchmark/wds_vtab-cifar10" and card["dataset"]["n"] == 12
    assert card["dataset"]["hub"]["revision"] == card["dataset"]["location"].rsplit("/", 1)[1]
    assert card["config"]["source"] == "hub" and card["prompts"]["style"] == "paper"
    assert card["prompts"]["templates"] == get_prompts("cifar10", "paper").templates  # the protocol's own
    assert hub_cards["pmgaft-micro/cifar10/pgd2_eps1.json"]["dataset"]["source"].startswith("hub:")
    assert hub_cards["pmgaft-micro/digits/none_eps0.json"]["dataset"]["source"] == "bundled"
    tv = tv_cards["pmgaft-micro/cifar10/none_eps0.json"]
    assert tv["dataset"]["source"] == "torchvision" and tv["dataset"]["n"] == 4
    assert tv["fingerprint"] != card["fingerprint"]
    # resuming the torchvision run on the hub copy recomputes instead of reusing the torchvision card
    resume = ["--datasets", "cifar10", "--source", "hub", "--skip-existing"]
    assert _eval(tmp_path / "tv", tmp_path / "data", *resume) == 0
    assert cards(tmp_path / "tv")["pmgaft-micro/cifar10/none_eps0.json"]["dataset"]["n"] == 12
    # ... and once the hub copy has moved to another commit (its files re-uploaded), resuming recomputes again
    cifar10_copy(hub, monkeypatch, n=9, commit="f" * 40)
    assert _eval(tmp_path / "tv", tmp_path / "data", *resume) == 0
    moved = cards(tmp_path / "tv")["pmgaft-micro/cifar10/none_eps0.json"]["dataset"]
    assert moved["n"] == 9 and moved["hub"]["revision"] == "f" * 40


def test_reference_protocols_refuse_a_hub_copy_of_another_set_and_fare_scores_it(hub, monkeypatch, tmp_path, capsys):
    names = curated_classnames("eurosat")
    rows = [(t % 10, "webp") for t in range(10)]
    write_repo(hub, HUB_SOURCES["eurosat"].repo, wds_files(names, ["a centered satellite photo of {c}."],
                                                            {"test": rows}))
    sized(monkeypatch, "eurosat", 10)
    out, refused_out = tmp_path / "results", tmp_path / "refused"
    assert _eval(refused_out, tmp_path, "--datasets", "eurosat", "--source", "hub") == 2
    err = capsys.readouterr().err
    assert ("protocol 'paper' scores eurosat on the whole set (27,000 images), but its hub copy "
            "clip-benchmark/wds_vtab-eurosat holds the VTAB test split") in err
    assert "get the torchvision copy instead (download it with `pmgaft datasets" in err
    assert not cards(refused_out)  # refused before any work
    assert _eval(refused_out, tmp_path, "--datasets", "eurosat", "digits", "--source", "hub", "--allow-missing",
                 "--n-samples", "20") == 1
    found = cards(refused_out)
    refused, digits = found["pmgaft-micro/eurosat/none_eps0.json"], found["pmgaft-micro/digits/none_eps0.json"]
    assert refused["dataset"]["source"] == "hub:clip-benchmark/wds_vtab-eurosat" and "VTAB" in refused["error"]
    assert digits["dataset"]["source"] == "bundled" and "error" not in digits
    capsys.readouterr()
    assert main(["eval", "--dry-run", "--datasets", "eurosat", "--source", "hub", "--protocol", "fare"]) == 0
    plan = capsys.readouterr().out
    assert "eurosat: split test, 10 images (subset of 1,000) [hub copy clip-benchmark/wds_vtab-eurosat: the VTAB" \
        in plan
    assert "prompt: the hub copy's own (classnames.txt, zeroshot_classification_templates.txt)" in plan
    assert _eval(out, tmp_path, "--datasets", "eurosat", "--source", "hub", "--protocol", "fare", "--attacks",
                 "none") == 0
    card = cards(out)["pmgaft-micro/eurosat/none_eps0.json"]
    assert card["dataset"]["split"] == "test" and card["dataset"]["n"] == 10
    assert "VTAB test split" in card["dataset"]["hub"]["split"]
    assert card["prompts"]["templates"] == ["a centered satellite photo of {}."]  # the copy's own text file
    assert "classnames.txt" in card["prompts"]["names_source"]


def test_a_protocol_writing_prompts_with_the_loaders_names_refuses_the_hub_copy(hub, monkeypatch, tmp_path, capsys):
    """TTC's SUN397 prompts use torchvision's raw ``.classes`` ('apartment_building/outdoor'); a hub copy names its
    classes its own way ('apartment building outdoor'), so it would silently score other prompts: refused, and
    auto takes torchvision."""
    write_repo(hub, HUB_SOURCES["sun397"].repo, wds_files(curated_classnames("sun397"), TEMPLATES,
                                                          {"test": [(t, "png") for t in range(2)]}))
    sized(monkeypatch, "sun397", 2)
    assert _eval(tmp_path / "r", tmp_path, "--datasets", "sun397", "--source", "hub", "--protocol", "ttc") == 2
    assert ("protocol 'ttc' writes sun397's prompts with the torchvision loader's own class names (prompt style "
            "'ttc'), which its hub copy clip-benchmark/wds_sun397 does not carry") in capsys.readouterr().err
    dry_run = ["eval", "--dry-run", "--datasets", "sun397", "--source", "auto", "--protocol", "ttc", "--data-root",
               str(tmp_path)]
    assert main(dry_run) == 0
    plan = capsys.readouterr().out
    assert "[not readable with --source auto: dataset 'sun397' (all split) not found" in plan
    assert "protocol 'ttc' writes sun397's prompts with the torchvision loader's own class names" in plan
    FIXTURES["sun397"](tmp_path)
    assert main(dry_run) == 0
    assert "[on disk]" in capsys.readouterr().out


def test_caltech101_copy_keeps_its_own_102_classes_for_fare(hub, monkeypatch, tmp_path):
    names = sorted(["background", *curated_classnames("caltech101")], key=str.lower)
    write_repo(hub, HUB_SOURCES["caltech101"].repo, wds_files(names, TEMPLATES, {"test": [(4, "webp"), (0, "png")]}))
    sized(monkeypatch, "caltech101", 2)
    ds = load_dataset("caltech101", "x", "test", source="hub", benchmark_split=True)
    assert len(ds.classes) == 102 and ds.classes[4] == "background" and ds.targets == [4, 0]
    assert "own 102 classes" in ds.hub.class_order
    with pytest.raises(PmgaftError, match="CLIP_benchmark's own split: pass benchmark_split=True"):
        load_dataset("caltech101", "x", "test", source="hub")
    assert _eval(tmp_path / "r", tmp_path, "--datasets", "caltech101", "--source", "auto", "--protocol", "fare",
                 "--attacks", "none") == 0
    assert cards(tmp_path / "r")["pmgaft-micro/caltech101/none_eps0.json"]["dataset"]["num_classes"] == 102


def test_every_hub_source_is_a_registered_set_with_a_known_size():
    for name, src in HUB_SOURCES.items():
        assert name == src.dataset and name in DATASETS and src.all_splits()
        for split, hub_split in src.splits.items():
            assert isinstance(hub_split, HubSplit) and hub_split.size == DATASETS[name].size(split), name
    assert set(HUB_SOURCES) == set(DATASETS) & set(HUB_SOURCES) and len(HUB_SOURCES) == 16
