"""Numerical faults (NaN/inf loss, gradient or weights) and bad input that must fail before any work."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from pmgaft.cli import main
from pmgaft.errors import PmgaftError
from pmgaft.methods.pmg_aft import PmgAft
from pmgaft.models import all_finite
from pmgaft.training import loop, read_metadata, resolve_config

sys.path.insert(0, str(Path(__file__).parent))
from training_fixtures import micro_argv, same_weights, tiny_imagenet, weights  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tiny_imagenet(tmp_path_factory.mktemp("faults-data"))


def _nan_loss_at(monkeypatch, bad_step: int) -> None:
    """PMG-AFT's loss turns NaN at optimizer step ``bad_step`` (one losses() call per step at grad_accum 1)."""
    real, calls = PmgAft.losses, []

    def losses(self, *args):
        calls.append(1)
        terms = real(self, *args)
        if len(calls) == bad_step:
            terms = {**terms, "kl_general": terms["kl_general"] * float("nan")}
            terms["total"] = terms["ce"] + terms["kl_general"] + terms["kl_clean"]
        return terms

    monkeypatch.setattr(PmgAft, "losses", losses)


def test_nonfinite_loss_stops_with_its_terms_and_keeps_the_last_good_weights(data_root: Path, tmp_path: Path,
                                                                             monkeypatch, capsys) -> None:
    _nan_loss_at(monkeypatch, 3)
    out = tmp_path / "run"
    assert main(micro_argv(data_root, out, "--epochs", "2", "--save-every", "100")) == 2
    err = capsys.readouterr().err
    assert "non-finite loss or gradient at step 3" in err and "kl_general=nan" in err and "ce=" in err
    assert "last good weights (step 2)" in err and "--skip-nonfinite" in err and err.count("\n") == 1
    assert read_metadata(out / "last.safetensors")["step"] == "2"  # saved at the fault, though not scheduled
    assert all_finite(weights(out / "last.safetensors"))
    assert not (out / "best.safetensors").exists()


def test_skip_nonfinite_skips_the_batch_without_an_update(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    _nan_loss_at(monkeypatch, 3)
    out = tmp_path / "run"
    assert main(micro_argv(data_root, out, "--epochs", "2", "--save-every", "1", "--keep-checkpoints", "9",
                           "--skip-nonfinite", "1", "--log-every", "1")) == 0
    ckpts = out / "checkpoints"
    assert same_weights(ckpts / "step-000002" / "weights.safetensors", ckpts / "step-000003" / "weights.safetensors")
    assert not same_weights(ckpts / "step-000003" / "weights.safetensors", ckpts / "step-000004" /
                            "weights.safetensors")
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["skipped"]) for r in records if r["split"] == "nonfinite"] == [(3, True)]
    assert json.loads((out / "summary.json").read_text())["skipped_nonfinite"] == [3]
    assert torch.load(ckpts / "step-000006" / "state.pt", weights_only=True)["skipped"] == [3]


def test_nonfinite_weights_are_never_saved(data_root: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    real = loop.train_step

    def poisoned(ctx, step, micro):
        result = real(ctx, step, micro)
        if step == 2:  # a finite loss, but the update left an inf in the weights
            with torch.no_grad():
                next(ctx.target.clip.visual.parameters()).view(-1)[0] = float("inf")
        return result

    monkeypatch.setattr(loop, "train_step", poisoned)
    out = tmp_path / "run"
    assert main(micro_argv(data_root, out, "--epochs", "2", "--save-every", "1")) == 2
    assert "the weights after step 2 hold NaN/inf values: they were not saved" in capsys.readouterr().err
    assert read_metadata(out / "last.safetensors")["step"] == "1"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000001"]


def test_a_huge_learning_rate_ends_in_a_clear_error_not_nan_weights(data_root: Path, tmp_path: Path,
                                                                    capsys) -> None:
    out = tmp_path / "run"
    assert main(micro_argv(data_root, out, "--epochs", "3", "--lr", "1e6", "--save-every", "1")) == 2
    assert "non-finite" in capsys.readouterr().err
    for path in [out / "last.safetensors", *(out / "checkpoints").glob("*/weights.safetensors")]:
        assert all_finite(weights(path)), path


@pytest.mark.parametrize("values, message", [
    ({"lr": float("inf")}, "'lr' must be a finite number"),
    ({"lr": float("nan")}, "'lr' must be a finite number"),
    ({"lr": 0.0}, "lr must be > 0"),
    ({"lr": -1e-3}, "lr must be > 0"),
    ({"eps": float("nan")}, "'eps' must be a finite number"),
    ({"momentum": 1.5}, "momentum must be < 1"),
    ({"weight_decay": float("inf")}, "'weight_decay' must be a finite number"),
    ({"alpha": float("nan")}, "'alpha' must be a finite number"),
    ({"dist_timeout": 0.0}, "dist_timeout must be > 0"),
    ({"keep_checkpoints": 0}, "keep_checkpoints must be > 0"),
    ({"skip_nonfinite": -1}, "skip_nonfinite must be >= 0"),
    ({"allow_change": "device"}, "run-control key"),
    ({"allow_change": "lrr"}, "not a config key"),
])
def test_absurd_hyperparameters_are_config_errors(values, message) -> None:
    with pytest.raises(PmgaftError, match=message):
        resolve_config(values)


@pytest.mark.parametrize("case", ["unwritable", "dataset", "folder", "data_root", "missing", "garbage", "tag",
                                  "text_tag", "model"])
def test_bad_input_fails_before_any_model_or_data_is_loaded(data_root: Path, tmp_path: Path, monkeypatch, capsys,
                                                            case: str) -> None:
    def loaded(*args, **kwargs):
        raise AssertionError("loaded a model or data before checking the input")

    monkeypatch.setattr(loop, "load_clip", loaded)
    monkeypatch.setattr(loop, "load_train_data", loaded)
    garbage = tmp_path / "weights.pt"
    garbage.write_text("not a checkpoint")
    out = tmp_path / "new" / "run"
    extra, message = {
        "unwritable": (["--out-dir", "/proc/pmgaft-run"], "cannot write the run directory /proc/pmgaft-run"),
        "dataset": (["--dataset", "tinyimagenett"], "unknown dataset 'tinyimagenett'. Did you mean 'tinyimagenet'"),
        "folder": (["--dataset", f"folder:{tmp_path / 'nope'}"], "does not exist or is not a folder"),
        "data_root": (["--data-root", str(tmp_path / "nodata")], "not found under"),
        "missing": (["--pretrained", str(tmp_path / "nope.pt")], "--pretrained file"),
        "garbage": (["--pretrained", str(garbage)], "is not a weights file"),
        "tag": (["--pretrained", "openia"], "neither a file nor an open_clip tag"),
        "text_tag": (["--text-pretrained", "openia"], "--text-pretrained 'openia'"),
        "model": (["--model", "ViT-B-3"], "unknown model 'ViT-B-3'"),
    }[case]
    assert main(micro_argv(data_root, out, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("pmgaft train: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "new").exists()  # and nothing was left behind


class _Planted:
    """Unpickling this creates a file: the proof that a loader ran code from a checkpoint."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_planted_pickle_as_pretrained_is_refused_and_never_runs(data_root: Path, tmp_path: Path, capsys,
                                                                  writer: str) -> None:
    import pickle

    planted, marker = tmp_path / "weights.pt", tmp_path / "executed"
    evil = _Planted()
    evil.marker = str(marker)
    payload = {"state_dict": {"visual.proj": torch.zeros(1)}, "extra": evil}
    if writer == "pickle":
        planted.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, planted)
    assert main(micro_argv(data_root, tmp_path / "run", "--pretrained", str(planted))) == 2
    err = capsys.readouterr().err
    assert "refusing to load" in err and "--trust-checkpoint" in err and err.count("\n") == 1, err
    assert not marker.exists()
