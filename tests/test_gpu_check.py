"""``pmgaft gpu-check`` (``make gpu-check``) on a CPU: the one-line skip without CUDA, bad flags, the verdicts, and
every check run for real with ``--device cpu`` on pmgaft-micro (bf16 autocast on the CPU, torch.compile's eager
backend, torchrun with 2 gloo processes)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from pmgaft.bench import gpu_check, gpu_check_cli
from pmgaft.bench.gpu_check import GpuCheckConfig, check_precision
from pmgaft.bench.harness import build_harness
from pmgaft.cli import main

MICRO = ["--device", "cpu", "--model", "pmgaft-micro", "--classes", "10", "--check-batch", "8"]


def test_without_cuda_it_says_so_in_one_line_and_exits_0(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["gpu-check", "--json", str(tmp_path / "g.json")]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "no CUDA GPU here" in out
    assert not (tmp_path / "g.json").exists()


@pytest.mark.parametrize("argv, message", [
    (["--check-batch", "1"], "--check-batch and --classes must be >= 2"),
    (["--nproc", "0"], "--nproc >= 1"),
    (["--device", "cuda"], "CUDA is not available"),
])
def test_bad_flags_fail_before_any_work(argv, message, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["gpu-check", *argv]) == 2
    assert message in capsys.readouterr().err



def _no_work(*args, **kwargs):
    raise AssertionError("the checks ran")


def test_an_unwritable_json_folder_is_refused_before_any_work(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(gpu_check_cli, "run_gpu_check", _no_work)
    (tmp_path / "a-file").write_text("")
    assert main(["gpu-check", *MICRO, "--json", str(tmp_path / "a-file" / "g.json")]) == 2
    err = capsys.readouterr().err
    assert "--json folder" in err and "choose another with --json" in err and err.count("\n") == 1


def test_more_torchrun_processes_than_gpus_is_refused_before_any_work(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(gpu_check_cli, "run_gpu_check", _no_work)
    out = tmp_path / "g.json"
    for device in ("auto", "cuda:0"):
        assert main(["gpu-check", "--device", device, "--nproc", "3", "--json", str(out)]) == 2
        assert "--nproc 3 asks for one GPU per torchrun process, but this machine has 2" in capsys.readouterr().err
    monkeypatch.setattr(gpu_check_cli, "run_gpu_check", lambda config, echo: {"rows": [], "ok": True})
    assert main(["gpu-check", "--device", "cuda:0", "--nproc", "2", "--json", str(out)]) == 0  # as many: runs
    assert main(["gpu-check", "--device", "cuda:0", "--nproc", "3", "--only", "precision", "--json", str(out)]) == 0
    assert not list(tmp_path.glob(".pmgaft-write-test-*"))

def test_a_low_precision_step_that_disagrees_fails_the_check(monkeypatch):
    harness = build_harness("pmgaft-micro", classes=10, device=torch.device("cpu"))
    real = gpu_check._step

    def off_by_5_percent(harness, name, x, y, *, low, seed):
        terms, update = real(harness, name, x, y, low=low, seed=seed)
        return ({k: v * 1.05 for k, v in terms.items()} if low else terms), update
    monkeypatch.setattr(gpu_check, "TRAINABLE", ["tecoa"])
    config = GpuCheckConfig(model="pmgaft-micro", device="cpu", check_batch=4, classes=10)
    (row,) = check_precision(config, harness)
    assert row.ok and row.numbers["update_cosine"] > 0.99
    monkeypatch.setattr(gpu_check, "_step", off_by_5_percent)
    (row,) = check_precision(config, harness)
    assert not row.ok and row.numbers["term_gap"] > 0.04



@pytest.mark.parametrize("control_gap, control_cosine, gap, cosine, ok", [
    (0.0, 1.0, 0.01, 0.95, True),  # a steady fp32 step: 2% and 0.9
    (0.0, 1.0, 0.05, 0.95, False),
    (0.0, 1.0, 0.01, 0.80, False),
    (0.07, 0.40, 0.06, 0.60, True),  # a sensitive fp32 step (FARE's at random weights) loosens both
    (0.50, -1.0, 0.01, 0.30, False),  # a control pointing the other way: the cosine must still be 0.5
    (0.50, 0.95, 0.20, 0.99, False),  # a control far off in loss: a term's gap must still be within 10%
])
def test_a_disagreeing_control_cannot_pass_a_broken_low_precision_step(control_gap, control_cosine, gap, cosine, ok,
                                                                       monkeypatch):
    """The verdict on synthetic steps: the fp32 step, one with another attack start (the control) and the bf16 one,
    each a loss (scale 3 > log 10) and an update at the given cosine with fp32's."""
    def update(cos: float) -> torch.Tensor:
        return torch.tensor([cos, (1 - cos ** 2) ** 0.5], dtype=torch.float64)

    def synthetic(harness, name, x, y, *, low, seed):
        if low:
            return {"total": 3.0 * (1 + gap)}, update(cosine)
        return ({"total": 3.0 * (1 + control_gap)}, update(control_cosine)) if seed else ({"total": 3.0}, update(1.0))
    monkeypatch.setattr(gpu_check, "TRAINABLE", ["tecoa"])
    monkeypatch.setattr(gpu_check, "_step", synthetic)
    harness = SimpleNamespace(batch=lambda n, seed: (None, None))
    (row,) = check_precision(GpuCheckConfig(model="pmgaft-micro", device="cpu", classes=10), harness)
    assert row.ok is ok and row.numbers["term_gap"] == pytest.approx(gap)
    assert row.numbers["update_cosine"] == pytest.approx(cosine)

def test_a_check_that_raises_is_a_failed_row_and_the_others_still_run(monkeypatch):
    def broken(config, harness):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setitem(gpu_check.CHECKS, "bench", broken)
    monkeypatch.setitem(gpu_check.CHECKS, "pgd", lambda config, harness: [gpu_check.Row("pgd", "x", "1", ok=True)])
    doc = gpu_check.run_gpu_check(GpuCheckConfig(model="pmgaft-micro", device="cpu", classes=10,
                                                 checks=("bench", "pgd")))
    assert not doc["ok"] and [(r["check"], r["subject"], r["ok"]) for r in doc["rows"]] == [
        ("bench", "error", False), ("pgd", "x", True)]
    assert "out of memory" in doc["rows"][0]["measured"]


def test_the_pgd_check_finds_an_eps_that_breaks_images_and_compares_robust_sets(tmp_path):
    out = tmp_path / "g.json"
    assert main(["gpu-check", *MICRO, "--check-batch", "32", "--only", "pgd", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    robust = row["numbers"]["robust_fp32"]
    assert row["ok"] and len(robust) == 32 and sum(robust) <= 0.75 * 32  # at least a quarter broken
    assert row["numbers"]["eps_255"] in gpu_check.EPS_LADDER and row["numbers"]["bf16_logit_error"] > 0


@pytest.mark.slow
def test_every_check_runs_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "g.json"
    assert main(["gpu-check", *MICRO, "--batch-size", "4", "--compile-backend", "eager", "--nproc", "2",
                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    rows = {(r["check"], r["subject"]): r for r in doc["rows"]}
    assert doc["ok"] and set(doc["seconds"]) == set(gpu_check.CHECKS)
    assert {s for c, s in rows if c == "precision"} == set(gpu_check.TRAINABLE)
    assert {"train:pmg_aft", "train:pmg_aft+fast_memory", "released:pmg_aft", "pgd", "clean"} <= {
        s for c, s in rows if c == "bench"}
    assert rows[("bench", "train:tecoa")]["numbers"]["batch_size"] == 4
    assert rows[("compile", "eager, PGD-2")]["ok"] and rows[("torchrun", "gloo all-reduce")]["ok"]
    assert rows[("torchrun", "2 process(es): train + eval")]["numbers"]["train_returncode"] == 0
    table = capsys.readouterr().out
    assert "all checks agree" in table and table.count("\nprecision ") == len(gpu_check.TRAINABLE)
