"""`pmgaft eval`: the grid end to end on pmgaft-micro, the card schema, resuming, failures, protocols."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval_fixtures import cards, data_root, micro_checkpoint, without_run
from pmgaft.attacks import ATTACKS
from pmgaft.cli import main
from pmgaft.evaluation import PROTOCOLS, SCHEMA

DATASETS = ["digits", "foolbox_cifar10", "cifar10"]
CARD_KEYS = {"schema", "model", "dataset", "prompts", "attack", "n", "clean_correct", "clean_accuracy",
             "robust_correct", "robust_accuracy", "seed", "samples", "config", "version", "fingerprint", "run"}


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
        assert set(card) == CARD_KEYS and card["schema"] == SCHEMA
        assert card["model"]["weights_hash"] and card["model"]["method"] == "random-init"
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
    attack_calls = {"n": 0}
    for name in ("pgd", "cw"):
        def counting(*a, _inner=ATTACKS[name], **k):
            attack_calls["n"] += 1
            return _inner(*a, **k)
        monkeypatch.setitem(ATTACKS, name, counting)
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


def test_failures_are_recorded_and_the_grid_goes_on(tmp_path, capsys):
    root = data_root(tmp_path, "pcam")
    good = micro_checkpoint(tmp_path / "runs" / "pmgaft" / "best.safetensors")
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a safetensors file")
    out = tmp_path / "results"
    rc = main(["eval", "--model", "pmgaft-micro", "--checkpoint", str(good), "--checkpoint", f"broken={bad}",
               "--pretrained", str(good), "--label", "base", "--datasets", "pcam", "fod101", f"folder:{root / 'empty'}",
               "--attacks", "none", "autoattack", "--eps", "1", "--batch-size", "4", "--data-root", str(root),
               "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 1
    found = cards(out)
    aa = found["pmgaft-best/pcam/autoattack_eps1.json"]
    assert "error" not in aa and aa["attack"]["attacks"] == ["apgd-ce"]  # 2 classes: APGD-CE only
    assert aa["model"]["method"] == "pmgaft" and aa["model"]["recipe"] == "paper" and aa["model"]["sha256"]
    assert "error" not in found["base/pcam/none_eps0.json"]
    unknown = found["pmgaft-best/fod101/none_eps0.json"]
    assert unknown["stage"] == "dataset" and "food101" in unknown["error"]
    assert [c for p, c in found.items() if "empty" in p and "error" in c]
    broken = [c for p, c in found.items() if p.startswith("broken/")]
    assert len(broken) == 6 and all(c["stage"] == "model" for c in broken)
    assert "FAILED broken" in text and "food101" in text
    assert main(["report", str(out), "--format", "md", "--quiet"]) == 0
    report = (out / "report" / "report.md").read_text()
    assert "Failed cells" in report and "broken / pcam" in report


@pytest.mark.parametrize("argv, message", [
    (["--eps", "300"], "1/255 units"),
    (["--n-samples", "-1"], "--n-samples"),
    (["--workers", "-1"], "--workers"),
    (["--device", "foo"], "unknown device 'foo'"),
    (["--checkpoint", "/nonexistent/x.safetensors"], None),
])
def test_bad_arguments(tmp_path, capsys, argv, message):
    rc = main(["eval", "--model", "pmgaft-micro", "--datasets", "digits", "--attacks", "none", "--out",
               str(tmp_path), "--no-progress", "--n-samples", "4", *argv])
    err = capsys.readouterr()
    if message:
        assert rc == 2 and message in err.err
    else:  # a missing checkpoint fails its own cells only
        assert rc == 1 and "does not exist" in err.out


def test_protocols_and_overrides():
    from argparse import ArgumentParser

    from pmgaft.evaluation import cli

    assert PROTOCOLS["official-code"].steps == (10,) and PROTOCOLS["official-code"].logit_scale == 1.0
    assert PROTOCOLS["fare"].samples_for("imagenet") == 5000 and PROTOCOLS["fare"].samples_for("dtd") == 1000
    parser = ArgumentParser()
    cli.add_arguments(parser)
    p = cli.resolve_protocol(parser.parse_args(["--protocol", "fare", "--eps", "8", "--n-samples", "50"]))
    assert p.eps == (8.0,) and p.samples_for("imagenet") == 50 and p.prompts == "ensemble"


@pytest.mark.parametrize("module", ["pmgaft.evaluation.cli", "pmgaft.evaluation.report", "pmgaft.evaluation.reproduce",
                                    "pmgaft.data.cli", "pmgaft.training.cli"])
def test_every_flag_has_help(module):
    """Each option of eval/report/reproduce/datasets/train says what it is (no bare flags, no placeholders)."""
    import argparse
    import importlib

    parser = argparse.ArgumentParser()
    importlib.import_module(module).add_arguments(parser)
    for action in parser._actions:
        if action.dest != "help":
            assert action.help and len(action.help.split()) >= 3, (module, action.dest, action.help)


def test_torchrun_processes_split_the_grid_between_them(tmp_path, monkeypatch):
    """Under torchrun each rank takes every WORLD_SIZE-th (model, dataset) pair; together they cover the grid."""
    argv = ["eval", "--model", "pmgaft-micro", "--datasets", "digits", "foolbox_cifar10", "foolbox_mnist",
            "--attacks", "none", "--n-samples", "10", "--no-progress", "--device", "cpu"]
    written = {}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        out = tmp_path / f"rank{rank}"
        assert main([*argv, "--out", str(out)]) == 0
        written[rank] = {c["dataset"]["name"] for c in cards(out).values()}
    assert written == {0: {"digits", "foolbox_mnist"}, 1: {"foolbox_cifar10"}}
