"""``torchrun ... pmgaft eval``: samples sharded across 2 CPU processes (gloo, loopback) give exactly the files
one process writes; a rank that dies makes the job fail fast instead of hanging."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eval_fixtures import cards, without_run

GRID = ["--datasets", "digits", "--attacks", "none", "pgd", "cw", "--eps", "8", "--steps", "5", "--step-size", "2",
        "--n-samples", "37", "--batch-size", "8", "--device", "cpu", "--no-progress"]


def _eval(out: Path, checkpoint: Path, *extra: str, nproc: int = 1, timeout: float = 300,
          env: dict | None = None) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                "--monitor-interval=0.5", "-m", "pmgaft"] if nproc > 1 else [sys.executable, "-m", "pmgaft"]
    argv = [*launcher, "eval", "--model", "pmgaft-micro", "--checkpoint", f"clip={checkpoint}", *GRID,
            "--out", str(out), *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def _numbers(out: Path) -> tuple[dict, dict]:
    """Every card without its run record, and every per-sample file, parsed."""
    samples = {str(p.relative_to(out)): json.loads(p.read_text()) for p in sorted(out.rglob("*.samples.json"))}
    return {k: without_run(c) for k, c in cards(out).items()}, samples


@pytest.mark.slow
@pytest.mark.parametrize("scoring", ["worst", "final"])
def test_two_ranks_write_what_one_process_writes(tmp_path, digits_clip, scoring):
    one = _eval(tmp_path / "one", digits_clip, "--scoring", scoring)
    two = _eval(tmp_path / "two", digits_clip, "--scoring", scoring, nproc=2)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    cards_one, samples_one = _numbers(tmp_path / "one")
    cards_two, samples_two = _numbers(tmp_path / "two")
    assert len(cards_one) == 3 and cards_two == cards_one and samples_two == samples_one
    pgd = cards_one["clip/digits/pgd5_eps8.json"]
    assert pgd["n"] == 37 and pgd["robust_correct"] < pgd["clean_correct"]  # the attack really moved predictions
    assert json.loads(next((tmp_path / "two").rglob("pgd5_eps8.json")).read_text())["run"]["world_size"] == 2


@pytest.mark.slow
def test_resume_after_a_change_of_world_size(tmp_path, digits_clip):
    out = tmp_path / "out"
    first = _eval(out, digits_clip, "--attacks", "none", "pgd", nproc=2)
    assert first.returncode == 0, first.stderr[-2000:]
    before = {p: (out / p).stat().st_mtime_ns for p in cards(out)}
    again = _eval(out, digits_clip, "--skip-existing")  # one process now, cw added
    assert again.returncode == 0, again.stderr[-2000:]
    assert {p: (out / p).stat().st_mtime_ns for p in before} == before  # finished cells kept
    assert _eval(tmp_path / "ref", digits_clip).returncode == 0

    def results(folder: Path) -> dict:  # the grid's attack list (part of the recorded config) differs by design
        return {k: {f: v for f, v in c.items() if f != "config"} for k, c in _numbers(folder)[0].items()}
    assert results(out) == results(tmp_path / "ref") and _numbers(out)[1] == _numbers(tmp_path / "ref")[1]


def _rank_pid(marker: str, rank: int, deadline: float) -> int:
    """The pid of the worker process with ``RANK=rank`` whose environment carries ``marker``."""
    while time.time() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"PMGAFT_TEST_MARKER={marker}".encode() in environ and f"RANK={rank}".encode() in environ:
                return int(entry.name)
        time.sleep(0.2)
    raise AssertionError("worker process not found")


@pytest.mark.slow
def test_a_killed_rank_fails_the_job_within_the_timeout(tmp_path, digits_clip):
    marker = str(tmp_path)
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "--monitor-interval=0.5", "-m", "pmgaft", "eval", "--model", "pmgaft-micro",
            "--checkpoint", f"clip={digits_clip}", *GRID, "--steps", "2000", "--no-early-exit",
            "--dist-timeout", "30", "--out", str(tmp_path / "out")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PMGAFT_TEST_MARKER": marker})
    pid = _rank_pid(marker, 1, time.time() + 60)
    deadline = time.time() + 120  # kill rank 1 once the clean cell is written: the PGD-2000 cell is under way
    while not list((tmp_path / "out").rglob("none_eps0.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    killed = time.time()
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0 and time.time() - killed < 60
    assert "rank" in err.lower() and ("1" in err)  # torchrun's report names the failed rank
    assert list((tmp_path / "out").rglob("none_eps0.json"))  # the kill came after the clean cell
    assert not [p for p in (tmp_path / "out").rglob("pgd2000_eps8.json")]  # no half-finished cell was written
