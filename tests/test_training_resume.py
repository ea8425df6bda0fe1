"""``--resume``: the run's own config.yaml, safe state, atomic checkpoints, stale temporaries, copied folders."""
from __future__ import annotations

import json
import random
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pmgaft.cli import main
from pmgaft.training import read_metadata
from pmgaft.training.state import read_state, rng_state, set_rng_state, write_state

sys.path.insert(0, str(Path(__file__).parent))
from training_fixtures import micro_argv, same_weights, tiny_imagenet  # noqa: E402

SRC = Path(__file__).parents[1] / "src" / "pmgaft" / "training"
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tiny_imagenet(tmp_path_factory.mktemp("resume-data"))


@pytest.fixture(scope="module")
def reference(data_root: Path, tmp_path_factory) -> Path:
    """An uninterrupted 2-epoch run (6 steps)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(micro_argv(data_root, out, "--epochs", "2")) == 0
    return out


def _draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_state_loads_weights_only_and_restores_every_rng_exactly(tmp_path: Path) -> None:
    np.random.seed(5), random.seed(5), torch.manual_seed(5), np.random.randn()  # a cached gaussian too
    write_state(tmp_path / "state.pt", {"rng": rng_state(), "step": 3})
    expected = _draws()
    loaded = torch.load(tmp_path / "state.pt", weights_only=True)  # raises on anything but plain data
    set_rng_state(loaded["rng"])
    assert _draws() == expected
    assert read_state(tmp_path / "state.pt")["step"] == 3


def test_training_code_never_unpickles_unsafely() -> None:
    for path in SRC.glob("*.py"):
        text = path.read_text()
        assert "weights_only=False" not in text, path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)


def test_resume_needs_nothing_else_and_keeps_max_steps(data_root: Path, reference: Path, tmp_path: Path,
                                                       monkeypatch, capsys) -> None:
    out = tmp_path / "run"
    assert main(micro_argv(data_root, out, "--epochs", "2", "--max-steps", "2")) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert "out_dir" not in saved and Path(saved["data_root"]).is_absolute() and saved["max_steps"] == 2
    state = torch.load(out / "checkpoints" / "step-000002" / "state.pt", weights_only=True)
    assert state["step"] == 2 and state["data"]["train_images"] == 15

    monkeypatch.chdir(tmp_path)  # another working directory: nothing in the run depends on the old one
    capsys.readouterr()
    assert main(["train", "--out-dir", "run", "--resume"]) == 0  # max_steps stays the run's own: 2
    assert "is at step 2 of 6; nothing to train (max_steps 2" in capsys.readouterr().out
    assert read_metadata(out / "last.safetensors")["step"] == "2"

    assert main(["train", "--out-dir", "run", "--resume", "--max-steps", "none"]) == 0
    assert same_weights(reference / "last.safetensors", out / "last.safetensors")
    assert same_weights(reference / "best.safetensors", out / "best.safetensors")
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    resumed = [r for r in records if r["split"] == "resume"]
    assert resumed[-1]["step"] == 2 and resumed[-1]["changes"] == {"max_steps": [2, None]}  # the override, logged
    assert yaml.safe_load((out / "config.yaml").read_text())["max_steps"] is None


def test_resume_flags_must_agree_or_be_allowed(data_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(micro_argv(data_root, out, "--epochs", "2", "--max-steps", "2")) == 0
    capsys.readouterr()
    assert main(["train", "--out-dir", str(out), "--resume", "--lr", "0.5", "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert "lr: 0.001 -> 0.5" in err and "seed: 0 -> 3" in err and "--allow-change lr,seed" in err
    assert err.count("\n") == 1  # one paragraph

    assert main(["train", "--out-dir", str(out), "--resume", "--lr", "0.5", "--allow-change", "lr",
                 "--max-steps", "3"]) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["changes"] for r in records if r["split"] == "resume"] == [{"lr": [0.001, 0.5], "max_steps": [2, 3]}]
    step3 = [r for r in records if r["split"] == "train" and r["step"] == 3][0]
    assert step3["lr"] == pytest.approx(0.5 * 0.5 * (1 + np.cos(np.pi * 1 / 5)))  # the new lr on the old schedule

    assert main(["train", "--out-dir", str(out), "--resume", "--allow-change", "device"]) == 2
    assert "run-control key" in capsys.readouterr().err


def test_copied_run_folder_resumes_in_place(data_root: Path, reference: Path, tmp_path: Path) -> None:
    original = tmp_path / "a" / "run"
    assert main(micro_argv(data_root, original, "--epochs", "2", "--max-steps", "3")) == 0
    copy = tmp_path / "b" / "moved"
    shutil.copytree(original, copy)
    assert main(["train", "--out-dir", str(copy), "--resume", "--max-steps", "none"]) == 0
    assert same_weights(reference / "last.safetensors", copy / "last.safetensors")
    assert read_metadata(original / "last.safetensors")["step"] == "3"  # the original folder is untouched


def test_resume_without_checkpoint_starts_at_step_0(data_root: Path, reference: Path, tmp_path: Path,
                                                    capsys) -> None:
    out = tmp_path / "run"
    assert main(micro_argv(data_root, out, "--epochs", "2", "--resume")) == 0
    assert "has no complete checkpoint: starting from step 0" in capsys.readouterr().out
    assert same_weights(reference / "last.safetensors", out / "last.safetensors")


def test_stale_temporaries_removed_and_damaged_checkpoint_skipped(data_root: Path, reference: Path,
                                                                  tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(micro_argv(data_root, out, "--epochs", "2", "--max-steps", "3", "--save-every", "1",
                           "--keep-checkpoints", "3")) == 0
    (out / "checkpoints" / ".tmp-step-000004-999").mkdir()  # what a kill in the middle of a write leaves
    (out / "checkpoints" / ".tmp-step-000004-999" / "weights.safetensors").write_bytes(b"half")
    (out / ".last.safetensors.999.tmp").write_bytes(b"half")
    manifest = out / "checkpoints" / "step-000003" / "manifest.json"  # a damaged newest checkpoint
    manifest.write_text(manifest.read_text()[:20])
    capsys.readouterr()
    with pytest.warns(UserWarning, match="skipping checkpoint .*step-000003: no readable manifest.json"):
        assert main(["train", "--out-dir", str(out), "--resume", "--max-steps", "none"]) == 0
    printed = capsys.readouterr().out
    assert "removed .tmp-step-000004-999" in printed and "removed .last.safetensors.999.tmp" in printed
    assert "resuming" in printed and "from step 2" in printed
    assert not list(out.rglob("*.tmp")) and not list((out / "checkpoints").glob(".tmp-*"))
    assert same_weights(reference / "last.safetensors", out / "last.safetensors")


def test_checkpoints_are_pruned_but_the_best_is_kept(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(micro_argv(data_root, out, "--epochs", "3", "--save-every", "1", "--eval-every", "3",
                           "--keep-checkpoints", "2")) == 0
    best = json.loads((out / "summary.json").read_text())["best"]["step"]
    kept = sorted(int(p.name.split("-")[1]) for p in (out / "checkpoints").iterdir())
    assert kept == sorted({8, 9, best})
    assert read_metadata(out / "best.safetensors")["step"] == str(best)
    assert (out / "last.safetensors").samefile(out / "checkpoints" / "step-000009" / "weights.safetensors")


def test_new_run_on_an_old_one_is_refused_and_legacy_runs_name_the_way_out(data_root: Path, tmp_path: Path,
                                                                            capsys) -> None:
    out = tmp_path / "run"
    assert main(micro_argv(data_root, out, "--max-steps", "1")) == 0
    assert main(micro_argv(data_root, out, "--max-steps", "1")) == 2
    assert "already holds a training run; pass --resume" in capsys.readouterr().err
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "train_state.pt").write_bytes(b"old pickle")
    assert main(micro_argv(data_root, legacy, "--resume")) == 2
    assert "older pmgaft" in capsys.readouterr().err
