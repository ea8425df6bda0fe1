"""Where training numbers go: a JSONL log, TensorBoard scalars, and a tqdm progress bar (rank 0 only)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm


class RunLogger:
    """``log(step, values)`` appends one JSON line and writes each number as a TensorBoard scalar."""

    def __init__(self, out_dir: Path, *, total: int, initial: int, enabled: bool, progress: bool) -> None:
        self.enabled = enabled
        self.path = out_dir / "log.jsonl"
        self.writer = None
        self.bar = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / "tb"), purge_step=initial or None)
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

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
