"""Graceful stop: SIGTERM / SIGINT checkpoint at the next step boundary and exit 75; a second signal stops at once."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from pmgaft.cli import main
from pmgaft.training import loop, read_metadata, signals
from pmgaft.training.cli import EXIT_STOPPED

sys.path.insert(0, str(Path(__file__).parent))
from training_fixtures import micro_argv, same_weights, tiny_imagenet  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tiny_imagenet(tmp_path_factory.mktemp("signal-data"))


def _signal_during(monkeypatch, step: int, *sent: signal.Signals) -> None:
    """Send ``sent`` to this process in the middle of optimizer step ``step`` (as a user or SLURM would)."""
    real = loop.train_step

    def step_with_signal(ctx, current, micro):
        for s in sent if current == step else ():
            os.kill(os.getpid(), s)
        return real(ctx, current, micro)

    monkeypatch.setattr(loop, "train_step", step_with_signal)


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_resumes_exactly(data_root: Path, tmp_path: Path,
                                                                             monkeypatch, capfd, sent) -> None:
    reference = tmp_path / "reference"
    assert main(micro_argv(data_root, reference, "--epochs", "2")) == 0
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    _signal_during(monkeypatch, 3, sent)
    out = tmp_path / "run"
    assert main(micro_argv(data_root, out, "--epochs", "2", "--save-every", "100")) == EXIT_STOPPED == 75
    err = capfd.readouterr().err  # the handler writes to fd 2 (print is not safe in a signal handler)
    assert f"{sent.name} received: stopping after this step" in err
    assert f"stopped by {sent.name} after step 3" in err and f"pmgaft train --out-dir {out} --resume" in err
    assert read_metadata(out / "last.safetensors")["step"] == "3"  # the steps since the last save are kept
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before  # handlers restored
    monkeypatch.undo()
    assert main(["train", "--out-dir", str(out), "--resume"]) == 0  # the printed command, nothing else
    assert same_weights(reference / "last.safetensors", out / "last.safetensors")


def test_a_second_signal_stops_at_once(data_root: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(signals, "DUPLICATE_S", 0.0)
    _signal_during(monkeypatch, 3, signal.SIGTERM, signal.SIGTERM)
    out = tmp_path / "run"
    assert main(micro_argv(data_root, out, "--epochs", "2", "--save-every", "2")) == 143
    err = capsys.readouterr().err
    assert "stopped at once by a second SIGTERM" in err and "(step 2) are lost" in err and "--resume" in err
    assert read_metadata(out / "last.safetensors")["step"] == "2"


def test_a_signal_repeated_at_once_counts_once(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C under torchrun reaches a worker twice (from the terminal and forwarded by torchrun)."""
    _signal_during(monkeypatch, 2, signal.SIGINT, signal.SIGINT)
    out = tmp_path / "run"
    assert main(micro_argv(data_root, out, "--epochs", "2")) == EXIT_STOPPED
    assert read_metadata(out / "last.safetensors")["step"] == "2"


def test_exit_statuses_are_in_the_help(capsys) -> None:
    try:
        status = main(["train", "--help"])
    except SystemExit as exit_info:  # argparse's own exit (or a status, where the CLI catches it)
        status = exit_info.code
    assert status == 0
    out = capsys.readouterr().out
    assert "75 stopped by SIGTERM/SIGINT" in out and "EX_TEMPFAIL" in out and "checkpoints/step-NNNNNN/" in out
