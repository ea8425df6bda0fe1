"""Load CLIP through open_clip -- built exactly as the weights were trained, from any common source.

``load_clip(name, pretrained)`` takes an open_clip hub tag (``openai``), a local weights file of any layout
:mod:`pmgaft.models.files` reads (never executing code from it), or None (random init). ``name`` may also be a
hub model, ``hf-hub:ORG/NAME`` or ``local-dir:PATH`` (:mod:`pmgaft.models.hub_folder`): its
``open_clip_config.json`` is the architecture and, with ``pretrained=None``, its weights file the weights. It then

1. decides the **activation**: OpenAI CLIP was trained with QuickGELU, open_clip's ``ViT-B-32`` config uses GELU
   (open_clip only warns). The evidence, strongest first: an explicit ``quick_gelu=``; a hub model's
   ``open_clip_config.json`` for its own weights; pmgaft's checkpoint metadata; the hub tag's ``quick_gelu``
   flag; an OpenAI file (TorchScript archive, OpenAI's extra entries, the TeCoA lineage's released checkpoints);
   the base weights of an image-tower-only file (``text_pretrained``); the hub config of a file's architecture; a
   ``-quickgelu`` architecture name. A plain state_dict that tells nothing gets the config's activation and a
   warning naming the choice;
2. builds the architecture (``force_quick_gelu``) and loads the weights strictly; an image-tower-only file (FARE,
   TeCoA/PMG-AFT/TGA-ZSR releases) gets its text tower from ``text_pretrained`` (a tag or a file), which is
   required; a shape mismatch names the architectures the file does fit;
3. returns the model with what it was trained with: ``normalization`` and ``logit_scale`` (pmgaft checkpoints
   record them; None = unknown, the evaluation protocol decides).
"""
from __future__ import annotations

import contextlib
import copy
import os
import warnings
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Callable

import torch
from torch import nn

import pmgaft  # noqa: F401  (applies the torchvision shim before open_clip is imported)
import open_clip
from open_clip.constants import IMAGENET_MEAN, IMAGENET_STD, OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from pmgaft.errors import PmgaftError
from pmgaft.models.architecture import matching_architectures
from pmgaft.models.checkpoint import ModelRecord, Normalization, checkpoint_record, model_record
from pmgaft.models.fast import use_fast_kernels
from pmgaft.models.files import CHECKPOINT_SUFFIXES, WeightsFile, read_weights
from pmgaft.models.hub_folder import HF_HUB, HubModel, hub_name, hub_record, resolve_hub
from pmgaft.models.hub_folder import hub_offline as _hub_offline, hub_reachable as _hub_reachable
from pmgaft.utils import did_you_mean, resolve_device, state_dict_hash

NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "clip": (tuple(OPENAI_DATASET_MEAN), tuple(OPENAI_DATASET_STD)),
    "imagenet": (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)),  # what the released PMG-AFT code uses
}
QUICK_GELU_SUFFIX = "-quickgelu"
_configs_registered = False


@dataclass
class LoadedClip:
    """An open_clip model with everything needed to use it: tokenizer, input size, how it was built and trained."""

    model: nn.Module
    tokenizer: Callable[..., torch.Tensor]
    name: str
    pretrained: str | None
    image_size: int
    weights_hash: str = field(repr=False)
    quick_gelu: bool = False
    activation_source: str = ""  # why this activation (for result cards and warnings)
    normalization: str | Normalization | None = None  # what the weights were trained with; None: unknown
    logit_scale: str | float | None = None
    record: ModelRecord = field(default_factory=ModelRecord, repr=False)
    layout: str = ""  # the file layout the weights came from ("tag", "random", "safetensors", "released", ...)
    notes: list[str] = field(default_factory=list, repr=False)

    def __iter__(self):  # ``model, tokenizer = load_clip(...)`` works
        return iter((self.model, self.tokenizer))


def register_model_configs() -> None:
    """Add pmgaft's tiny configs (``pmgaft-tiny``, ``pmgaft-micro``, ``pmgaft-quick``) to open_clip's registry."""
    global _configs_registered
    if not _configs_registered:
        open_clip.add_model_config(resources.files("pmgaft") / "model_configs")
        _configs_registered = True


def list_models() -> list[str]:
    register_model_configs()
    return open_clip.list_models()


# --- where the weights come from ----------------------------------------------------------------------------

@dataclass
class _Source:
    """Weights read from a file (or a tag's cached file), with the evidence they carry about the activation."""

    label: str  # the tag or the path, as the user gave it
    weights: WeightsFile | None  # None: random init
    quick_gelu: bool | None = None  # what the source says; None: it does not tell
    why: str = ""


def _looks_like_path(pretrained: str | os.PathLike) -> bool:
    text = str(pretrained)
    return isinstance(pretrained, os.PathLike) or os.sep in text or text.endswith(CHECKPOINT_SUFFIXES) or \
        Path(text).expanduser().is_file()


def _source(name: str, pretrained: str | os.PathLike | None, trust: bool) -> _Source:
    if pretrained is None:
        return _Source("random init", None)
    if hub_name(pretrained) is not None:
        raise PmgaftError(f"{pretrained} is a hub model, not weights for {name!r}: name it as the model "
                          f"(pmgaft: --model {pretrained} or --checkpoint {pretrained}; library: "
                          f"load_clip({str(pretrained)!r})).")
    if _looks_like_path(pretrained):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise PmgaftError(f"checkpoint file {str(path)!r} does not exist (pretrained= takes an open_clip tag such "
                              f"as 'openai' or a path to a .pt/.pth/.bin/.safetensors file).")
        weights = read_weights(path, trust=trust)
        record = model_record(weights.metadata)
        if record.quick_gelu is not None:
            return _Source(str(path), weights, record.quick_gelu, "recorded in the pmgaft checkpoint")
        if weights.openai:
            return _Source(str(path), weights, True, f"OpenAI CLIP weights ({weights.layout} file)")
        return _Source(str(path), weights, None)
    tag = str(pretrained)
    if hub_name(name) is not None:
        raise PmgaftError(f"{name} carries its own weights: pretrained= takes only a weights file for its "
                          f"architecture, not the open_clip tag {tag!r} (pmgaft: drop --pretrained).")
    return _Source(tag, read_weights(_fetch_tag(name, tag)), _tag_quick_gelu(name, tag), f"open_clip tag {tag!r}")


def _hub_sources(hub: HubModel, pretrained: str | os.PathLike | None, trust: bool) -> tuple[_Source, _Source]:
    """(the weights: the hub folder's own when ``pretrained`` is None; the config's activation, as evidence)."""
    config = _Source(hub.name, None, hub.quick_gelu, f"open_clip_config.json of {hub.name}")
    if pretrained is not None:
        return _source(hub.name, pretrained, trust), config
    return _Source(hub.name, read_weights(hub.weights, trust=trust), hub.quick_gelu, config.why), config


def _tag_quick_gelu(name: str, tag: str) -> bool:
    base = name[: -len(QUICK_GELU_SUFFIX)] if name.endswith(QUICK_GELU_SUFFIX) else name
    cfg = open_clip.get_pretrained_cfg(name, tag) or open_clip.get_pretrained_cfg(base, tag) or {}
    return bool(cfg.get("quick_gelu", False))


def _fetch_tag(name: str, tag: str) -> Path:
    """The local file of open_clip tag ``tag`` for ``name`` (downloaded once, then from the HF cache)."""
    from open_clip.pretrained import download_pretrained

    tags = open_clip.list_pretrained_tags_by_model(name)
    if tag not in tags:
        raise PmgaftError(f"model {name!r} has no pretrained weights tagged {tag!r}.{did_you_mean(tag, tags)}"
                          if tags else f"model {name!r} has no pretrained tags in open_clip; pass a local "
                          f"checkpoint file or pretrained=None.")
    cfg = open_clip.get_pretrained_cfg(name, tag)
    try:
        if _hub_reachable():
            path = download_pretrained(cfg)
        else:
            with _hub_offline():  # unreachable hub: use the local cache only, fail at once instead of retrying
                path = download_pretrained(cfg)
    except (OSError, RuntimeError, ConnectionError, TimeoutError, ValueError) as err:
        raise PmgaftError(
            f"could not fetch open_clip weights {name!r}/{tag!r}: the model hub is unreachable or the download "
            f"failed ({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}). On a machine "
            f"with internet run once `python -c \"import open_clip; open_clip.create_model('{name}', "
            f"pretrained='{tag}')\"` (it caches the file), or download the weights and pass their path: "
            f"--pretrained /path/to/weights.pt") from None
    if not path or not Path(path).is_file():
        raise PmgaftError(f"open_clip tag {name!r}/{tag!r} resolved to no file ({path!r}).")
    return Path(path)


# --- the activation -----------------------------------------------------------------------------------------

def _decide_quick_gelu(name: str, explicit: bool | None, main: _Source, *others: _Source | None
                       ) -> tuple[bool, str]:
    evidence = [(s.quick_gelu, s.why) for s in (main, *others) if s is not None and s.quick_gelu is not None]
    if name.endswith(QUICK_GELU_SUFFIX) and hub_name(name) is None:
        evidence.append((True, f"the architecture {name!r}"))
    if explicit is not None:
        conflicting = [why for value, why in evidence if value != explicit]
        if conflicting:
            warnings.warn(f"quick_gelu={explicit} was asked for, but {conflicting[0]} says quick_gelu="
                          f"{not explicit}: the model will compute a different function from the one the weights "
                          f"were trained with.", stacklevel=4)
        return explicit, "asked for explicitly"
    if evidence:
        return evidence[0]
    if main.weights is not None and _has_quick_gelu_weights(name):
        warnings.warn(f"{main.label}: nothing tells which activation these weights were trained with; using the "
                      f"{name!r} config's (GELU). If they come from OpenAI CLIP (or were fine-tuned from it), pass "
                      f"quick_gelu=True (pmgaft: --quick-gelu).", stacklevel=4)
        return False, "the architecture's config (nothing in the weights tells)"
    return False, "the architecture's config"


def _has_quick_gelu_weights(name: str) -> bool:
    """Whether published weights for ``name`` were trained with QuickGELU (then a plain file is ambiguous)."""
    variants = {name, name + QUICK_GELU_SUFFIX}
    return any(_tag_quick_gelu(model, tag) for model, tag in open_clip.list_pretrained() if model in variants)


# --- building ----------------------------------------------------------------------------------------------

def load_clip(name: str | None, pretrained: str | os.PathLike | None = None, *, device: str | torch.device = "cpu",
              text_pretrained: str | os.PathLike | None = None, quick_gelu: bool | None = None,
              trust_checkpoint: bool = False) -> LoadedClip:
    """Create open_clip model ``name`` with the weights ``pretrained`` (hub tag, local file, or None = random).

    ``name`` may be None for pmgaft checkpoints (their metadata names the architecture). ``text_pretrained``
    (tag or file): the base weights an image-tower-only file was fine-tuned from; its text tower is used.
    ``quick_gelu``: force the activation (None: decided from the weights, see the module docstring).
    ``trust_checkpoint``: allow pickles that need more than ``torch.load(weights_only=True)`` (runs their code).
    The model is returned in eval mode on ``device``; the caller decides what to train.
    """
    register_model_configs()
    device = resolve_device(device)
    if name is None and pretrained is not None and _looks_like_path(pretrained):
        name = checkpoint_record(Path(pretrained).expanduser()).arch
    if not name:
        raise PmgaftError(f"no architecture given and {pretrained} does not record one: pass the model name "
                          f"(pmgaft: --model, e.g. ViT-B-32).")
    hub = resolve_hub(name, weights=pretrained is None) if hub_name(name) is not None else None
    if hub is None and name not in open_clip.list_models():
        raise PmgaftError(f"unknown model {name!r}.{_close_models(name)}")
    if hub is not None:
        name = hub.name
        main, config = _hub_sources(hub, pretrained, trust_checkpoint)
    else:
        main, config = _source(name, pretrained, trust_checkpoint), None
    base = _source(name, text_pretrained, trust_checkpoint) if text_pretrained is not None else None
    use_quick_gelu, why = _decide_quick_gelu(name, quick_gelu, main, base, config)
    model = _create(name, use_quick_gelu, hub)
    notes = list(main.weights.notes) if main.weights is not None else []
    for note in notes:
        warnings.warn(note, stacklevel=2)
    layout = "random" if main.weights is None else main.weights.layout
    if main.weights is not None:
        tensors, tower_only = _open_clip_keys(main.weights, model)
        if tower_only:
            if base is None or base.weights is None:
                raise PmgaftError(
                    f"checkpoint {main.label} holds only the image tower ({_tower_only_kind(main.weights)}); its "
                    f"text tower is the unchanged base CLIP it was fine-tuned from: pass the base weights "
                    f"(pmgaft: --pretrained openai, or a file; library: text_pretrained='openai').")
            base_tensors, _ = _open_clip_keys(base.weights, model)
            _load_strict(model, base_tensors, base.label, name)
            tensors = {**{k: v for k, v in model.state_dict().items() if not k.startswith("visual.")}, **tensors}
        _load_strict(model, tensors, main.label, name)
    record = model_record(main.weights.metadata) if main.weights is not None else ModelRecord()
    if hub is not None:  # the hub folder's own weights: its config decides; a file for its architecture: its metadata
        record = hub_record(hub) if pretrained is None else \
            replace(record, normalization=record.normalization or hub.normalization())
    model = model.to(device).eval()
    size = model.visual.image_size
    return LoadedClip(model=model, tokenizer=_tokenizer(name, hub), name=name,
                      pretrained=None if pretrained is None else str(pretrained),
                      image_size=int(size[0] if isinstance(size, (tuple, list)) else size),
                      weights_hash=state_dict_hash(model.state_dict())[:16], quick_gelu=use_quick_gelu,
                      activation_source=why, normalization=record.normalization, logit_scale=record.logit_scale,
                      record=record, layout="tag" if pretrained is not None and not _looks_like_path(pretrained)
                      else layout, notes=notes)


def _tower_only_kind(w: WeightsFile) -> str:
    return "a TeCoA/PMG-AFT/TGA-ZSR release" if w.layout == "released" else "an image-tower-only state_dict"


def _create(name: str, use_quick_gelu: bool, hub: HubModel | None = None) -> nn.Module:
    """The architecture, randomly initialised (a hub model: built by open_clip from its folder's config)."""
    if hub is None and name.endswith(QUICK_GELU_SUFFIX) and not use_quick_gelu:
        raise PmgaftError(f"{name!r} always uses QuickGELU; for GELU use {name[: -len(QUICK_GELU_SUFFIX)]!r}.")
    with _quiet_open_clip():
        if hub is None:
            model = open_clip.create_model(name, pretrained=None, device="cpu", force_quick_gelu=use_quick_gelu)
        else:  # quick_gelu as a keyword overrides the config's value (which may be the string "TRUE")
            model = open_clip.create_model(f"local-dir:{hub.folder}", load_weights=False, device="cpu",
                                           quick_gelu=use_quick_gelu)
    use_fast_kernels(model.visual)  # same function, faster under autograd (pmgaft.models.fast)
    return model


def _tokenizer(name: str, hub: HubModel | None) -> Callable[..., torch.Tensor]:
    """open_clip's tokenizer for ``name``; a hub model's from its config (CLIP's BPE unless it names a Hugging
    Face tokenizer, which needs ``transformers``)."""
    if hub is None:
        return open_clip.get_tokenizer(name)
    if hub.hf_tokenizer is None:
        return open_clip.get_tokenizer(f"local-dir:{hub.folder}")  # reads the config only: no network
    try:
        with contextlib.nullcontext() if _hub_reachable() else _hub_offline():
            return open_clip.get_tokenizer(name if name.startswith(HF_HUB) else f"local-dir:{hub.folder}")
    except ImportError as err:
        raise PmgaftError(f"{name} uses the Hugging Face tokenizer {hub.hf_tokenizer!r}, which needs the "
                          f"transformers package ({err}): pip install transformers.") from None
    except Exception as err:  # noqa: BLE001  (tokenizer files missing from the cache, ...)
        raise PmgaftError(f"{name}: cannot load its tokenizer {hub.hf_tokenizer!r}: {type(err).__name__}: "
                          f"{' '.join(str(err).split())[:200]}") from None


def model_config(name: str) -> dict | None:
    """open_clip's config of architecture ``name`` (a hub model: its ``model_cfg``); None when unknown."""
    register_model_configs()
    if hub_name(name) is not None:
        return copy.deepcopy(resolve_hub(name, weights=False).model_cfg)
    return open_clip.get_model_config(name)


def _open_clip_keys(w: WeightsFile, model: nn.Module) -> tuple[dict[str, torch.Tensor], bool]:
    """The file's tensors under ``model``'s key names, and whether they are the image tower only."""
    sd = w.tensors
    model_keys = model.state_dict().keys()
    tower_only = w.image_tower_only or (not any(k.startswith("visual.") for k in sd)
                                        and any(f"visual.{k}" in model_keys for k in sd))
    if tower_only and not any(k.startswith("visual.") for k in sd):
        sd = {f"visual.{k}": v for k, v in sd.items()}
    return sd, tower_only


def _load_strict(model: nn.Module, sd: dict[str, torch.Tensor], label: str, name: str) -> None:
    """Load ``sd`` into ``model`` strictly, with a short message (and the fitting architectures) on mismatch."""
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
        fits = [m for m in matching_architectures(sd) if m != name] if mismatched else []
        hint = (f" It fits --model {fits[0]}" + (f" (also: {', '.join(fits[1:4])})" if len(fits) > 1 else "") + "."
                if fits else " Is --model the architecture the checkpoint was trained with?")
        raise PmgaftError(f"checkpoint {label} does not fit model {name!r}: " + "; ".join(p for p in parts if p)
                          + "." + hint)
    model.load_state_dict(sd, strict=True)  # copies cast in place: an fp16 file (OpenAI's) needs no fp32 copy


def _close_models(name: str) -> str:
    import difflib

    models = open_clip.list_models()
    close = difflib.get_close_matches(name, models, n=5, cutoff=0.4)
    ours = sorted(p.name[:-5] for p in (resources.files("pmgaft") / "model_configs").iterdir()
                  if p.name.endswith(".json"))
    return (f" Close matches: {', '.join(close)}." if close else "") + \
        f" `python -c 'import open_clip; print(open_clip.list_models())'` lists all; pmgaft adds {', '.join(ours)}."


@contextlib.contextmanager
def _quiet_open_clip():
    """open_clip logs "No pretrained weights loaded ... initialized randomly": weights come from us next."""
    import logging

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)
