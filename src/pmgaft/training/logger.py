"""Where training numbers go: a JSONL log, TensorBoard scalars, and a tqdm progress bar (rank 0 only).

A run that starts at step ``initial`` (a resume) first drops what a killed run logged after that step, from the
JSONL log and from TensorBoard (``purge_step``), so the steps it replays are not logged twice.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pmgaft.utils import atomic_write_text


def drop_after(path: Path, step: int) -> None:
    """Rewrite the JSONL log at ``path`` without the records of steps after ``step``."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    kept = [line for line in lines if line.strip() and _step(line) <= step]
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(line + "\n" for line in kept))


def _step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, TypeError, AttributeError):
        return 1 << 62  # a torn last line from a kill: dropped


class RunLogger:
    """``log(step, values)`` appends one JSON line and writes each number as a TensorBoard scalar."""

    def __init__(self, out_dir: Path, *, total: int, initial: int, enabled: bool, progress: bool) -> None:
        self.enabled = enabled
        self.path = out_dir / "log.jsonl"
        self.writer = None
        self.bar = None
        if not enabled:
            return
        drop_after(self.path, initial)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / "tb"), purge_step=initial)
        except ImportError:  # tensorboard is optional: the JSONL log has everything
            self.writer = None
        self.bar = tqdm(total=total, initial=initial, disable=not progress, dynamic_ncols=True, file=sys.stderr,
                        desc="train")

    def log(self, step: int, values: dict[str, Any], prefix: str = "train") -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, "split": prefix, **values}) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def progress(self, values: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
