"""A scaled-down quickstart, end to end through the same code path as `make quickstart` (fewer steps)."""
from __future__ import annotations

import contextlib
import io
import json
import re

import pytest

from pmgaft.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("quickstart")]  # one worker runs the module's fixture

EPS = 8.0


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    """The first quickstart run, done here so that every test of the module finds it whatever their order or
    worker: (its folder, its command line, what it printed)."""
    out = tmp_path_factory.mktemp("quickstart")
    argv = ["quickstart", "--out", str(out), "--pretrain-steps", "150", "--max-steps", "40", "--batch-size", "64",
            "--eval-samples", "200", "--attack-steps", "5", "--eps", f"{EPS:g}", "--no-progress"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    return out, argv, printed.getvalue()


def test_quickstart_end_to_end(quickstart_run):
    out, _, printed = quickstart_run
    assert "Zero-shot accuracy, PGD robust / clean (%)" in printed and "PMG-AFT" in printed
    assert re.search(r"PGD at eps 8/255 takes the original from .* Of the paper's three claims, \d holds? on the "
                     r"held-out sets here: \(1\) the original model collapses", printed)

    # 3 models x 3 held-out test sets x {clean, PGD}, one JSON each, none failed
    cards = [json.loads(p.read_text()) for p in (out / "results").rglob("*.json")
             if not p.name.endswith(".samples.json") and p.name != "clean.json"]
    cells = {(c["model"]["label"], c["dataset"]["name"], c["attack"]["name"]) for c in cards}
    assert cells == {(m, d, a) for m in ("original", "tecoa", "pmg_aft")
                     for d in ("fashion_mnist", "mnist", "digits") for a in ("none", "pgd")}
    assert not any("error" in c for c in cards)
    pgd = {(c["model"]["label"], c["dataset"]["name"]): c for c in cards if c["attack"]["name"] == "pgd"}
    assert all(c["attack"]["eps_255"] == EPS for c in pgd.values())
    # the table's protocol: every image at the model's 28 px input before the attack, final-iterate scoring
    digits = pgd[("original", "digits")]
    assert digits["dataset"]["preprocessing"] == "Resize((28, 28), bilinear)" and digits["attack"]["scoring"] == "final"
    assert digits["model"]["normalization"] == "clip" and digits["model"]["logit_scale"] == 100.0

    # the attack works: the original model collapses at the chosen eps ...
    orig = pgd[("original", "fashion_mnist")]
    assert orig["clean_accuracy"] >= 0.5
    assert orig["robust_accuracy"] <= 0.5 * orig["clean_accuracy"]
    # ... and fine-tuning on Fashion-MNIST makes both methods more robust there
    for method in ("tecoa", "pmg_aft"):
        assert pgd[(method, "fashion_mnist")]["robust_accuracy"] > orig["robust_accuracy"], method
        assert pgd[(method, "fashion_mnist")]["model"]["method"] == method

    # the Markdown report, the CSV and the plots exist and agree with the JSON
    report = (out / "report" / "report.md").read_text()
    for (label, dataset), c in pgd.items():
        cell = f"{100 * c['robust_accuracy']:.2f}/{100 * c['clean_accuracy']:.2f}"
        row = next(line for line in report.splitlines() if line.startswith(f"| {dataset} |") and cell in line)
        assert row
    assert list((out / "report").glob("*.csv")) and len(list((out / "report").glob("*.png"))) >= 2
    assert all(p.stat().st_size > 5000 for p in (out / "report").glob("*.png"))


def test_second_run_reuses_every_step(quickstart_run, capsys):
    out, argv, _ = quickstart_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("cached:") == 3  # pre-training and both fine-tuning runs
    assert "skip original / digits / pgd5_eps8" in printed  # and every evaluation cell
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")} == before


def test_quickstart_defence_table(quickstart_run, capsys):
    """--defence ttc: the cached models, attacked ignoring TTC and through it, in one table and one sentence."""
    out, argv, _ = quickstart_run
    assert main([*argv, "--defence", "ttc", "--defence-samples", "20", "--eot-samples", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("cached:") == 3
    assert "under ttc (eps 32/255, step_size 8/255, steps 2, beta 2, tau_thres 0.2" in printed  # scaled: 4x eps, eps
    assert re.search(r"On the held-out sets, ttc (lifts|does not lift) the original model's robust accuracy", printed)
    cards = [json.loads(p.read_text()) for p in (out / "results-ttc").rglob("*_ttc*.json")
             if not p.name.endswith(".samples.json")]
    assert len(cards) == 3 * 3 * 3 and not any("error" in c for c in cards)  # 3 models x 3 sets x 3 defended cells
    tuned = next(c for c in cards if c["model"]["label"] == "tecoa")
    assert tuned["defence"]["reference"]["source"] == "recorded in the checkpoint (its starting weights)"
    assert (out / "report-ttc" / "defences.csv").is_file()


def test_missing_fashion_mnist_offline_names_the_apt_command(tmp_path, monkeypatch, capsys):
    from pmgaft.data import offline

    monkeypatch.setattr(offline, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")

    def offline_download(d):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(offline, "_download_fashion_mnist", offline_download)
    assert main(["quickstart", "--out", str(tmp_path / "out"), "--data-root", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "fashion_mnist" in err and "apt-get install dataset-fashion-mnist" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("flag, value", [("--pretrain-steps", "0"), ("--batch-size", "0"), ("--epochs", "0"),
                                         ("--eval-samples", "-1"), ("--attack-steps", "-1"), ("--lr", "0")])
def test_bad_flags_fail_up_front_with_a_message(tmp_path, capsys, flag, value):
    # --pretrain-steps 0 used to die after loading 45k images with a ZeroDivisionError traceback
    argv = ["quickstart", "--out", str(tmp_path / "out"), "--data-root", str(tmp_path / "data"), flag, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{flag} must be" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_the_defence_sentence_is_computed_from_the_numbers():
    from pmgaft.quickstart.defence import defence_sentence

    # clean, robust, clean (defence), robust non-adaptive, robust adaptive
    fell = defence_sentence({"original": [92.5, 28.5, 20.0, 47.5, 5.0]}, defence="ttc")
    assert ("from 28.5% to 47.5%" in fell and "keeps 5.0%, below the undefended 28.5%: all 19.0 points gained are "
            "gone and 23.5 more, so the defence does NOT hold" in fell)
    held = defence_sentence({"original": [90.0, 20.0, 85.0, 40.0, 35.0]}, defence="ttc")
    assert "keeps 35.0%, 5.0 of the 20.0 points gained are gone, so the defence holds" in held
    assert "does not lift" in defence_sentence({"original": [90.0, 20.0, 85.0, 15.0, 10.0]}, defence="ttc")


def test_the_defence_table_takes_each_column_from_its_own_cards(tmp_path):
    """From cards on disk to the quickstart's five columns: each number lands under its own header."""
    from pmgaft.evaluation.results import SCHEMA
    from pmgaft.quickstart.defence import COLUMNS, average_rows
    from pmgaft.utils import atomic_write_json

    def card(dataset, attack, clean, robust, defence=None, adaptive=False):
        c = {"schema": SCHEMA, "model": {"label": "original"}, "dataset": {"name": dataset},
             "attack": {"name": attack, "id": "none" if attack == "none" else "pgd10", "eps_255": 0 if attack ==
                        "none" else 8, "adaptive": adaptive}, "clean_accuracy": clean, "robust_accuracy": robust}
        if defence:
            c["defence"] = {"name": defence}
        stem = f"{c['attack']['id']}_{defence or ''}{'-adaptive' if adaptive else ''}"
        atomic_write_json(tmp_path / "original" / dataset / f"{stem}.json", c)

    for dataset, shift in (("mnist", 0.0), ("digits", 0.1), ("fashion_mnist", 0.5)):  # the last: fine-tuning set
        card(dataset, "none", 0.9 + shift / 10, 0.9 + shift / 10)
        card(dataset, "pgd", 0.9 + shift / 10, 0.2 + shift)
        card(dataset, "pgd", 0.3 + shift, 0.5 + shift, defence="ttc")
        card(dataset, "pgd", 0.3 + shift, 0.1 + shift, defence="ttc", adaptive=True)
    rows = average_rows(tmp_path, ["original"], "fashion_mnist")["original"]
    expected = {"clean": 90.5, "robust": 25.0, "clean (defence)": 35.0, "robust, non-adaptive": 55.0,
                "robust, adaptive": 15.0}
    assert {title: round(v, 6) for (title, _), v in zip(COLUMNS, rows)} == expected
