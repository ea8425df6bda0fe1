"""Read a weights file of any common layout -- never executing code from it.

Formats: safetensors; ``torch.save`` pickles read with ``torch.load(weights_only=True)`` (tensors, numbers,
strings, dicts and lists only); TorchScript archives (OpenAI's ``ViT-B-32.pt``) read by
:mod:`pmgaft.models.torchscript`. A pickle that needs more than ``weights_only`` allows (an ``argparse.Namespace``
saved next to the weights, or a planted payload) is refused unless the caller passes ``trust=True``
(``--trust-checkpoint``), and then a warning is issued *before* the file is unpickled.

Layouts (:func:`read_weights` unwraps them into one flat ``{name: tensor}`` dict):

* a plain state_dict, or one wrapped under ``state_dict`` / ``model`` / ``model_state_dict`` / ``module``;
* the TeCoA lineage's training checkpoints (TeCoA, PMG-AFT, TGA-ZSR, Comp-TGA all save ``{"epoch",
  "state_dict": <visual prompter, usually empty>, "add_prompter", "vision_encoder_state_dict": <OpenAI CLIP
  image tower>, "best_acc1", "optimizer"}``): the image tower is read, the rest is ignored with a note;
* keys prefixed by ``module.`` (DataParallel/DDP) or ``_orig_mod.`` (torch.compile); OpenAI's extra entries
  ``input_resolution`` / ``context_length`` / ``vocab_size`` (dropped; they mark OpenAI weights);
* image-tower-only dicts (FARE's releases): recognised against the model by :mod:`pmgaft.models.loading`.
"""
from __future__ import annotations

import os
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pmgaft.errors import PmgaftError
from pmgaft.models.checkpoint import read_metadata
from pmgaft.models.torchscript import is_torchscript_archive, read_torchscript_weights

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
TRUST_HINT = "--trust-checkpoint (library: trust_checkpoint=True)"
RELEASED_KEY = "vision_encoder_state_dict"
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
_PREFIXES = ("module.", "_orig_mod.")
_OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


@dataclass
class WeightsFile:
    """The tensors of one file, and what its layout says about them."""

    path: Path
    tensors: dict[str, torch.Tensor]
    layout: str  # safetensors | torchscript | released | state_dict | <wrapper key>
    openai: bool = False  # known to be OpenAI CLIP weights (or fine-tuned from them by the TeCoA lineage)
    image_tower_only: bool = False  # the layout says so (released checkpoints); loading also checks the keys
    metadata: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _numpy_scalars() -> list[Any]:
    """numpy scalar reconstruction (e.g. a ``best_acc1`` saved as ``np.float64``): data only, no code."""
    import numpy as np

    dtypes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType") and n != "ObjectDType"]
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core
    return [core.multiarray.scalar, np.dtype, *dtypes]


def _load_pickle(path: Path, trust: bool) -> Any:
    try:
        with torch.serialization.safe_globals(_numpy_scalars()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"unsupported (?:global: )?GLOBAL ([\w.]+)", str(err), re.IGNORECASE)
        if not trust:
            if found is None:  # not a pickle weights_only understands (random bytes, an exotic protocol)
                raise PmgaftError(f"cannot read checkpoint {path}: not a safetensors, TorchScript or torch.save "
                                  f"file ({_detail(err)}). If it is a pickle you trust, pass {TRUST_HINT}.") from None
            raise PmgaftError(
                f"refusing to load {path}: it pickles {found[1]}, not only tensors and numbers, and unpickling it "
                f"can execute code. Re-save the weights as safetensors, or, only if you trust where the file "
                f"comes from, pass {TRUST_HINT}.") from None
    except Exception as err:  # not a torch file at all, truncated zip, ...
        raise PmgaftError(f"cannot read checkpoint {path}: {type(err).__name__}: {_detail(err)}") from None
    warnings.warn(f"loading {path} with weights_only=False because {TRUST_HINT} was given: unpickling runs any "
                  f"code the file contains.", stacklevel=3)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise PmgaftError(f"cannot read checkpoint {path}: {type(err).__name__}: {_detail(err)}") from None


def _detail(err: BaseException) -> str:
    text = str(err)
    found = re.search(r"(Unsupported operand \d+|unsupported (?:global: )?GLOBAL [\w.]+)", text, re.IGNORECASE)
    return found[1] if found else " ".join(text.split())[:200]


def _pickle_globals(data: bytes) -> set[str]:
    """The ``module.name`` globals a pickle refers to, read from its opcodes (nothing is executed)."""
    import pickletools

    found, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            found.add(str(arg).replace(" ", "."))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.add(f"{strings[-2]}.{strings[-1]}")
        if isinstance(arg, str):
            strings.append(arg)
    return found


def probe_weights(path: str | os.PathLike, *, trust: bool = False) -> None:
    """Check, without reading the tensors, that ``path`` is a weights file pmgaft can open safely.

    Reads only the safetensors header, or the pickle opcodes of a ``torch.save`` zip (its globals must be ones
    ``torch.load(weights_only=True)`` allows): a bad or unsafe file is refused before any model or data loads.
    """
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise PmgaftError(f"checkpoint file {str(path)!r} does not exist.")
    if path.suffix == ".safetensors":
        read_metadata(path)
        return
    if is_torchscript_archive(path):
        return
    try:
        with zipfile.ZipFile(path) as z:
            data = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    except (zipfile.BadZipFile, StopIteration, OSError):
        return  # legacy (non-zip) torch.save files: read_weights decides
    from torch._weights_only_unpickler import _get_allowed_globals

    try:
        unsafe = sorted(g for g in _pickle_globals(data) if g not in _get_allowed_globals()
                        and not g.startswith(("numpy.", "torch._utils.", "torch.")))
    except Exception as err:  # a broken pickle stream
        raise PmgaftError(f"cannot read checkpoint {path}: {type(err).__name__}: {_detail(err)}") from None
    if unsafe and not trust:
        raise PmgaftError(
            f"refusing to load {path}: it pickles {', '.join(unsafe[:3])}, not only tensors and numbers, and "
            f"unpickling it can execute code. Re-save the weights as safetensors, or, only if you trust where the "
            f"file comes from, pass {TRUST_HINT}.")


def read_weights(path: str | os.PathLike, *, trust: bool = False) -> WeightsFile:
    """Read ``path`` safely and unwrap its layout (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise PmgaftError(f"checkpoint file {str(path)!r} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        metadata = read_metadata(path)
        try:
            tensors = load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises its own SafetensorError
            raise PmgaftError(f"{path} is not a readable safetensors file: {err}") from None
        return _finish(WeightsFile(path, tensors, "safetensors", metadata=metadata))
    if is_torchscript_archive(path):
        return _finish(WeightsFile(path, read_torchscript_weights(path), "torchscript", openai=True))
    return _finish(_unwrap(_load_pickle(path, trust), path))


def _tensors(obj: dict, path: Path, where: str) -> dict[str, torch.Tensor]:
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise PmgaftError(f"{path} holds no weights{where}: top-level keys are {sorted(map(str, obj))[:10]}; "
                          f"expected a state_dict, a dict with one of {list(_WRAPPER_KEYS)}, or a TeCoA-style "
                          f"checkpoint with {RELEASED_KEY!r}.")
    return tensors


def _unwrap(obj: Any, path: Path) -> WeightsFile:
    if isinstance(obj, dict) and isinstance(obj.get(RELEASED_KEY), dict):
        prompter = obj.get("state_dict")
        n_prompt = len(prompter) if isinstance(prompter, dict) else 0
        notes = [f"{path.name}: TeCoA-lineage checkpoint (epoch {obj.get('epoch', '?')}); the image tower is read "
                 f"from {RELEASED_KEY!r}; ignored: " + ", ".join(sorted(str(k) for k in obj if k != RELEASED_KEY))]
        if n_prompt:
            notes.append(f"{path.name}: its visual prompter ('state_dict', {n_prompt} tensors; add_prompter="
                         f"{obj.get('add_prompter')!r}) is NOT applied: pmgaft evaluates the image encoder alone.")
        return WeightsFile(path, _tensors(obj[RELEASED_KEY], path, f" under {RELEASED_KEY!r}"), "released",
                           openai=True, image_tower_only=True, notes=notes)
    layout = "state_dict"
    while isinstance(obj, dict):
        key = next((k for k in _WRAPPER_KEYS if isinstance(obj.get(k), (dict, nn.Module)) and obj[k]), None)
        if key is None:
            break
        obj, layout = obj[key], key
    if isinstance(obj, nn.Module):  # only reachable with trust=True
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise PmgaftError(f"{path} holds a {type(obj).__name__}, not a state_dict.")
    return WeightsFile(path, _tensors(obj, path, ""), layout)


def _finish(w: WeightsFile) -> WeightsFile:
    """Strip DataParallel / torch.compile prefixes and OpenAI's extra entries."""
    sd = w.tensors
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    if any(k in sd for k in _OPENAI_EXTRA_KEYS):
        w.openai = True
        sd = {k: v for k, v in sd.items() if k not in _OPENAI_EXTRA_KEYS}
    w.tensors = sd
    return w
