"""``pmgaft train`` end to end on pmgaft-micro and a TinyImageNet-layout fixture: checkpoints, resume, errors."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pmgaft.cli import main
from pmgaft.errors import PmgaftError
from pmgaft.methods import METHODS
from pmgaft.models import load_clip
from pmgaft.training import RECIPES, TrainConfig, read_metadata, resolve_config, train
from pmgaft.training.data import BatchPlan
from pmgaft.training.optim import warmup_cosine

sys.path.insert(0, str(Path(__file__).parent))
from training_fixtures import WNIDS, imagenet_train, tiny_imagenet  # noqa: E402

TRAINABLE = [name for name, cls in METHODS.items() if cls.trainable]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tiny_imagenet(tmp_path_factory.mktemp("train-data"))


def _argv(data_root: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--model", "pmgaft-micro", "--pretrained", "none", "--dataset", "tinyimagenet",
            "--data-root", str(data_root), "--out-dir", str(out), "--batch-size", "4", "--epochs", "1",
            "--warmup-steps", "1", "--val-size", "3", "--val-attack-steps", "1", "--num-workers", "0",
            "--device", "cpu", "--no-progress", "--lr", "1e-3", *extra]


def _outputs(path: Path, x: torch.Tensor) -> torch.Tensor:
    model = load_clip("pmgaft-micro", path).model
    with torch.no_grad():
        return model.encode_image(x)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("recipe", list(RECIPES))
@pytest.mark.parametrize("method", TRAINABLE)
def test_train_end_to_end(data_root: Path, tmp_path: Path, method: str, recipe: str) -> None:
    out = tmp_path / "run"
    assert main(_argv(data_root, out, "--method", method, "--recipe", recipe, "--max-steps", "2")) == 0
    for name in ("last.safetensors", "config.yaml", "log.jsonl", "prompts.json", "tb", "checkpoints/step-000002/"
                 "weights.safetensors", "checkpoints/step-000002/state.pt", "checkpoints/step-000002/manifest.json"):
        assert (out / name).exists(), name
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["method"] == method and saved["recipe"] == recipe and saved["logit_scale"] == \
        RECIPES[recipe]["logit_scale"]
    assert resolve_config(saved).method == method  # the written config reads back
    meta = read_metadata(out / "last.safetensors")
    assert meta["pmgaft_method"] == method and meta["pmgaft_recipe"] == recipe and meta["step"] == "2"
    assert meta["pmgaft_model"] == "pmgaft-micro"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any(r["split"] == "train" and "total" in r for r in log)
    # the weights reload bit-identically, through pmgaft and through plain open_clip
    from safetensors.torch import load_file
    sd = load_file(str(out / "last.safetensors"))
    model = load_clip("pmgaft-micro", out / "last.safetensors").model
    assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())
    import open_clip
    from pmgaft.models import stock_kernels
    plain = open_clip.create_model_and_transforms("pmgaft-micro", pretrained=str(out / "last.safetensors"))[0]
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad(), stock_kernels([model.visual]):  # open_clip's own layers: bit-identical
        assert torch.equal(plain.eval().encode_image(x), model.encode_image(x))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_agft_checkpoint_is_evaluated_at_clip_scale_not_its_training_scale(data_root: Path, tmp_path: Path) -> None:
    """AGFT's s = 180 is a training-only setting: the checkpoint records the run's logit_scale ('model', CLIP's
    100) for evaluation, and keeps s only as provenance."""
    from pmgaft.evaluation.grid import logits_setup
    from pmgaft.evaluation.protocols import PROTOCOLS
    from pmgaft.models import checkpoint_record

    out = tmp_path / "run"
    assert main(_argv(data_root, out, "--method", "agft", "--max-steps", "2")) == 0
    meta = read_metadata(out / "last.safetensors")
    assert meta["pmgaft_logit_scale"] == "model" and meta["pmgaft_method"] == "agft"
    assert json.loads(meta["pmgaft_config"])["agft_scale"] == 180.0
    record = checkpoint_record(out / "last.safetensors")
    assert record.logit_scale == "model" and load_clip(None, out / "last.safetensors").logit_scale == "model"
    own_scale = [p for p in PROTOCOLS.values() if p.logit_scale is None]
    assert own_scale
    for protocol in own_scale:  # protocols that use each model's own scale: CLIP's, never 180
        assert logits_setup(protocol, record)["logit_scale"] == "model"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any(r["split"] == "train" and "soft_ce" in r for r in log)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_agft_on_the_imagenet_layout_streams_images_and_names_wnids(tmp_path: Path, monkeypatch) -> None:
    """ImageNet train (torchvision's layout, or an ImageFolder of its wnid folders) streams through the loader:
    a run decodes only the images of the steps it runs, also through worker processes; AGFT's prompts name the
    wnids by the reference ImageNet list whichever way the data comes."""
    from pmgaft.data import base

    root = imagenet_train(tmp_path / "data")  # 3 classes x 4 images
    paper_run = ("--method", "agft", "--dataset", "imagenet", "--transform", "train224", "--prompt-style",
                 "agft_train", "--val-size", "0", "--max-steps", "2")
    decoded = []
    real = base.load_image
    monkeypatch.setattr(base, "load_image", lambda path: decoded.append(path) or real(path))
    assert main(_argv(root, tmp_path / "run", *paper_run)) == 0
    assert len(decoded) == 2 * 4 and len(set(decoded)) == 8  # two steps of batch 4, nothing decoded ahead
    prompts = json.loads((tmp_path / "run" / "prompts.json").read_text())
    names = ["goldfish", "European fire salamander", "Egyptian cat"]  # WNIDS, sorted
    assert prompts == {"classnames": names, "templates": ["This is a photo of a {}."]}
    monkeypatch.undo()
    folder = ("--dataset", f"folder:{root / 'imagenet' / 'train'}", "--num-workers", "2")
    assert main(_argv(root, tmp_path / "folder", *paper_run, *folder)) == 0
    assert json.loads((tmp_path / "folder" / "prompts.json").read_text()) == prompts
    assert sorted(WNIDS) == WNIDS


def test_a_style_that_drops_classes_of_a_wnid_folder_is_refused_before_the_model(tmp_path: Path, capsys,
                                                                                   monkeypatch) -> None:
    """ttc's ImageNet names drop the duplicate 'maillot' class n03710637: on a folder of ImageNet wnids its prompts
    have one class fewer than the data's labels. Training refuses it (one sentence, no run folder, no model
    built) instead of training on shifted labels or failing inside the loss; the dry run says so too."""
    from pmgaft.training import loop

    folder = imagenet_train(tmp_path / "data") / "imagenet" / "train"
    (folder / WNIDS[0]).rename(folder / "n03710637")
    monkeypatch.setattr(loop, "load_clip", lambda *a, **k: pytest.fail("the model was built"))
    argv = _argv(tmp_path, tmp_path / "run", "--dataset", f"folder:{folder}", "--prompt-style", "ttc",
                 "--val-size", "0", "--max-steps", "1")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "prompt_style 'ttc' scores" in err and "merged or dropped classes" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
    assert main([*argv, "--dry-run"]) == 0
    assert "class names: prompt_style 'ttc' scores" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_resume_is_bit_identical_and_original_untouched(data_root: Path, tmp_path: Path) -> None:
    common = ("--method", "pmg_aft", "--epochs", "2")  # 15 train images / batch 4 = 3 steps per epoch
    assert main(_argv(data_root, tmp_path / "full", *common)) == 0
    assert main(_argv(data_root, tmp_path / "cut", *common, "--max-steps", "4")) == 0
    assert read_metadata(tmp_path / "cut" / "last.safetensors")["step"] == "4"
    assert main(_argv(data_root, tmp_path / "cut", *common, "--resume", "--max-steps", "none")) == 0
    from safetensors.torch import load_file
    full, cut = load_file(str(tmp_path / "full" / "last.safetensors")), load_file(str(tmp_path / "cut" /
                                                                                       "last.safetensors"))
    assert full.keys() == cut.keys() and all(torch.equal(full[k], cut[k]) for k in full)
    assert (tmp_path / "full" / "best.safetensors").exists()
    # only the image tower moved: the text tower and logit scale equal the (seeded) initial model's
    torch.manual_seed(0)
    init = load_clip("pmgaft-micro").model.state_dict()
    assert all(torch.equal(init[k], full[k]) for k in init if not k.startswith("visual."))
    assert any(not torch.equal(init[k], full[k]) for k in init if k.startswith("visual."))
    # resuming with another setting is refused, naming it
    with pytest.raises(PmgaftError, match="lr"):
        train(resolve_config({**yaml.safe_load((tmp_path / "cut" / "config.yaml").read_text()), "lr": 0.5,
                              "resume": True, "out_dir": str(tmp_path / "cut")}))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_original_model_frozen_during_training(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    from pmgaft.training import loop

    seen = {}
    real = loop._classifiers

    def spy(*args, **kwargs):
        target, original, quick_gelu = real(*args, **kwargs)
        seen["original"], seen["before"] = original, {k: v.clone() for k, v in original.state_dict().items()}
        return target, original, quick_gelu

    monkeypatch.setattr(loop, "_classifiers", spy)
    assert main(_argv(data_root, tmp_path / "run", "--method", "tga_zsr", "--max-steps", "2")) == 0
    original = seen["original"]
    assert not original.training and all(not p.requires_grad and p.grad is None for p in original.parameters())
    assert all(torch.equal(v, seen["before"][k]) for k, v in original.state_dict().items())


def test_bad_input_fails_before_any_work(data_root: Path, tmp_path: Path, capsys) -> None:
    for extra, message in [(("--alpha", "-1"), "alpha and beta"), (("--beta", "-2"), "alpha and beta"),
                           (("--batch-size", "64"), "larger than the training split"),
                           (("--method", "none"), "nothing to train")]:
        assert main(_argv(data_root, tmp_path / "x", *extra)) == 2
        assert message in capsys.readouterr().err
    for extra in (("--method", "pmgaft"), ("--recipe", "offical")):
        try:
            status = main(_argv(data_root, tmp_path / "x", *extra))
        except SystemExit as exit_info:  # argparse's own exit (or a status, where the CLI catches it)
            status = exit_info.code
        assert status == 2
        assert "invalid choice" in capsys.readouterr().err
    config = tmp_path / "c.yaml"
    config.write_text("method: tecoa\nbatchsize: 8\n")
    assert main(_argv(data_root, tmp_path / "x", "--config", str(config))) == 2
    err = capsys.readouterr().err
    assert "'batchsize'" in err and "batch_size" in err
    with pytest.raises(PmgaftError, match="Valid: official, paper"):
        resolve_config({"recipe": "papr"})
    one_class = tiny_imagenet(tmp_path / "one", classes=1)
    assert main(_argv(one_class, tmp_path / "x", "--val-size", "0")) == 2
    assert "at least 2 classes" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_config_precedence_and_configs_dir(tmp_path: Path) -> None:
    assert resolve_config({}).lr == 5e-5 and resolve_config({"method": "fare"}).optimizer == "adamw"
    official = resolve_config({"recipe": "official"})
    assert (official.logit_scale, official.kl_reduction, official.normalization) == (1.0, "sum", "imagenet")
    config = tmp_path / "c.yaml"
    config.write_text("recipe: official\nlr: 0.001\nbatch_size: 8\n")
    resolved = resolve_config({"lr": 0.01}, config)
    assert (resolved.lr, resolved.batch_size, resolved.kl_reduction) == (0.01, 8, "sum")
    configs = sorted(Path(__file__).parents[1].glob("configs/**/*.yaml"))
    assert len(configs) >= 2 * len(TRAINABLE)
    for path in configs:
        assert isinstance(resolve_config({}, path), TrainConfig), path


def test_schedule_and_batch_plan() -> None:
    f = warmup_cosine(2, 10)
    assert [round(f(s), 4) for s in (0, 1, 2)] == [0.5, 1.0, 1.0] and f(10) == 0.0
    plans = [BatchPlan(20, 8, seed=3, world=2, rank=r, grad_accum=2) for r in (0, 1)]
    step = [sum(p.micro_batches(1), []) for p in plans]
    assert len(step[0]) == len(step[1]) == 4 and not set(step[0]) & set(step[1])
    assert plans[0].micro_batches(1) == plans[0].micro_batches(1)  # a pure function of (seed, step)


@pytest.mark.parametrize("values, message", [
    ({"lr": "abc"}, "'lr' must be float"),
    ({"eps": [1, 2]}, "'eps' must be float"),
    ({"batch_size": 8.5}, "'batch_size' must be int"),
    ({"augment": "yes"}, "'augment' must be bool"),
    ({"kl_reduction": "mean"}, "Did you mean 'batchmean'"),
    ({"normalization": "clipp"}, "unknown normalization"),
    ({"prompt_style": "foo"}, "unknown prompt_style"),
    ({"prompt_style": "ttc", "dataset": "imagenet"}, "training uses the data's own labels"),
    ({"transform": "foo"}, "unknown transform"),
    ({"logit_scale": -1.0}, "logit_scale must be"),
    ({"momentum": -1.0}, "momentum must be >= 0"),
    ({"alpha": -1.0}, "alpha and beta must be >= 0"),
    ({"eps": 300.0}, "1/255 units"),
    ({"device": "foo"}, "unknown device 'foo'"),
])
def test_config_values_are_checked_before_any_work(values, message) -> None:
    """Wrong types and values from a YAML file are a PmgaftError (exit 2), not a TypeError deep in the loop."""
    with pytest.raises(PmgaftError, match=message):
        resolve_config(values)


def test_yaml_values_of_the_wrong_type_are_one_line_errors(tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("lr: abc\n")
    assert main(["train", "--config", str(config), "--device", "cpu"]) == 2
    assert "config key 'lr' must be float" in capsys.readouterr().err
    config.write_text("lr: 5e-5\nweight_decay: 1e-4\n")  # PyYAML reads these as strings
    assert (resolve_config({}, config).lr, resolve_config({}, config).weight_decay) == (5e-5, 1e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_a_one_line_error(capsys) -> None:
    assert main(["train", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_every_train_flag_has_real_help() -> None:
    """No placeholder help ("lr", "kl reduction"): each flag says what it is; recipe/method defaults appear."""
    import argparse

    from pmgaft.training import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    for action in parser._actions:
        if action.dest in ("help",):
            continue
        words = action.dest.replace("_", " ")
        assert action.help and action.help.split(" (default")[0].strip() != words, action.dest
        assert len(action.help.split()) >= 4, (action.dest, action.help)
    helps = {a.dest: a.help for a in parser._actions}
    assert "1/255" in helps["eps"] and "1/255" in helps["step_size"]
    assert "recipe official: sum" in helps["kl_reduction"] and "fare: adamw" in helps["optimizer"]
