"""``configs/imagenet/``: the AGFT paper run as ``pmgaft train --dry-run`` shows it, every ImageNet config's
sources, and a missing ImageNet as a one-line error before any model is built."""
from __future__ import annotations

from pathlib import Path

import pytest

from pmgaft.cli import main
from pmgaft.training.dryrun import describe_run

CONFIGS = Path(__file__).parents[1] / "configs" / "imagenet"
AGFT = CONFIGS / "agft.yaml"

# AGFT's README train command over its main.py / train.py / utils.py / clip_dataset.py (configs/imagenet/README.md)
PAPER_RUN = {"method": "agft", "model": "ViT-B-32", "pretrained": "openai", "dataset": "imagenet",
             "agft_scale": 180.0, "agft_ratio": 0.4, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0,
             "lr": 4e-4, "warmup_steps": 1000, "epochs": 10, "batch_size": 256, "transform": "train224",
             "augment": False, "prompt_style": "agft_train", "logit_scale": "model", "normalization": "clip",
             "eps": 1.0, "step_size": 1.0, "attack_steps": 2, "random_start": True, "val_size": 0}


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if anything builds a CLIP model."""
    from pmgaft.training import loop

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built")
    monkeypatch.setattr(loop, "load_clip", refuse)


def test_agft_config_resolves_to_exactly_the_paper_run(tmp_path: Path, no_model) -> None:
    plan = describe_run({"data_root": str(tmp_path)}, AGFT)
    config = plan["config"]
    assert {key: getattr(config, key) for key in PAPER_RUN} == PAPER_RUN
    assert plan["data"]["preprocessing"].startswith("Resize(224, bilinear) + CenterCrop(224)")
    assert plan["data"]["prompt"] == "This is a photo of a {}."
    assert "imagenet_classes_names.txt" in plan["data"]["class names"] and "tench, goldfish" in \
        plan["data"]["class names"]
    assert plan["data"]["optimizer steps"].startswith("5,004 per epoch x 10 epochs = 50,040 at batch 256")
    assert plan["run"]["logit scale recorded for evaluation"].startswith("CLIP's own")
    assert plan["settings"]["agft_scale"] == (180.0, f"config file {AGFT}")


def test_dry_run_prints_every_setting_with_its_source_and_builds_nothing(tmp_path: Path, capsys, no_model) -> None:
    assert main(["train", "--config", str(AGFT), "--data-root", str(tmp_path), "--lr", "1e-5", "--dry-run"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ")}
    assert lines["agft_scale"] == ["180", "config", "file", str(AGFT)]
    assert lines["lr"] == ["1e-05", "flag"]
    assert lines["kl_reduction"] == ["batchmean", "recipe", "paper"]
    assert lines["val_attack_steps"] == ["10", "pmgaft", "default"]
    assert "NOT FOUND" in out and "image-net.org" in out and not (tmp_path / "runs").exists()
    # a method default, and a bad value: the same one-line error as a real run
    assert main(["train", "--method", "agft", "--dry-run"]) == 0
    assert "agft_scale        180                      method agft default" in capsys.readouterr().out
    assert main(["train", "--config", str(AGFT), "--agft-ratio", "-1", "--dry-run"]) == 2
    assert "agft_ratio must be a positive finite number" in capsys.readouterr().err
    assert main(["train", "--config", str(AGFT), "--dataset", "imagenett", "--dry-run"]) == 2
    assert "Did you mean 'imagenet'" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_imagenet_config_is_explicit_and_reads_imagenet_train(path: Path, tmp_path: Path) -> None:
    """Each config spells out the settings its README cites (nothing left to a recipe or method default)."""
    plan = describe_run({"data_root": str(tmp_path)}, path)
    config = plan["config"]
    assert config.dataset == "imagenet" and config.model == "ViT-B-32" and config.pretrained == "openai"
    assert config.val_size == 0 and config.augment is False
    for key in ("lr", "batch_size", "epochs", "warmup_steps", "optimizer", "eps", "attack_steps", "transform",
                "prompt_style"):
        assert plan["settings"][key][1] == f"config file {path}", key
    assert f"configs/imagenet/{path.name}" in (CONFIGS / "README.md").read_text()


def test_a_config_that_needs_imagenet_without_it_fails_before_any_model(tmp_path: Path, capsys, no_model) -> None:
    status = main(["train", "--config", str(AGFT), "--data-root", str(tmp_path / "data"), "--out-dir",
                   str(tmp_path / "run"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert f"not found under {tmp_path / 'data' / 'imagenet'}" in err
    assert "https://image-net.org/download" in err and "ILSVRC2012_img_train.tar" in err
    assert not (tmp_path / "run").exists()
