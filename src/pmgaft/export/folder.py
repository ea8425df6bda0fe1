"""Write a run or checkpoint as open_clip's hub folder -- what ``open_clip.create_model_from_pretrained`` loads
from ``hf-hub:ORG/NAME`` or ``local-dir:FOLDER``, with no pmgaft and no ``transformers`` needed:

* ``open_clip_config.json``: ``model_cfg``, the architecture's complete open_clip config (pmgaft's tiny configs
  too), with ``quick_gelu`` as the weights were trained (true for OpenAI-lineage weights); ``preprocess_cfg``,
  the input mean/std the model was trained with (open_clip's default bicubic resize of the shortest side);
* ``open_clip_model.safetensors``: the full CLIP state_dict. A pmgaft checkpoint is copied byte for byte (its
  metadata -- normalization, logit scale, provenance -- comes along); any other layout is re-saved from the
  loaded model (an image-tower-only file with the text tower of its base weights);
* ``README.md``: the model card (:mod:`pmgaft.export.card`); ``robustness.json``
  (:mod:`pmgaft.export.robustness`).

Atomic: the folder is written under a temporary name next to ``out`` and renamed into place, so ``out`` holds a
complete export or is untouched.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from open_clip.constants import HF_CONFIG_NAME, HF_SAFE_WEIGHTS_NAME

from pmgaft.errors import PmgaftError
from pmgaft.export.card import model_card
from pmgaft.export.facts import ModelFacts, Source, find_source, model_facts
from pmgaft.export.robustness import measured, robustness_doc
from pmgaft.models import (LoadedClip, checkpoint_record, hub_name, load_clip, model_config, read_metadata,
                           resolve_hub, save_weights)
from pmgaft.utils import atomic_write_json

README, ROBUSTNESS = "README.md", "robustness.json"
FILES = (HF_CONFIG_NAME, HF_SAFE_WEIGHTS_NAME, README, ROBUSTNESS)
DEFAULT_PREPROCESS = {"interpolation": "bicubic", "resize_mode": "shortest"}  # open_clip's defaults, made explicit


@dataclass(frozen=True)
class Export:
    """What was written: the folder, the facts the card states, and how many result cards it reports."""

    folder: Path
    facts: ModelFacts
    n_results: int

    def files(self) -> list[tuple[str, int]]:
        """(name, size in bytes) of every file, in upload order."""
        return [(p.name, p.stat().st_size) for p in sorted(self.folder.iterdir())]


def check_out(out: Path, force: bool) -> None:
    """``out`` may be written: absent, an empty folder, or (``force``) a folder to replace."""
    if out.exists() and not out.is_dir():
        raise PmgaftError(f"--out {out} is a file: export writes a folder.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise PmgaftError(f"--out {out} exists and is not empty: choose another folder, or pass --force to replace "
                          f"it.")


def hub_config(loaded: LoadedClip, facts: ModelFacts) -> dict:
    """``open_clip_config.json``: the complete model_cfg (with quick_gelu) and the input preprocessing."""
    model_cfg = model_config(loaded.name)
    if model_cfg is None:
        raise PmgaftError(f"open_clip has no config for {loaded.name!r}: cannot describe the architecture.")
    model_cfg["quick_gelu"] = bool(loaded.quick_gelu)
    base = resolve_hub(loaded.name, weights=False).preprocess_cfg if hub_name(loaded.name) else {}
    preprocess = {**DEFAULT_PREPROCESS, **base, "mean": list(facts.mean), "std": list(facts.std)}
    return {"model_cfg": model_cfg, "preprocess_cfg": preprocess}


def _write_weights(loaded: LoadedClip, source: Source, path: Path) -> None:
    """Copy a pmgaft checkpoint that already is the full state_dict; re-save anything else from the model."""
    meta = read_metadata(source.weights) if source.weights.suffix == ".safetensors" else {}
    if loaded.layout == "safetensors" and _keys(source.weights) == set(loaded.model.state_dict()):
        shutil.copyfile(source.weights, path)
        return
    keep = {k: v for k, v in meta.items() if k.startswith("pmgaft_") or k in ("format", "step", "epoch")}
    save_weights(path, loaded.model, keep or {"format": "pt"})


def _keys(path: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return set(f.keys())


def export_folder(checkpoint: str | Path, out: str | Path, *, model: str | None = None,
                  text_pretrained: str | None = None, quick_gelu: bool | None = None,
                  results: str | Path | None = "results", name: str | None = None, hub_id: str | None = None,
                  license: str = "mit", force: bool = False, trust_checkpoint: bool = False) -> Export:
    """Write ``checkpoint`` (a run directory or a weights file) as a hub folder at ``out``.

    ``model``: the architecture of a file that does not record it; ``text_pretrained``: the base weights of an
    image-tower-only file; ``quick_gelu``: the activation of a file that cannot tell (None: decided from the
    weights, as :func:`pmgaft.models.load_clip` does); ``results``: the results directory whose cards of these
    weights the card reports; ``name`` / ``hub_id``: the model's name in the card and its repo (``ORG/NAME``) in
    the usage snippet.
    """
    out = Path(out).expanduser()
    check_out(out, force)  # before any work
    source = find_source(checkpoint)
    arch = checkpoint_record(source.weights).arch or model
    loaded = load_clip(arch, source.weights, text_pretrained=text_pretrained, quick_gelu=quick_gelu,
                       trust_checkpoint=trust_checkpoint)
    facts = model_facts(loaded, source, name or (hub_id.split("/")[-1] if hub_id else out.name))
    results = Path(results).expanduser() if results is not None else None
    rows = measured(results, weights_hash=facts.weights_hash, sha256=facts.source_sha256,
                    quick_gelu=facts.quick_gelu) if results else []
    doc = robustness_doc(rows, name=facts.name, architecture=facts.architecture, weights_hash=facts.weights_hash)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        atomic_write_json(tmp / HF_CONFIG_NAME, hub_config(loaded, facts))
        _write_weights(loaded, source, tmp / HF_SAFE_WEIGHTS_NAME)
        (tmp / README).write_text(model_card(facts, rows, doc, hub_id=hub_id, license=license, results=results))
        (tmp / ROBUSTNESS).write_text(json.dumps(doc, indent=2) + "\n")
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; give it what mkdir would
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Export(out, facts, len(rows))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` onto ``out``; an existing ``out`` (empty, or replaced with --force) is removed after."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.replace(out, old / out.name)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old / out.name, out)  # put the previous export back
        raise
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(old)
