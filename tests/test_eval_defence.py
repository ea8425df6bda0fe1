"""`pmgaft eval --defence`: defended cards for both threat models, beside unchanged undefended ones; resuming;
every protocol; the tau reference of fine-tuned models; bad input refused before any work; the report's table."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from eval_fixtures import cards, micro_checkpoint, without_run
from pmgaft.cli import main
from pmgaft.evaluation import PROTOCOLS
from pmgaft.evaluation.checks import find_suspicious
from pmgaft.evaluation.defended import DefenceConfig, reference_spec, reference_weights
from pmgaft.evaluation.models import model_specs

GRID = ["--model", "pmgaft-micro", "--datasets", "digits", "--attacks", "none", "pgd", "cw", "--eps", "4",
        "--steps", "2", "--step-size", "2", "--n-samples", "12", "--batch-size", "8", "--no-progress"]
STEMS = ["none_eps0", "pgd2_eps4", "cw2_eps4"]
DEFENDED = ["none_eps0_ttc", "pgd2_eps4_ttc", "pgd2_eps4_ttc-adaptive", "cw2_eps4_ttc", "cw2_eps4_ttc-adaptive"]


def _samples(out: Path, path: str, card: dict) -> dict:
    return json.loads((out / path).with_name(card["samples"]).read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("defence")
    assert main(["eval", *GRID, "--out", str(tmp / "plain")]) == 0
    assert main(["eval", *GRID, "--out", str(tmp / "ttc"), "--defence", "ttc", "--eot-samples", "2"]) == 0
    return tmp / "plain", tmp / "ttc"


def test_defended_cards_for_both_threat_models_beside_unchanged_ones(runs):
    plain, defended = runs
    found = cards(defended)
    assert set(found) == {f"pmgaft-micro/digits/{s}.json" for s in STEMS + DEFENDED}
    undefended = {p: without_run(c) for p, c in found.items() if "_ttc" not in p}
    assert undefended == {p: without_run(c) for p, c in cards(plain).items()}  # same cards, same fingerprints
    clean = found["pmgaft-micro/digits/none_eps0_ttc.json"]
    assert clean["robust_accuracy"] == clean["clean_accuracy"] and clean["attack"]["adaptive"] is False
    assert clean["defence"]["name"] == "ttc" and clean["defence"]["eps_255"] == 4 and clean["defence"]["steps"] == 2
    assert clean["defence"]["reference"]["source"].startswith("the model itself")
    for attack in ("pgd", "cw"):
        stem = f"pmgaft-micro/digits/{attack}2_eps4_ttc"
        non, ada = found[f"{stem}.json"], found[f"{stem}-adaptive.json"]
        assert non["attack"]["adaptive"] is False and ada["attack"]["adaptive"] is True
        undefended = found[f"pmgaft-micro/digits/{attack}2_eps4.json"]
        assert non["fingerprint"] != ada["fingerprint"] != undefended["fingerprint"]
        assert set(ada["robust_accuracy_by_attack"]) == {"e2e", "bpda", "tau", "transfer"}
        assert ada["attack"]["adaptive_attacks"]["e2e"]["eot_samples"] == 2
        assert ada["robust_accuracy"] <= min(ada["robust_accuracy_by_attack"].values())
        assert ada["robust_accuracy_by_attack"]["transfer"] == non["robust_accuracy"]
        assert ada["robust_accuracy"] <= non["robust_accuracy"] <= non["clean_accuracy"] == clean["clean_accuracy"]
        assert non["cost"]["defence_forwards"] == 3 * non["cost"]["images_defended"]  # f(X) + 2 steps
        assert ada["cost"]["gradient_steps"] == ada["cost"]["samples_attacked"] * 2 * (3 * 2 + 1)
        s_non, s_ada = _samples(defended, f"{stem}.json", non), _samples(defended, f"{stem}-adaptive.json", ada)
        assert all(a <= b for a, b in zip(s_ada["robust_correct"], s_non["robust_correct"]))  # sample by sample
        assert s_ada["clean_pred"] == s_non["clean_pred"] and len(s_ada["adv_pred_e2e"]) == ada["n"]


def test_switched_off_defence_gives_the_undefended_numbers(tmp_path, digits_clip):
    """eps 0, 0 steps: the defended classifier is the classifier, and both threat models equal plain PGD."""
    out = tmp_path / "off"
    assert main(["eval", "--model", "pmgaft-micro", "--checkpoint", f"clip={digits_clip}", "--datasets", "digits",
                 "--attacks", "pgd", "--eps", "4", "--steps", "3", "--n-samples", "40", "--scoring", "final",
                 "--out", str(out), "--no-progress", "--defence", "ttc", "--ttc-eps", "0", "--ttc-steps", "0"]) == 0
    found = cards(out)
    base = found["clip/digits/pgd3_eps4.json"]
    assert 0 < base["robust_correct"] < base["clean_correct"]  # the attack moved predictions
    expected = _samples(out, "clip/digits/pgd3_eps4.json", base)
    for stem in ("pgd3_eps4_ttc", "pgd3_eps4_ttc-adaptive"):
        card = found[f"clip/digits/{stem}.json"]
        got = _samples(out, f"clip/digits/{stem}.json", card)
        assert got["robust_correct"] == expected["robust_correct"] and got["adv_pred"] == expected["adv_pred"]
        assert card["clean_correct"] == base["clean_correct"]
    assert set(found["clip/digits/pgd3_eps4_ttc-adaptive.json"]["robust_accuracy_by_attack"]) == {"e2e", "transfer"}


def test_resume_reuses_the_defended_cells(runs, tmp_path, monkeypatch):
    import shutil

    from pmgaft.evaluation import defended as defended_module

    _, reference = runs
    out = tmp_path / "results"
    shutil.copytree(reference, out)
    for stem in ("pgd2_eps4_ttc-adaptive", "cw2_eps4_ttc"):  # two unfinished cells
        (out / "pmgaft-micro" / "digits" / f"{stem}.json").unlink()
    calls = {"clean": 0}
    real = defended_module.DefendedShard._clean_pass

    def counting(self, *a, **k):
        calls["clean"] += 1
        return real(self, *a, **k)
    monkeypatch.setattr(defended_module.DefendedShard, "_clean_pass", counting)
    assert main(["eval", *GRID, "--out", str(out), "--defence", "ttc", "--eot-samples", "2", "--skip-existing"]) == 0
    assert calls["clean"] == 0  # the defended clean pass came from its finished card
    again = {p: without_run(c) for p, c in cards(out).items()}
    assert again == {p: without_run(c) for p, c in cards(reference).items()}


def test_another_eot_budget_recomputes_only_the_adaptive_cells(runs, tmp_path, capsys):
    """--eot-samples is a setting of the adaptive attacks: the clean and non-adaptive defended cells are reused."""
    import shutil

    _, reference = runs
    out = tmp_path / "results"
    shutil.copytree(reference, out)
    capsys.readouterr()
    assert main(["eval", *GRID, "--out", str(out), "--defence", "ttc", "--eot-samples", "1", "--skip-existing"]) == 0
    printed = capsys.readouterr().out
    reused = {stem for stem in STEMS + DEFENDED if f"/ {stem} (finished" in printed}
    assert reused == set(STEMS) | {"none_eps0_ttc", "pgd2_eps4_ttc", "cw2_eps4_ttc"}


@pytest.mark.parametrize("where", ["References.get", "reference_encoder"])
def test_a_defence_that_cannot_be_set_up_fails_only_the_defended_cells(tmp_path, monkeypatch, where):
    """The tau reference (loaded per model) or the defended shard (per dataset) failing: error cards for the
    defended cells, while the undefended cells of the same model and dataset run."""
    from pmgaft.evaluation import defended, grid

    def broken(*a, **k):
        raise RuntimeError("no reference tower today")

    monkeypatch.setattr(*((defended.References, "get") if where == "References.get" else (grid, where)), broken)
    base = micro_checkpoint(tmp_path / "base.safetensors", seed=2, pmgaft_method="none")
    tuned = micro_checkpoint(tmp_path / "tuned.safetensors", seed=3, pmgaft_method="tecoa", pmgaft_pretrained=str(base))
    out = tmp_path / "results"
    assert main(["eval", "--checkpoint", f"tuned={tuned}", "--datasets", "digits", "--attacks", "pgd", "--eps", "2",
                 "--steps", "1", "--n-samples", "6", "--out", str(out), "--no-progress", "--defence", "ttc",
                 "--eot-samples", "1"]) == 1
    found = cards(out)
    assert {p for p, c in found.items() if "error" not in c} == {"tuned/digits/pgd1_eps2.json"}
    failed = {p: c for p, c in found.items() if "error" in c}
    assert len(failed) == 3 and all("no reference tower today" in c["error"] and c["stage"] == "defence"
                                    for c in failed.values())


def test_defended_cw_cells_use_the_protocols_capped_margin(tmp_path, monkeypatch):
    """--cw-kappa (the agft/ttc protocols' cap) binds the margin of the defended cells' attacks too."""
    from pmgaft.evaluation import defended as defended_module

    losses = []
    real = defended_module.pgd

    def recording(*a, **k):
        losses.append(k["loss"])
        return real(*a, **k)
    monkeypatch.setattr(defended_module, "pgd", recording)
    out = tmp_path / "results"
    assert main(["eval", "--model", "pmgaft-micro", "--datasets", "digits", "--attacks", "cw", "--cw-kappa", "0.5",
                 "--eps", "2", "--steps", "1", "--n-samples", "4", "--out", str(out), "--no-progress",
                 "--defence", "random-noise", "--eot-samples", "1"]) == 0
    assert losses and all(loss.func.__name__ == "margin" and loss.keywords == {"kappa": 0.5} for loss in losses)
    assert len(losses) == 1  # one batch: the adaptive cell's transfer candidate reuses the non-adaptive attack
    found = cards(out)
    for stem in ("cw1_eps2", "cw1_eps2_random-noise", "cw1_eps2_random-noise-adaptive"):
        assert found[f"pmgaft-micro/digits/{stem}.json"]["attack"]["kappa"] == 0.5


def test_the_tau_reference_of_fine_tuned_hub_models(tmp_path):
    """A hub folder whose weights record a fine-tuning (an export of a pmgaft run; the catalogue's robust models)
    takes tau from the weights it started from, built as the architecture it was fine-tuned from; a hub model
    that records no fine-tuning is its own reference, and the card's source says how to change that."""
    import shutil

    from safetensors.torch import load_file

    from hub_fixtures import hub_folder
    from pmgaft.models import model_config

    base = micro_checkpoint(tmp_path / "base.safetensors", seed=2, pmgaft_method="none")
    tuned = micro_checkpoint(tmp_path / "tuned.safetensors", seed=3, pmgaft_method="tecoa",
                             pmgaft_pretrained=str(base))
    folder = hub_folder(tmp_path / "hub", None, model_config("pmgaft-micro"))
    shutil.copyfile(tuned, folder / "open_clip_model.safetensors")
    plain = hub_folder(tmp_path / "plain", load_file(str(base)), model_config("pmgaft-micro"))
    ttc = DefenceConfig.build("ttc")
    (hub,) = model_specs(f"local-dir:{folder}", None, [])
    (own,) = model_specs(f"local-dir:{plain}", None, [])
    assert reference_weights(hub, ttc) == (str(base), "recorded in the checkpoint (its starting weights)")
    assert reference_spec(hub, ttc).arch == "pmgaft-micro"
    weights, source = reference_weights(own, ttc)
    assert weights is None and "--ttc-reference" in source


def test_the_reference_tower_preprocesses_as_the_classifier():
    """tau compares embeddings of the same preprocessed image: the reference gets the classifier's resize (with
    the agft protocol's antialias), normalization and input size."""
    import torch

    from pmgaft.evaluation.defended import reference_encoder
    from pmgaft.models import ZeroShotClassifier

    clf = ZeroShotClassifier(torch.nn.Identity(), torch.eye(3), image_size=32, normalization="imagenet",
                             logit_scale=50.0, antialias=True)
    ref = reference_encoder(clf, torch.nn.Identity(), None)
    x = torch.rand(2, 3, 20, 20)
    assert ref.antialias and ref.image_size == 32 and ref.logit_scale == 50.0
    assert torch.equal(ref.preprocess(x), clf.preprocess(x))


def test_dry_run_lists_the_defended_cells_and_refuses_what_the_run_refuses(tmp_path, capsys):
    argv = ["eval", "--protocol", "ttc", "--defence", "ttc", "--dry-run", "--data-root", str(tmp_path)]
    assert main([*argv, "--attacks", "pgd", "cw"]) == 0
    out = capsys.readouterr().out
    assert "defence: ttc (" in out and "eps 4/255, step_size 1/255, steps 2, beta 2, tau_thres 0.2" in out
    assert ("cells per model and dataset: pgd10_eps1, cw10_eps1, none_eps0_ttc, pgd10_eps1_ttc, "
            "pgd10_eps1_ttc-adaptive, cw10_eps1_ttc, cw10_eps1_ttc-adaptive\n") in out
    assert main(argv) == 2  # the protocol's APGD cannot be wrapped: the plan, then the run's own refusal
    captured = capsys.readouterr()
    assert "cifar10: split test" in captured.out and "apgd-ce-dlr_eps1_ttc" not in captured.out
    assert ("--defence ttc cannot wrap apgd-ce-dlr: its adaptive attacks re-run the attack's PGD loss through the "
            "defence (pgd, cw only); pass --attacks pgd cw or evaluate without --defence.") in captured.err


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_every_protocol_takes_the_defence(tmp_path, protocol):
    out = tmp_path / "results"
    assert main(["eval", "--model", "pmgaft-micro", "--protocol", protocol, "--datasets", "digits", "--attacks", "pgd",
                 "--eps", "1", "--steps", "1", "--n-samples", "6", "--out", str(out), "--no-progress",
                 "--defence", "random-noise", "--eot-samples", "1"]) == 0
    found = cards(out)
    assert {Path(p).stem for p in found} == {"pgd1_eps1", "none_eps0_random-noise", "pgd1_eps1_random-noise",
                                             "pgd1_eps1_random-noise-adaptive"}
    card = found["pmgaft-micro/digits/pgd1_eps1_random-noise-adaptive.json"]
    assert card["config"]["protocol"]["name"] == protocol and set(card["robust_accuracy_by_attack"]) == {"e2e",
                                                                                                       "transfer"}
    assert card["defence"]["steps"] == 0 and card["defence"]["reference"]["source"].startswith("not used")


def test_the_tau_reference_of_fine_tuned_models(tmp_path):
    base = micro_checkpoint(tmp_path / "base.safetensors", seed=2, pmgaft_method="none")
    tuned = micro_checkpoint(tmp_path / "runs" / "tecoa" / "best.safetensors", seed=3, pmgaft_method="tecoa",
                             pmgaft_pretrained=str(base))
    foreign = micro_checkpoint(tmp_path / "foreign.safetensors", seed=4, pmgaft_method="fare")
    ttc = DefenceConfig.build("ttc")
    spec_base, spec_tuned, spec_foreign = model_specs("pmgaft-micro", None, [f"base={base}", f"tuned={tuned}",
                                                                             f"foreign={foreign}"])
    assert reference_weights(spec_base, ttc)[0] is None  # unmodified weights: the model itself
    assert reference_weights(spec_tuned, ttc) == (str(base), "recorded in the checkpoint (its starting weights)")
    assert reference_weights(spec_tuned, DefenceConfig.build("ttc", reference="x.pt"))[1] == "--ttc-reference"
    assert reference_weights(spec_foreign, DefenceConfig.build("random-noise"))[0] is None  # no gate, no tau
    out = tmp_path / "results"
    assert main(["eval", "--checkpoint", f"tuned={tuned}", "--datasets", "digits", "--attacks", "pgd", "--eps", "2",
                 "--steps", "1", "--n-samples", "6", "--out", str(out), "--no-progress", "--defence", "ttc",
                 "--eot-samples", "1"]) == 0
    card = cards(out)["tuned/digits/pgd1_eps2_ttc.json"]
    assert card["defence"]["reference"]["weights"] == str(base) and card["defence"]["reference"]["weights_hash"]
    assert card["defence"]["cost_per_image"] == {"forwards": 5, "backwards": 2}  # + 2 forwards of the reference


@pytest.mark.parametrize("argv, message", [
    (["--defence", "tcc"], "invalid choice: 'tcc'"),
    (["--defence", "ttc", "--ttc-eps", "-1"], "--ttc-eps is in 1/255 units"),
    (["--defence", "ttc", "--ttc-tau", "0"], "--ttc-tau must be a positive"),
    (["--defence", "ttc", "--ttc-beta", "nan"], "--ttc-beta must be a finite"),
    (["--defence", "ttc", "--ttc-beta", "inf"], "--ttc-beta must be a finite"),
    (["--defence", "ttc", "--ttc-steps", "-1"], "--ttc-steps must be >= 0"),
    (["--defence", "ttc", "--eot-samples", "0"], "--eot-samples must be an integer >= 1"),
    (["--ttc-eps", "4"], "add --defence"),
    (["--defence", "random-noise", "--ttc-steps", "2"], "--ttc-steps does not apply to --defence random-noise"),
    (["--defence", "ttc", "--attacks", "pgd", "autoattack"], "cannot wrap autoattack"),
    (["--defence", "ttc", "--attacks", "apgd-ce-dlr-eot"], "cannot wrap apgd-ce-dlr-eot"),
    (["--defence", "ttc", "--checkpoint", "CKPT"], "needs the original CLIP image tower"),
    (["--defence", "ttc", "--checkpoint", "CKPT", "--ttc-reference", "/nowhere/base.safetensors"], "does not exist"),
])
def test_bad_defence_input_is_refused_before_any_work(tmp_path, capsys, argv, message):
    checkpoint = micro_checkpoint(tmp_path / "runs" / "tecoa" / "best.safetensors")  # records no starting weights
    argv = [str(checkpoint) if a == "CKPT" else a for a in argv]
    out = tmp_path / "results"
    rc = main(["eval", "--datasets", "digits", "--n-samples", "4", "--out", str(out), "--no-progress",
               *(["--model", "pmgaft-micro"] if "--checkpoint" not in argv else []), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert not list(out.rglob("*.json"))


def test_report_shows_the_defence_table_and_flags_a_gap(runs, tmp_path):
    import shutil

    _, defended = runs
    out = tmp_path / "results"
    shutil.copytree(defended, out)
    assert main(["report", str(out), "--format", "md", "csv", "--quiet"]) == 0
    md = (out / "report" / "report.md").read_text()
    assert "## Test-time defences" in md and "### Test-time defence ttc: pgd2, eps = 4/255" in md
    assert "### pgd2, eps = 4/255" in md and "_ttc" not in (out / "report" / "results.csv").read_text()
    rows = (out / "report" / "defences.csv").read_text().splitlines()
    assert rows[0].startswith("defence,attack,eps_255,model,dataset,clean,clean_defended") and len(rows) == 3
    found = cards(out)
    non = found["pmgaft-micro/digits/pgd2_eps4_ttc.json"]
    ada = copy.deepcopy(found["pmgaft-micro/digits/pgd2_eps4_ttc-adaptive.json"])
    non = {**non, "robust_accuracy": 0.5, "clean_accuracy": 0.6}
    ada.update(robust_accuracy=0.1, clean_accuracy=0.6)
    assert any("adaptive robust 10.00% is far below non-adaptive 50.00%" in n for n in find_suspicious([non, ada]))
    assert not any("far below" in n for n in find_suspicious([non, {**ada, "robust_accuracy": 0.45}]))


@pytest.mark.slow
def test_two_ranks_write_what_one_process_writes_under_the_defence(tmp_path, digits_clip):
    """The evaluation's noise and the attacks' EOT draws are keyed by dataset position, not by rank or batch."""
    import os
    import subprocess
    import sys

    def run(out: Path, nproc: int, batch: str) -> None:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                    "-m", "pmgaft"] if nproc > 1 else [sys.executable, "-m", "pmgaft"]
        done = subprocess.run([*launcher, "eval", "--model", "pmgaft-micro", "--checkpoint", f"clip={digits_clip}",
                               "--datasets", "digits", "--attacks", "pgd", "--eps", "2", "--steps", "2",
                               "--n-samples", "13", "--batch-size", batch, "--device", "cpu", "--no-progress",
                               "--defence", "ttc", "--eot-samples", "2", "--out", str(out)],
                              capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr[-2000:]

    run(tmp_path / "one", 1, "8")
    run(tmp_path / "two", 2, "3")
    one, two = ({p: without_run(c) for p, c in cards(tmp_path / d).items()} for d in ("one", "two"))
    assert len(one) == 4 and one == two
    samples = [{p.name: json.loads(p.read_text()) for p in (tmp_path / d).rglob("*_ttc*.samples.json")}
               for d in ("one", "two")]
    for name, lists in samples[0].items():
        for key, values in lists.items():
            if "tau" in key:  # a float statistic: GEMMs of another batch size round differently
                assert samples[1][name][key] == pytest.approx(values, abs=1e-4), (name, key)
            else:
                assert samples[1][name][key] == values, (name, key)
