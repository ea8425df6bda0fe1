"""``--resume``: the run's own ``config.yaml`` is the config; flags given with it must agree or be run control.

``pmgaft train --out-dir RUN --resume`` needs nothing else. Values given with it (flags, ``--config FILE``) are
layered over ``RUN/config.yaml``; when the run has a checkpoint, :func:`reconcile` then compares the result-
determining keys with the ones that checkpoint was trained with: a difference is an error naming every key,
unless ``--allow-change KEY,...`` lists it (then it is logged). Run-control keys (device, workers, max_steps,
logging, micro-batching, ...) may change freely and are logged as overrides.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from pmgaft.errors import PmgaftError
from pmgaft.training.config import RUN_CONTROL, TrainConfig, read_config_file, resolve_config, validate

CONFIG_FILE = "config.yaml"  # the name pmgaft.training.checkpoint.CONFIG gives it


def absolute_paths(config: TrainConfig) -> TrainConfig:
    """``config`` with its data root and weights files as absolute paths (tags such as 'openai' unchanged), so
    that a run resumes from any working directory and compares equal however the path was spelled."""
    def absolute(value: str | None, must_exist: bool) -> str | None:
        if value is None or (must_exist and not Path(value).expanduser().is_file()):
            return value
        return str(Path(value).expanduser().absolute())

    return dataclasses.replace(config, data_root=absolute(config.data_root, False),
                               pretrained=absolute(config.pretrained, True),
                               text_pretrained=absolute(config.text_pretrained, True))


def resume_config(given: Mapping[str, Any], config_file: str | Path | None = None) -> TrainConfig:
    """The config of ``--resume``: ``RUN/config.yaml`` < ``config_file`` < ``given`` (the flags).

    Without a ``config.yaml`` in the run directory the settings resolve as for a new run (the run starts at
    step 0 and says so).
    """
    layered = {**(read_config_file(config_file) if config_file is not None else {}), **given, "resume": True}
    out = Path(layered.get("out_dir") or resolve_config(layered).resolved_out_dir())
    if not (out / CONFIG_FILE).is_file():
        return resolve_config(layered)
    saved = read_config_file(out / CONFIG_FILE)
    config = TrainConfig(**{**saved, **layered, "out_dir": str(out)})
    validate(config)
    return config


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b


def reconcile(config: TrainConfig, trained: Mapping[str, Any], where: str) -> dict[str, list[Any]]:
    """Compare ``config`` with the settings ``trained`` of the checkpoint being resumed (``where``).

    Returns ``{key: [before, now]}`` of every difference (to log); raises when a result key differs and is not
    listed in ``config.allow_change``.
    """
    now = config.to_dict()
    changed = {k: [trained.get(k), now[k]] for k in now if k in trained and not _same(trained.get(k), now[k])
               and k not in ("out_dir", "resume", "allow_change")}
    refused = sorted(k for k in changed if k not in RUN_CONTROL and k not in config.allowed_changes())
    if refused:
        details = ", ".join(f"{k}: {changed[k][0]!r} -> {changed[k][1]!r}" for k in refused)
        raise PmgaftError(f"cannot resume {config.resolved_out_dir()} with a different config ({details}): "
                          f"{where} was trained with the first values. Resume with the saved settings (drop those "
                          f"flags), start a new --out-dir, or accept the change explicitly with "
                          f"--allow-change {','.join(refused)} (it is logged).")
    return changed
