"""`pmgaft eval`: the grid end to end on pmgaft-micro, the card schema, resuming, failures, protocols."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval_fixtures import cards, data_root, micro_checkpoint, without_run
from pmgaft.cli import COMMANDS, main
from pmgaft.evaluation import PROTOCOLS, SCHEMA

DATASETS = ["digits", "foolbox_cifar10", "cifar10"]
CARD_KEYS = {"schema", "model", "dataset", "prompts", "attack", "n", "clean_correct", "clean_accuracy",
             "robust_correct", "robust_accuracy", "cost", "seed", "samples", "config", "version", "fingerprint", "run"}


def _eval(root: Path, out: Path, *extra: str) -> int:
    return main(["eval", "--model", "pmgaft-micro", "--datasets", *DATASETS, "--attacks", "none", "pgd", "cw",
                 "--eps", "1", "4", "--steps", "3", "--n-samples", "20", "--batch-size", "8", "--data-root",
                 str(root), "--out", str(out), "--no-progress", *extra])


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("grid")
    root = data_root(tmp, "cifar10")
    assert _eval(root, tmp / "results") == 0
    return root, tmp / "results"


def test_grid_writes_one_card_per_cell_with_full_schema(grid):
    _, out = grid
    found = cards(out)
    stems = ["none_eps0", "pgd3_eps1", "pgd3_eps4", "cw3_eps1", "cw3_eps4"]
    assert set(found) == {f"pmgaft-micro/{d}/{s}.json" for d in DATASETS for s in stems}
    for path, card in found.items():
        assert set(card) - {"robust_accuracy_by_scoring"} == CARD_KEYS and card["schema"] == SCHEMA
        assert card["model"]["weights_hash"] and card["model"]["method"] == "random-init"
        assert card["model"]["normalization"] == "clip" and card["model"]["logit_scale"] == "model"
        assert card["model"]["quick_gelu"] is False and card["model"]["weights_finite"] is True
        assert card["attack"]["scoring"] == "worst" and card["dataset"]["corrupt"]["n_skipped"] == 0
        assert card["prompts"]["style"] == "paper" and card["prompts"]["templates"] and card["prompts"]["classnames"]
        assert card["attack"]["eps"] == pytest.approx(card["attack"]["eps_255"] / 255)
        assert card["version"]["pmgaft"] and {"timestamp", "duration_s"} <= set(card["run"])
        assert card["config"]["protocol"]["prompts"] == "paper"
        samples = json.loads((out / path).with_name(card["samples"]).read_text())
        assert len(samples["indices"]) == card["n"] == len(samples["robust_correct"])
        assert sum(samples["robust_correct"]) == card["robust_correct"]
        assert card["robust_accuracy"] <= card["clean_accuracy"]  # robust <= clean in every cell
        if card["attack"]["name"] in ("pgd", "cw"):
            assert card["attack"]["steps"] == 3 and card["attack"]["step_size_255"] == 1.0
    assert found["pmgaft-micro/cifar10/none_eps0.json"]["n"] == 4  # the fixture's whole test split
    assert found["pmgaft-micro/digits/pgd3_eps1.json"]["dataset"]["n"] == 20


def test_interrupted_grid_resumes_without_recomputing(grid, tmp_path, monkeypatch):
    from pmgaft.evaluation import grid as grid_module

    root, reference = grid
    out = tmp_path / "results"
    real_write = grid_module.write_card
    written: list[str] = []

    def write(path, card, samples=None, *, limit=None):
        if path.name != "clean.json":
            if limit is not None and len(written) >= limit:
                raise KeyboardInterrupt  # "kill" the grid in the middle of foolbox_cifar10
            written.append(str(path.relative_to(out)))
        return real_write(path, card, samples)

    monkeypatch.setattr(grid_module, "write_card", lambda *a, **k: write(*a, **k, limit=7))
    assert _eval(root, out) == 130
    done = {p: (out / p).stat().st_mtime_ns for p in cards(out)}
    assert len(done) == 7
    clean = out / "pmgaft-micro" / "digits" / "clean.json"
    clean_mtime = clean.stat().st_mtime_ns
    from pmgaft.evaluation import engine

    attack_calls = {"n": 0}
    real_stream = engine.pgd_stream

    def counting(*a, **k):
        attack_calls["n"] += 1
        return real_stream(*a, **k)
    monkeypatch.setattr(engine, "pgd_stream", counting)
    written.clear()
    monkeypatch.setattr(grid_module, "write_card", write)
    assert _eval(root, out, "--skip-existing") == 0
    assert sorted(written) == sorted(set(cards(reference)) - set(done))  # only the unfinished cells ran
    assert {p: (out / p).stat().st_mtime_ns for p in done} == done  # finished cells untouched
    assert clean.stat().st_mtime_ns == clean_mtime  # and the cached clean pass reused
    again = cards(out)
    assert {p: without_run(c) for p, c in again.items()} == {p: without_run(c) for p, c in cards(reference).items()}
    written.clear()
    attack_calls["n"] = 0
    assert _eval(root, out, "--skip-existing") == 0  # a second resume computes nothing at all
    assert written == [] and attack_calls["n"] == 0


def test_robust_accuracy_does_not_rise_with_eps(tmp_path):
    out = tmp_path / "results"
    assert main(["eval", "--model", "pmgaft-micro", "--datasets", "digits", "--attacks", "pgd", "--eps", "1", "16",
                 "64", "255", "--steps", "10", "--step-size", "16", "--n-samples", "60", "--out", str(out),
                 "--no-progress"]) == 0
    found = sorted(cards(out).values(), key=lambda c: c["attack"]["eps_255"])
    robust = [c["robust_accuracy"] for c in found]
    assert all(a >= b for a, b in zip(robust, robust[1:])), robust
    assert robust[-1] < found[-1]["clean_accuracy"]  # the attack does bite at the largest eps


def test_typos_fail_before_any_work_with_every_problem_listed(tmp_path, capsys):
    """Unknown datasets, impossible splits, missing or unsafe checkpoints, unknown tags, an unwritable folder:
    one paragraph, exit 2, nothing loaded and no card written."""
    import os

    root = data_root(tmp_path, "pcam")
    unsafe = tmp_path / "unsafe.pt"
    import argparse
    import torch

    torch.save({"args": argparse.Namespace(lr=1)}, unsafe)
    out = tmp_path / "results"
    rc = main(["eval", "--model", "pmgaft-micro", "--checkpoint", str(tmp_path / "nope.safetensors"),
               "--checkpoint", f"unsafe={unsafe}", "--datasets", "pcam", "fod101", "--split", "val",
               "--data-root", str(root), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot start" in err
    for expected in ("unknown dataset 'fod101'", "food101", "nope.safetensors' does not exist",
                     "refusing to load", "argparse.Namespace", "--trust-checkpoint"):
        assert expected in err, expected
    assert not list(out.rglob("*.json"))
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: use a path that can never be created
            locked = Path("/proc/pmgaft-results")
        rc = main(["eval", "--model", "pmgaft-micro", "--datasets", "digits", "--out", str(locked / "r"),
                   "--no-progress"])
    finally:
        os.chmod(tmp_path / "locked", 0o700)
    assert rc == 2 and "not writable" in capsys.readouterr().err
    rc = main(["eval", "--model", "ViT-B-32", "--pretrained", "opnai", "--datasets", "digits", "--out", str(out)])
    assert rc == 2 and "no pretrained weights tagged 'opnai'" in capsys.readouterr().err


def test_failures_are_recorded_and_the_grid_goes_on(tmp_path, capsys):
    from PIL import Image

    root = data_root(tmp_path, "pcam")
    folder = tmp_path / "shapes"
    for label, colour in enumerate(["red", "blue"]):
        (folder / colour).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (12, 10), colour).save(folder / colour / f"{i}.png")
    (folder / "red" / "9.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # an undecodable file
    good = micro_checkpoint(tmp_path / "runs" / "pmgaft" / "best.safetensors")
    out = tmp_path / "results"
    argv = ["eval", "--checkpoint", str(good), "--datasets", "pcam", f"folder:{folder}", "caltech101",
            "--attacks", "none", "autoattack", "--eps", "1", "--batch-size", "4", "--data-root", str(root),
            "--out", str(out), "--no-progress"]
    assert main(argv) == 2  # caltech101 is not under the data root: stop before any work ...
    assert "--allow-missing" in capsys.readouterr().err and not list(out.rglob("*.json"))
    rc = main([*argv, "--allow-missing"])  # ... unless asked to go on without it
    text = capsys.readouterr().out
    assert rc == 1
    found = cards(out)
    aa = found["pmgaft-best/pcam/autoattack_eps1.json"]
    assert "error" not in aa and aa["attack"]["attacks"] == ["apgd-ce"]  # 2 classes: APGD-CE only
    assert aa["model"]["method"] == "pmgaft" and aa["model"]["recipe"] == "paper" and aa["model"]["sha256"]
    assert found["pmgaft-best/caltech101/none_eps0.json"]["stage"] == "dataset"
    broken = [c for p, c in found.items() if "shapes" in p]
    assert len(broken) == 2 and all(c["stage"] == "dataset" and "9.png" in c["error"] for c in broken)
    assert "FAILED pmgaft-best" in text and "9.png" in text
    assert main(["report", str(out), "--format", "md", "--quiet"]) == 0
    report = (out / "report" / "report.md").read_text()
    assert "Failed cells" in report and "pmgaft-best / caltech101" in report
    assert main([*argv, "--allow-missing", "--skip-corrupt", "--skip-existing"]) == 1  # caltech101 still missing
    skipped = [c for p, c in cards(out).items() if "shapes" in p]
    assert all("error" not in c and c["n"] == 6 for c in skipped)
    assert skipped[0]["dataset"]["corrupt"]["n_skipped"] == 1 and "9.png" in skipped[0]["dataset"]["corrupt"]["skipped"][0]


@pytest.mark.parametrize("argv, message", [
    (["--eps", "300"], "1/255 units"),
    (["--eps", "nan"], "1/255 units"),
    (["--n-samples", "-1"], "--n-samples"),
    (["--workers", "-1"], "--workers"),
    (["--device", "foo"], "unknown device 'foo'"),
    (["--checkpoint", "/nonexistent/x.safetensors"], "does not exist"),
    (["--logit-scale", "inf"], "finite"),
])
def test_bad_arguments(tmp_path, capsys, argv, message):
    rc = main(["eval", "--model", "pmgaft-micro", "--datasets", "digits", "--attacks", "none", "--out",
               str(tmp_path), "--no-progress", "--n-samples", "4", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err


def test_protocols_and_overrides():
    from argparse import ArgumentParser

    from pmgaft.evaluation import cli

    official, tga = PROTOCOLS["official-code"], PROTOCOLS["tga-zsr"]
    assert official.steps == (10,) and official.logit_scale == 1.0 and official.normalization == "imagenet"
    assert official.transform == "official" and official.scoring == "final"
    assert tga.steps == (100,) and tga.logit_scale == 100.0 and tga.normalization == "clip" and tga.scoring == "final"
    assert tga.split_for("sun397") == "all" and tga.split_for("caltech256") == "all" and tga.split_for("dtd") == "test"
    assert PROTOCOLS["paper"].normalization is None and PROTOCOLS["paper"].scoring == "worst"
    assert PROTOCOLS["fare"].samples_for("imagenet") == 5000 and PROTOCOLS["fare"].samples_for("dtd") == 1000
    parser = ArgumentParser()
    cli.add_arguments(parser)
    p = cli.resolve_protocol(parser.parse_args(["--protocol", "fare", "--eps", "8", "--n-samples", "50"]))
    assert p.eps == (8.0,) and p.samples_for("imagenet") == 50 and p.prompts == "ensemble"


@pytest.mark.parametrize("module", sorted({module for module, _ in COMMANDS.values()}))
def test_every_flag_has_help(module):
    """Each option of every command says what it is (no bare flags, no placeholders)."""
    import argparse
    import importlib

    parser = argparse.ArgumentParser()
    importlib.import_module(module).add_arguments(parser)
    for action in parser._actions:
        if action.dest != "help":
            assert action.help and len(action.help.split()) >= 3, (module, action.dest, action.help)


def test_early_exit_changes_no_result_and_saves_work(tmp_path, digits_clip):
    argv = ["eval", "--model", "pmgaft-micro", "--checkpoint", f"clip={digits_clip}", "--datasets", "digits",
            "--attacks", "pgd", "cw", "--eps", "2", "8", "--steps", "8", "--step-size", "1", "--n-samples", "60",
            "--batch-size", "16", "--device", "cpu", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "fast")]) == 0
    assert main([*argv, "--out", str(tmp_path / "full"), "--no-early-exit"]) == 0
    fast, full = cards(tmp_path / "fast"), cards(tmp_path / "full")
    for path, card in fast.items():
        other = full[path]
        samples = [json.loads((tmp_path / d / path).with_name(c["samples"]).read_text())
                   for d, c in (("fast", card), ("full", other))]
        assert samples[0]["robust_correct"] == samples[1]["robust_correct"]  # the same robust set
        assert card["robust_accuracy"] == other["robust_accuracy"] == other["robust_accuracy_by_scoring"]["worst"]
        assert card["attack"]["early_exit"] and not other["attack"]["early_exit"]
        assert card["cost"]["gradient_steps"] <= other["cost"]["gradient_steps"]
    assert sum(c["cost"]["gradient_steps"] for c in fast.values()) < sum(c["cost"]["gradient_steps"]
                                                                           for c in full.values())


def test_dry_run_prints_the_protocol_per_dataset(tmp_path, capsys):
    assert main(["eval", "--protocol", "tga-zsr", "--dry-run", "--data-root", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    for line in ("sun397: split all, 108,754 images [standard]", "caltech256: split all, 30,607 images",
                 "eurosat: split all, 27,000 images", "imagenet: split test, 50,000 images",
                 "pcam: split test, 32,768 images", "Resize((224, 224), bilinear)",
                 "A surface with a {} texture.", "344,128 images per model over 16 of 16 datasets",
                 "normalization: clip; logit scale: 100.0; scoring: final"):
        assert line in text, line
    root = data_root(tmp_path, "cifar10")
    assert main(["eval", "--protocol", "official-code", "--dry-run", "--datasets", "cifar10", "dtd",
                 "--data-root", str(root), "--model", "pmgaft-micro"]) == 0
    text = capsys.readouterr().out
    assert "cifar10: split test, 4 images [on disk]" in text and "native 32x32" in text
    assert "dtd: split test, 1,880 images [standard]" in text and "model input 32 px" in text


def test_compiled_classifier_gives_the_same_cards(tmp_path, digits_clip):
    argv = ["eval", "--model", "pmgaft-micro", "--checkpoint", f"clip={digits_clip}", "--datasets", "digits",
            "--attacks", "none", "pgd", "--eps", "8", "--steps", "3", "--n-samples", "24", "--batch-size", "8",
            "--device", "cpu", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "eager")]) == 0
    assert main([*argv, "--out", str(tmp_path / "compiled"), "--compile", "aot_eager"]) == 0  # the torch.compile path
    eager, compiled = cards(tmp_path / "eager"), cards(tmp_path / "compiled")
    assert {p: c["robust_correct"] for p, c in eager.items()} == {p: c["robust_correct"] for p, c in compiled.items()}
