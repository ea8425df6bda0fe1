"""Checks that need no model and no data, run before either is loaded: bad input fails in a second, not after
minutes of loading (one paragraph, exit 2).

* the run directory can be written (rank 0, the only writer), and a new run does not overwrite an old one;
* the training set is registered (or an existing ``folder:PATH``), has a train split, and its files are there;
* the architecture is known (a hub model: its files are in the cache or fetched, a ``.bin`` safe to read), and
  ``pretrained`` / ``text_pretrained`` are open_clip tags of it or readable weights files (the header is read,
  not the tensors).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import open_clip

from pmgaft.data import DATASETS
from pmgaft.data.folder import PREFIX as FOLDER_PREFIX
from pmgaft.errors import PmgaftError
from pmgaft.models import hub_name, list_models, read_metadata, resolve_hub
from pmgaft.models.files import probe_weights
from pmgaft.models.loading import _looks_like_path  # the loader's own rule for "a file, not a tag"
from pmgaft.training.checkpoint import holds_run
from pmgaft.training.config import TrainConfig
from pmgaft.utils import did_you_mean, lookup

_MAGIC = (b"PK\x03\x04", b"\x80")  # a zip archive (torch.save, TorchScript) or a pickle


def check_run_dir(config: TrainConfig) -> None:
    """The run directory is writable; a new run (no ``--resume``) does not land on a run that has checkpoints."""
    out = config.resolved_out_dir()
    created = [p for p in (out, *out.parents) if not p.exists()]  # deepest first; removed again below
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".pmgaft-write-test-{os.getpid()}.tmp"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise PmgaftError(f"cannot write the run directory {out}: {err.strerror or err}; choose a writable "
                          f"--out-dir.") from None
    finally:
        for path in created:  # a run that fails on its data leaves no empty folder behind
            with contextlib.suppress(OSError):
                path.rmdir()
    if not config.resume and holds_run(out):
        raise PmgaftError(f"{out} already holds a training run; pass --resume to continue it or choose another "
                          f"--out-dir.")


def check_dataset(config: TrainConfig) -> None:
    """The training set exists under the data root, with a train split."""
    if config.dataset.startswith(FOLDER_PREFIX):
        path = Path(config.dataset[len(FOLDER_PREFIX):]).expanduser()
        if not path.is_dir():
            raise PmgaftError(f"training folder {str(path)!r} does not exist or is not a folder (folder:PATH takes "
                              f"PATH/<class>/<image>, optionally under PATH/train/).")
        return
    spec = lookup(DATASETS, config.dataset, "dataset")
    if "train" not in spec.splits:
        raise PmgaftError(f"dataset {config.dataset!r} has no train split (splits: {', '.join(spec.splits)}); "
                          f"choose a training set such as tinyimagenet, or folder:PATH.")
    if spec.locate(config.data_root, "train") is None:
        raise spec.not_found(config.data_root, "train")


def check_weights(config: TrainConfig) -> None:
    """``model`` is known (a hub model: its files are cached or fetched now); ``pretrained`` and
    ``text_pretrained`` are its tags or readable weights files."""
    hub = hub_name(config.model)
    models = list_models()
    if hub is not None:
        probe = resolve_hub(hub, weights=config.pretrained is None).weights
        if probe is not None:
            probe_weights(probe, trust=config.trust_checkpoint)
    elif config.model not in models:
        raise PmgaftError(f"unknown model {config.model!r}.{did_you_mean(config.model, models)}")
    for key in ("pretrained", "text_pretrained"):
        value = getattr(config, key)
        if value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if _looks_like_path(value):
            _check_file(Path(value).expanduser(), flag)
            continue
        if hub is not None:
            raise PmgaftError(f"--model {config.model} carries its own weights: drop {flag} {value} (or give a "
                              f"weights file of its architecture).")
        tags = open_clip.list_pretrained_tags_by_model(config.model)
        if value not in tags:
            raise PmgaftError(f"{flag} {value!r} is neither a file nor an open_clip tag of {config.model!r} "
                              f"(tags: {', '.join(tags) or 'none'}; 'none' = random init).")


def _check_file(path: Path, flag: str) -> None:
    if not path.is_file():
        raise PmgaftError(f"{flag} file {str(path)!r} does not exist (it takes an open_clip tag such as 'openai' "
                          f"or a .pt/.pth/.bin/.safetensors file).")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as err:
        raise PmgaftError(f"{flag} file {path} cannot be read: {err.strerror or err}.") from None
    if path.suffix == ".safetensors":
        read_metadata(path)  # parses the header: a truncated or foreign file is a PmgaftError
    elif not head.startswith(_MAGIC):
        raise PmgaftError(f"{flag} file {path} is not a weights file (neither safetensors, nor a torch.save / "
                          f"TorchScript archive, nor a pickle).")


def preflight(config: TrainConfig, rank: int) -> None:
    """Every check above; the run directory only on rank 0, which alone writes it."""
    if rank == 0:
        check_run_dir(config)
    check_dataset(config)
    check_weights(config)
