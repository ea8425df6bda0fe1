"""``pmgaft reproduce`` with the ImageNet configs and the agft protocol: the plan, and the cost estimate's arithmetic
for every registered attack against a hand computation (bench figures written by the test, so the numbers are
exact)."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from pmgaft.attacks import ATTACKS
from pmgaft.bench import per_image_costs
from pmgaft.cli import main
from pmgaft.evaluation.protocols import PROTOCOLS
from pmgaft.reproduce.command import SURVIVORS, Plan, estimate

PGD_STEP, CLEAN, TRAIN_STEP = 0.02, 0.005, 0.01  # seconds per image in the bench figures below
BENCH = {"schema": "pmgaft.bench/1", "environment": {"device": "cuda (test figures)"},
         "config": {"model": "ViT-B-32", "batch_size": 4, "precision": "bf16", "steps": 10},
         "measurements": {"pgd": {"step_seconds": PGD_STEP * 4 * 10, "batch_size": 4, "steps": 10},
                          "clean": {"step_seconds": CLEAN * 4, "batch_size": 4},
                          **{f"train:{m}": {"method": m, "step_seconds": TRAIN_STEP * 256, "batch_size": 256}
                             for m in ("agft", "pmg_aft", "tecoa")}}}
IMAGES = {"cifar10": 10_000, "pcam": 32_768}  # their standard test-split counts
# Model passes per image, summed over the cells of steps 10 and 20 x eps 1 and 2 (iterative attacks; the others:
# eps 1 and 2), as (gradient passes, forward passes), worked out from what each attack runs. CIFAR-10 has 10
# classes, PCAM 2 (AutoAttack's class-count rules: APGD-CE alone). Later stages see the SURVIVORS share.
HAND = {
    "none": {"cifar10": (0, 0), "pcam": (0, 0)},
    "pgd": {"cifar10": (2 * (10 + 20), 0), "pcam": (2 * (10 + 20), 0)},
    "cw": {"cifar10": (2 * (10 + 20), 0), "pcam": (2 * (10 + 20), 0)},
    # APGD-CE 100 iterations; then APGD-T 9 targets x 100, FAB-T 9 x 100 (each with a forward check), Square 5000
    "autoattack": {"cifar10": (2 * (100 + SURVIVORS * (900 + 900)), 2 * SURVIVORS * (900 + 5000)),
                   "pcam": (2 * 100, 0)},
    # APGD-CE then APGD-DLR, 100 iterations each
    "apgd-ce-dlr": {"cifar10": (2 * (100 + SURVIVORS * 100), 0), "pcam": (2 * 100, 0)},
    # APGD-CE then APGD-DLR, 10 iterations x 20 EOT gradients each
    "apgd-ce-dlr-eot": {"cifar10": (2 * (200 + SURVIVORS * 200), 0), "pcam": (2 * 200, 0)},
}


@pytest.fixture
def bench(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(BENCH))
    return path


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_the_estimate_counts_every_registered_attack_as_it_runs(attack):
    protocol = replace(PROTOCOLS["agft"], datasets=("cifar10", "pcam"), attacks=(attack,), eps=(1.0, 2.0),
                       steps=(10, 20))
    cost = estimate(Plan({}, protocol, out=None, models=["clip", "agft"]), per_image_costs(BENCH))  # type: ignore
    hand = sum(n * (CLEAN + HAND[attack][d][0] * PGD_STEP + HAND[attack][d][1] * CLEAN) for d, n in IMAGES.items())
    assert cost["eval_hours"] == pytest.approx(2 * hand / 3600)
    assert cost["images"] == sum(IMAGES.values())


def test_imagenet_configs_under_the_agft_protocol_plan_and_cost(tmp_path, bench, capsys):
    argv = ["reproduce", "--data-root", str(tmp_path), "--configs", "configs/imagenet", "--methods", "clip", "agft",
            "pmg_aft", "tecoa", "--protocol", "agft", "--out", str(tmp_path / "rep"), "--dry-run"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "3 training run(s), 4 model(s) evaluated with --protocol agft" in text
    assert ("train agft      configs/imagenet/agft.yaml (recipe paper, lr 0.0004, batch 256, 10 epochs) on imagenet "
            "(1,281,167 images)") in text
    assert "train tecoa     configs/imagenet/tecoa.yaml (recipe paper, lr 1e-05, batch 256, 10 epochs)" in text
    assert ("evaluate clip, agft, pmg_aft, tecoa on 15 sets (334,128 images per model), attacks pgd, cw, "
            "apgd-ce-dlr-eot at eps 1/255") in text
    assert "no cost estimate" in text and not (tmp_path / "rep").exists()

    assert main([*argv, "--bench", str(bench)]) == 0
    text = capsys.readouterr().out
    # training: seconds per image x ImageNet's 1,281,167 training images x 10 epochs
    assert f"train agft      {TRAIN_STEP * 1_281_167 * 10 / 3600:8.2f} GPU-h" in text
    # evaluation: PGD-20 + CW-20 + APGD-CE/APGD-DLR at 10 iterations x EOT 20 on every set; PCAM (2 classes) gets
    # APGD-CE alone, the other 14 sets (301,360 images) APGD-DLR on the survivors too
    others, pcam = CLEAN + (20 + 20 + 200 + SURVIVORS * 200) * PGD_STEP, CLEAN + (20 + 20 + 200) * PGD_STEP
    hours = 4 * (301_360 * others + 32_768 * pcam) / 3600
    assert f"evaluate        {hours:8.2f} GPU-h" in text


def test_an_attack_without_cost_metadata_is_refused_by_name(tmp_path, bench, monkeypatch, capsys):
    monkeypatch.setitem(ATTACKS, "apgd-ce-dlr-eot", replace(ATTACKS["apgd-ce-dlr-eot"], passes=None))
    assert main(["reproduce", "--data-root", str(tmp_path), "--configs", "configs/imagenet", "--methods", "clip",
                 "--protocol", "agft", "--bench", str(bench), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "no cost estimate for attack 'apgd-ce-dlr-eot'" in err and "AttackSpec.passes" in err


def test_methods_are_the_registry_s_trainable_ones(tmp_path, capsys):
    from pmgaft.methods import METHODS

    assert main(["reproduce", "--help"]) == 0
    text = "".join(capsys.readouterr().out.split())
    trainable = [name for name, cls in METHODS.items() if cls.trainable]
    assert "agft" in trainable and "none" not in trainable
    assert "--methods{" + ",".join(["clip", *trainable]) + "}" in text
    assert main(["reproduce", "--data-root", str(tmp_path), "--methods", "none", "--dry-run"]) == 2
    assert "invalid choice: 'none'" in capsys.readouterr().err


@pytest.mark.slow
def test_agft_reproduces_end_to_end_on_tiny_data(tmp_path, monkeypatch, capsys):
    """configs/imagenet/agft.yaml at toy scale (its settings, with CIFAR-10's miniature as the training set, 2 steps,
    fp32 on the CPU), trained and evaluated by ``reproduce --protocol agft`` (its attacks and scoring, on two of its
    sets) with the pre-trained model, then the report; a second run reuses everything."""
    import yaml

    from eval_fixtures import cards, data_root, micro_checkpoint

    root, start = data_root(tmp_path, "cifar10", "pcam"), micro_checkpoint(tmp_path / "clip.safetensors")
    config = yaml.safe_load(open("configs/imagenet/agft.yaml"))
    config.update(dataset="cifar10", batch_size=2, epochs=1, max_steps=2, warmup_steps=1, num_workers=0,
                  precision="fp32", prompt_style="train")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "agft.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setitem(PROTOCOLS, "agft", replace(PROTOCOLS["agft"], datasets=("cifar10", "pcam")))
    argv = ["reproduce", "--data-root", str(root), "--configs", str(tmp_path / "configs"), "--methods", "clip",
            "agft", "--model", "pmgaft-micro", "--pretrained", str(start), "--protocol", "agft", "--n-samples", "2",
            "--device", "cpu", "--out", str(tmp_path / "rep")]
    assert main(argv) == 0
    run = tmp_path / "rep" / "runs" / "agft"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["steps"] == 2 and (run / "best.safetensors").is_file()
    results = cards(tmp_path / "rep" / "results")
    cells = {(c["model"]["label"], c["dataset"]["name"], c["attack"]["id"]) for c in results.values()}
    assert cells == {(m, d, a) for m in ("clip", "agft") for d in ("cifar10", "pcam")
                     for a in ("pgd20", "cw20", "apgd-ce-dlr-eot")}
    assert all(c["dataset"]["n"] == 2 and c["prompts"]["style"] == "agft" and c["model"]["logit_scale"] == 100
               and c["model"]["logit_scale_source"] == "protocol agft" for c in results.values())
    assert {c["model"]["method"] for c in results.values() if c["model"]["label"] == "agft"} == {"agft"}
    assert (tmp_path / "rep" / "report" / "report.md").is_file()
    capsys.readouterr()
    assert main(argv) == 0
    assert f"skip training agft: {run} is finished" in capsys.readouterr().out
