"""``pmgaft eval`` survives kill -9 anywhere: a card appears only complete, finished cells are never recomputed,
and resuming until done gives exactly the cards of an uninterrupted run."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eval_fixtures import cards, without_run

ARGV = ["eval", "--model", "pmgaft-micro", "--datasets", "digits", "mnist", "--attacks", "none", "pgd", "cw",
        "--eps", "4", "8", "--steps", "6", "--step-size", "2", "--n-samples", "40", "--batch-size", "16",
        "--device", "cpu", "--no-progress", "--skip-existing"]


def _start(out: Path, checkpoint: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pmgaft", *ARGV, "--checkpoint", f"clip={checkpoint}",
                             "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _check_consistent(out: Path) -> dict[str, int]:
    """Every card on disk is complete JSON with its per-sample file; returns {card: mtime}."""
    found = {}
    for path in out.rglob("*.json"):
        if path.name.endswith(".samples.json") or path.name == "clean.json":
            continue
        card = json.loads(path.read_text())  # never half-written
        samples = json.loads(path.with_name(card["samples"]).read_text())
        assert len(samples["robust_correct"]) == card["n"] and sum(samples["robust_correct"]) == card["robust_correct"]
        found[str(path.relative_to(out))] = path.stat().st_mtime_ns
    return found


@pytest.mark.slow
def test_kill_9_at_random_points_loses_nothing(tmp_path, digits_clip):
    reference = tmp_path / "reference"
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "pmgaft", *ARGV, "--checkpoint", f"clip={digits_clip}", "--out",
                           str(reference)], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    duration = time.time() - started  # kill points are spread over one uninterrupted run's duration
    out, rng, kills, seen = tmp_path / "out", random.Random(0), 0, {}
    for attempt in range(8):  # kill -9 at random points, then let the last run finish
        proc = _start(out, digits_clip)
        if attempt < 7:
            time.sleep(rng.uniform(0.1, 0.45) * duration)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        proc.wait(timeout=900)
        now = _check_consistent(out)
        assert all(now[p] == m for p, m in seen.items()), "a finished cell was recomputed"
        seen = now
        if proc.returncode == 0:
            break
    assert kills >= 3 and proc.returncode == 0, proc.stderr.read()[-2000:]
    assert {p: without_run(c) for p, c in cards(out).items()} == \
        {p: without_run(c) for p, c in cards(reference).items()}
