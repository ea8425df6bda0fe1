"""Load CLIP models through open_clip: hub tags, local checkpoint files of every common layout, or random init.

Checkpoint layouts understood by :func:`load_clip` (``pretrained=PATH``):

* a plain state_dict in open_clip / OpenAI-CLIP key names (open_clip keeps OpenAI's names), ``.safetensors``,
  ``.pt``, ``.pth`` or ``.bin``;
* a dict wrapping it under ``state_dict`` / ``model`` / ``model_state_dict`` -- this covers the released
  PMG-AFT / TeCoA code (``{"epoch", "state_dict", "best_acc1", "optimizer"}``);
* keys prefixed with ``module.`` (DataParallel / DDP) or ``_orig_mod.`` (torch.compile);
* OpenAI's TorchScript archives (``ViT-B-32.pt``) and their extra ``input_resolution`` / ``context_length`` /
  ``vocab_size`` entries;
* an image-tower-only state_dict (keys without the ``visual.`` prefix, as FARE and other robust-CLIP releases
  ship): the image tower is replaced, the text tower keeps the architecture's weights -- so pass the matching
  ``pretrained`` tag through ``text_pretrained`` in that case.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

import pmgaft  # noqa: F401  (applies the torchvision shim before open_clip is imported)
import open_clip
from open_clip.constants import IMAGENET_MEAN, IMAGENET_STD, OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from pmgaft.errors import PmgaftError
from pmgaft.utils import did_you_mean, resolve_device, state_dict_hash

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
_PREFIXES = ("module.", "_orig_mod.")
_OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "clip": (tuple(OPENAI_DATASET_MEAN), tuple(OPENAI_DATASET_STD)),
    "imagenet": (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)),  # what the released PMG-AFT code uses
}
_configs_registered = False


@dataclass
class LoadedClip:
    """An open_clip model with everything needed to use it: tokenizer, input size, provenance."""

    model: nn.Module
    tokenizer: Callable[..., torch.Tensor]
    name: str
    pretrained: str | None
    image_size: int
    weights_hash: str = field(repr=False)

    def __iter__(self):  # ``model, tokenizer = load_clip(...)`` works
        return iter((self.model, self.tokenizer))


def register_model_configs() -> None:
    """Add pmgaft's tiny configs (``pmgaft-tiny``, ``pmgaft-micro``) to open_clip's registry."""
    global _configs_registered
    if not _configs_registered:
        open_clip.add_model_config(resources.files("pmgaft") / "model_configs")
        _configs_registered = True


def list_models() -> list[str]:
    register_model_configs()
    return open_clip.list_models()


def load_clip(name: str, pretrained: str | os.PathLike | None = None, *, device: str | torch.device = "cpu",
              text_pretrained: str | None = None) -> LoadedClip:
    """Create open_clip model ``name`` and load ``pretrained`` (hub tag, local file, or None = random init).

    The model is returned in eval mode on ``device``; the caller decides what to train.
    """
    register_model_configs()
    if name not in open_clip.list_models():
        raise PmgaftError(f"unknown model {name!r}.{_close_models(name)}")
    device = resolve_device(device)
    path = _as_checkpoint_path(pretrained)
    if path is not None:
        model = _create(name, text_pretrained)
        if load_checkpoint_into(model, path, model_name=name) and text_pretrained is None:
            warnings.warn(f"checkpoint {path} holds only the image tower and no text_pretrained tag was given: "
                          f"the text tower of {name!r} is randomly initialised, so its zero-shot logits are "
                          f"meaningless. Pass the tag of the weights it was fine-tuned from (load_clip(..., "
                          f"text_pretrained='openai'); pmgaft eval: --pretrained openai).", stacklevel=2)
    else:
        model = _create(name, pretrained if pretrained is None else str(pretrained))
    model = model.to(device).eval()
    size = model.visual.image_size
    image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
    return LoadedClip(model=model, tokenizer=open_clip.get_tokenizer(name), name=name,
                      pretrained=None if pretrained is None else str(pretrained), image_size=image_size,
                      weights_hash=state_dict_hash(model.state_dict())[:16])


def _close_models(name: str) -> str:
    import difflib

    models = open_clip.list_models()
    close = difflib.get_close_matches(name, models, n=5, cutoff=0.4)
    ours = sorted(p.stem for p in (resources.files("pmgaft") / "model_configs").iterdir() if p.name.endswith(".json"))
    return (f" Close matches: {', '.join(close)}." if close else "") + \
        f" `python -c 'import open_clip; print(open_clip.list_models())'` lists all; pmgaft adds {', '.join(ours)}."


def _as_checkpoint_path(pretrained: str | os.PathLike | None) -> Path | None:
    if pretrained is None:
        return None
    p = Path(pretrained).expanduser()
    if p.is_file():
        return p
    looks_like_path = isinstance(pretrained, os.PathLike) or os.sep in str(pretrained) or \
        str(pretrained).endswith(CHECKPOINT_SUFFIXES)
    if looks_like_path:
        raise PmgaftError(f"checkpoint file {str(p)!r} does not exist (pretrained= takes an open_clip tag such as "
                          f"'openai' or a path to a .pt/.pth/.bin/.safetensors file).")
    return None


def _create(name: str, tag: str | None) -> nn.Module:
    if tag is not None:
        tags = open_clip.list_pretrained_tags_by_model(name)
        if tag not in tags:
            raise PmgaftError(f"model {name!r} has no pretrained weights tagged {tag!r}.{did_you_mean(tag, tags)}"
                              if tags else f"model {name!r} has no pretrained tags in open_clip; pass a local "
                              f"checkpoint file or pretrained=None.")
    try:
        if tag is None:
            with _quiet_random_init_warning():  # weights come from a file next, or None was asked for
                return open_clip.create_model(name, pretrained=None, device="cpu")
        if _hub_reachable():
            return open_clip.create_model(name, pretrained=tag, device="cpu")
        with _hub_offline():  # unreachable hub: use the local cache only, fail at once instead of retrying
            return open_clip.create_model(name, pretrained=tag, device="cpu")
    except (OSError, RuntimeError, ConnectionError, TimeoutError) as err:
        if tag is None:
            raise
        raise PmgaftError(
            f"could not fetch open_clip weights {name!r}/{tag!r}: the model hub is unreachable or the download "
            f"failed ({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}). On a machine "
            f"with internet run once `python -c \"import open_clip; open_clip.create_model('{name}', "
            f"pretrained='{tag}')\"` (it caches the file), or download the weights and pass their path: "
            f"--pretrained /path/to/weights.pt") from None


@contextlib.contextmanager
def _quiet_random_init_warning():
    """open_clip warns "No pretrained weights loaded ... initialized randomly" on the root logger."""
    import logging

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline():
    from huggingface_hub import constants

    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old


# --- reading checkpoint files -------------------------------------------------------------------------------

def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file of any supported layout into a flat ``{name: tensor}`` dict (keys unchanged)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises its own SafetensorError
            raise PmgaftError(f"{path} is not a readable safetensors file: {err}") from None
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as weights_only_error:
        try:  # OpenAI's released weights are TorchScript archives
            obj = torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception:
            try:  # checkpoints that pickled extra objects (argparse.Namespace, numpy scalars) next to weights
                obj = torch.load(path, map_location="cpu", weights_only=False)
                warnings.warn(f"{path} holds non-tensor Python objects; it was loaded with weights_only=False. "
                              f"Only do this with checkpoints you trust.", stacklevel=2)
            except Exception:
                raise PmgaftError(f"cannot read checkpoint {path}: {weights_only_error}") from None
    return _unwrap(obj, path)


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    # descend into {"state_dict": ...}-style wrappers (their siblings may be tensors too, e.g. best_acc1)
    while isinstance(obj, dict):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), (dict, nn.Module))), None)
        if inner is None:
            break
        obj = inner
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise PmgaftError(f"{path} holds a {type(obj).__name__}, not a state_dict.")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise PmgaftError(f"{path} holds no weights: top-level keys are {sorted(obj)[:10]}; expected a "
                          f"state_dict or a dict with one of {list(_WRAPPER_KEYS)}.")
    return tensors


def normalize_keys(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map any supported key layout onto ``model``'s open_clip key names."""
    return _normalize(state_dict, model)[0]


def _normalize(state_dict: dict[str, torch.Tensor], model: nn.Module) -> tuple[dict[str, torch.Tensor], bool]:
    """``normalize_keys``, and whether the checkpoint held only the image tower."""
    sd = dict(state_dict)
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    for key in _OPENAI_EXTRA_KEYS:
        sd.pop(key, None)
    model_keys = model.state_dict().keys()
    if not any(k.startswith("visual.") for k in sd) and any(f"visual.{k}" in model_keys for k in sd):
        # image-tower-only checkpoint: keep the model's own text tower
        full = {k: v for k, v in model.state_dict().items() if not k.startswith("visual.")}
        full.update({f"visual.{k}": v for k, v in sd.items()})
        return full, True
    return sd, False


def load_checkpoint_into(model: nn.Module, path: str | os.PathLike, *, model_name: str = "?") -> bool:
    """Load checkpoint ``path`` into ``model`` strictly, with a short message on architecture mismatch.

    Returns True when the file held only the image tower (``model`` then keeps its own text tower).
    """
    sd, image_tower_only = _normalize(read_state_dict(path), model)
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                  if k in sd and sd[k].shape != v.shape]
    if missing or unexpected or mismatched:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
        parts = [f"{len(missing)} missing keys: {show(missing)}" if missing else "",
                 f"{len(unexpected)} unexpected keys: {show(unexpected)}" if unexpected else "",
                 f"{len(mismatched)} shape mismatches (checkpoint vs model): {show(mismatched)}" if mismatched else ""]
        raise PmgaftError(f"checkpoint {path} does not fit model {model_name!r}: "
                          + "; ".join(p for p in parts if p)
                          + ". Is --model the architecture the checkpoint was trained with?")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in sd.items()}, strict=True)
    return image_tower_only
