"""Training under torchrun (2 CPU processes, gloo, loopback) computes what one process computes; a checkpoint
written by 2 ranks resumes under 1; a rank that dies or hangs makes the other exit, naming it.

Tolerance of the equality: DDP averages the two ranks' gradients by an all-reduce, and each rank accumulates its
micro-batches, so the same sums are added in another order (and the micro-batch matmuls have other shapes) than
in one process: float32 rounding differs by a few ulps per step. After 3 SGD steps the weights agree to 1.5e-8
absolute (measured); the test allows 1e-6 (rtol 1e-5), while one step's update moves them by ~6e-4 and a
different data order or attack start would differ by as much.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pmgaft.cli import main
from pmgaft.methods import AttackSettings, build_method
from pmgaft.models import ZeroShotClassifier, load_clip
from pmgaft.training import read_metadata, resolve_config
from pmgaft.training.faults import ENV, RANK_ENV
from pmgaft.training.step import attack_seeds

sys.path.insert(0, str(Path(__file__).parent))
from training_fixtures import micro_argv, tiny_imagenet, weights  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
ATOL, RTOL = 1e-6, 1e-5
# 15 training images, global batch 4: 3 steps; under 2 ranks each takes 2 images as 2 micro-batches of 1
FLAGS = ("--method", "pmg_aft", "--epochs", "1", "--save-every", "1", "--keep-checkpoints", "5", "--log-every", "1",
         "--dist-timeout", "30")


def _torchrun(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "pmgaft",
           *argv]
    return subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tiny_imagenet(tmp_path_factory.mktemp("ddp-data"))


def _assert_close(a: Path, b: Path) -> float:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=ATOL, rtol=RTOL, msg=k)
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


def test_the_attack_does_not_depend_on_how_the_batch_is_split() -> None:
    torch.manual_seed(0)
    model, tokenizer = load_clip("pmgaft-micro")
    target = ZeroShotClassifier.build(model, tokenizer, ["a", "b", "c"], ["a photo of a {}"])
    g = torch.Generator().manual_seed(1)
    x, y, positions = torch.rand(8, 3, 32, 32, generator=g), torch.randint(0, 3, (8,), generator=g), torch.arange(8)
    method, settings = build_method(resolve_config({"method": "tecoa"})), AttackSettings(4 / 255, 1 / 255, 3)
    whole = method.attack(target, None, x, y, settings, attack_seeds(0, 5, positions))
    halves = [method.attack(target, None, x[i:i + 4], y[i:i + 4], settings, attack_seeds(0, 5, positions[i:i + 4]))
              for i in (0, 4)]
    order = torch.randperm(8, generator=g)
    shuffled = method.attack(target, None, x[order], y[order], settings, attack_seeds(0, 5, positions[order]))
    assert torch.equal(whole, torch.cat(halves)) and torch.equal(whole[order], shuffled)
    assert not torch.equal(whole, method.attack(target, None, x, y, settings, attack_seeds(0, 6, positions)))


def test_two_ranks_equal_one_process_and_their_checkpoint_resumes_under_one(data_root: Path,
                                                                            tmp_path: Path) -> None:
    ddp, single, resumed = tmp_path / "ddp", tmp_path / "single", tmp_path / "resumed"
    run = _torchrun(micro_argv(data_root, ddp, *FLAGS, "--grad-accum", "2"))
    assert main(micro_argv(data_root, single, *FLAGS)) == 0  # meanwhile: one process, the whole batch at once
    output, _ = run.communicate(timeout=300)
    assert run.returncode == 0, output[-3000:]

    # (a) the same weights after 3 optimizer steps with gradient accumulation
    assert read_metadata(ddp / "last.safetensors")["step"] == "3"
    diff = _assert_close(ddp / "last.safetensors", single / "last.safetensors")
    moved = (weights(ddp / "checkpoints/step-000003/weights.safetensors")["visual.proj"]
             - weights(ddp / "checkpoints/step-000002/weights.safetensors")["visual.proj"]).abs().max().item()
    assert moved > 100 * ATOL, (moved, diff)  # the tolerance is far below one step's update
    print(f"max |w_ddp - w_single| = {diff:.2e}; one step moves visual.proj by {moved:.2e}")

    # rank 0 alone logged: every step once, one TensorBoard event file
    steps = [json.loads(line)["step"] for line in (ddp / "log.jsonl").read_text().splitlines()
             if json.loads(line)["split"] == "train"]
    assert steps == [1, 2, 3] and len(list((ddp / "tb").glob("events.*"))) == 1

    # (b) the checkpoint of step 2, written under 2 ranks, resumed in 1 process continues the same data order
    shutil.copytree(ddp, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-000003")
    assert main(["train", "--out-dir", str(resumed), "--resume", "--grad-accum", "1"]) == 0
    _assert_close(resumed / "last.safetensors", single / "last.safetensors")
    log = [json.loads(line) for line in (resumed / "log.jsonl").read_text().splitlines()]
    ref = [json.loads(line) for line in (single / "log.jsonl").read_text().splitlines()]
    total = {r["step"]: r["total"] for r in log if r["split"] == "train"}
    assert total[3] == pytest.approx({r["step"]: r["total"] for r in ref if r["split"] == "train"}[3], rel=1e-5)


def test_lean_memory_under_two_ranks_trains_the_same_weights(data_root: Path, tmp_path: Path) -> None:
    """``--memory lean`` (the default) recomputes the clean branch inside DDP's backward: still one all-reduce per
    step, the weights of ``--memory fast`` in one process."""
    lean, fast = tmp_path / "lean", tmp_path / "fast"
    run = _torchrun(micro_argv(data_root, lean, *FLAGS, "--grad-accum", "2", "--memory", "lean"))
    assert main(micro_argv(data_root, fast, *FLAGS, "--memory", "fast")) == 0
    output, _ = run.communicate(timeout=300)
    assert run.returncode == 0, output[-3000:]
    assert read_metadata(lean / "last.safetensors")["step"] == "3"
    _assert_close(lean / "last.safetensors", fast / "last.safetensors")


def test_a_single_process_needs_no_launcher_and_no_process_group(data_root: Path, tmp_path: Path,
                                                                 monkeypatch) -> None:
    import torch.distributed as dist

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    calls = []
    monkeypatch.setattr(dist, "init_process_group", lambda *args, **kwargs: calls.append(args))
    assert main(micro_argv(data_root, tmp_path / "run", "--max-steps", "1")) == 0
    assert calls == [] and not dist.is_initialized()


def test_under_torchrun_each_process_takes_the_gpu_of_its_local_rank(monkeypatch) -> None:
    """No GPU needed: the process group is faked; what matters is which device each rank picks."""
    import torch.distributed as dist

    from pmgaft.errors import PmgaftError
    from pmgaft.training.distributed import init_distributed

    picked, backends = [], []
    monkeypatch.setattr(torch.cuda, "set_device", picked.append)
    monkeypatch.setattr(dist, "rendezvous", lambda url, timeout: iter([(dist.HashStore(), 1, 2)]))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kwargs: backends.append(backend))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    d, device = init_distributed(torch.device("cuda"), 30.0)
    assert (d.rank, d.world, device, picked, backends) == (1, 2, torch.device("cuda", 1), [device], ["nccl"])
    with pytest.raises(PmgaftError, match="LOCAL_RANK"):
        init_distributed(torch.device("cuda", 3), 30.0)
    assert init_distributed(torch.device("cpu"), 30.0)[1] == torch.device("cpu") and backends[-1] == "gloo"


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts its workers in sessions of their own)."""
    try:
        children = [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
                    for c in (t / "children").read_text().split()]
    except OSError:
        return []
    return children + [d for c in children for d in _descendants(c)]


def _lines_until_exit(run: subprocess.Popen, deadline_s: float) -> list[tuple[float, str]]:
    """(time, line) of the launcher's merged output until rank 0 gives up (or ``deadline_s``); then the launcher
    and its workers are killed (torchrun would kill the hung rank only 30 s later)."""
    lines, start = [], time.monotonic()
    for line in run.stdout:
        lines.append((time.monotonic() - start, line.rstrip()))
        if "pmgaft train: error:" in line or time.monotonic() - start > deadline_s:
            break
    for pid in [*_descendants(run.pid), run.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    run.wait()
    return lines


@pytest.mark.parametrize("fault", ["kill", "hang"])
def test_a_dead_or_hung_rank_makes_the_other_exit_within_the_timeout_naming_it(data_root: Path, tmp_path: Path,
                                                                               fault: str) -> None:
    timeout = 5
    env = {ENV: "step@2" + (":hang" if fault == "hang" else ""), RANK_ENV: "1"}
    run = _torchrun(micro_argv(data_root, tmp_path / "run", *FLAGS, "--grad-accum", "2", "--epochs", "3",
                               "--dist-timeout", str(timeout)), env)
    lines = _lines_until_exit(run, deadline_s=240)
    text = "\n".join(line for _, line in lines)
    began = next(t for t, line in lines if line.startswith("pmgaft fault:"))
    ended = next((t for t, line in lines if "pmgaft train: error: rank 0:" in line), None)
    assert ended is not None, text[-3000:]
    assert "a collective after step 1" in text or "a collective after step 2" in text, text[-3000:]
    assert "rank 1 did not reach it: it died or hangs" in text, text[-3000:]
    assert ended - began < timeout + 3 + 10, (began, ended)  # dist timeout + report grace + slack for this CPU
    # rank 1 stopped right after step 2's update, before the ranks agreed to save it: step 1 is the newest commit
    assert read_metadata(tmp_path / "run" / "last.safetensors")["step"] == "1"
