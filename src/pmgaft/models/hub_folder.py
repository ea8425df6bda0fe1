"""Models named by open_clip's hub prefixes: ``hf-hub:ORG/NAME`` (the Hugging Face hub) and ``local-dir:PATH``.

Both name open_clip's hub folder: ``open_clip_config.json`` (``model_cfg``: the architecture, with ``quick_gelu``;
``preprocess_cfg``: input mean/std) and the weights, ``open_clip_model.safetensors`` or else
``open_clip_pytorch_model.bin``. :func:`resolve_hub` finds the files as open_clip does (its download helper, file
names and preference, the Hugging Face cache; offline when the hub is unreachable) and
:func:`pmgaft.models.load_clip` loads them with pmgaft's one loader. Two differences from
``open_clip.create_model_and_transforms``: a missing weights file is an error (open_clip only warns and returns
random weights), and a ``.bin`` is read with ``torch.load(weights_only=True)`` like every other file.
The catalogue's short names (``fare4-clip``) stand for ``hf-hub:`` names.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from open_clip.constants import HF_CONFIG_NAME, HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

from pmgaft.errors import PmgaftError
from pmgaft.models.catalogue import find_entry
from pmgaft.models.checkpoint import ModelRecord, model_record, read_metadata

HF_HUB, LOCAL_DIR = "hf-hub:", "local-dir:"  # open_clip's prefixes (open_clip.factory)
WEIGHTS_NAMES = (HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME)  # the order open_clip tries them in
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no", "")
_MODEL_CFG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")  # what open_clip builds every CLIP from


def hub_name(text: str | os.PathLike | None) -> str | None:
    """The canonical hub name of ``text`` (``hf-hub:REPO`` or ``local-dir:/abs/path``), None for anything else.

    Catalogue short names and repo ids (``fare4-clip``, ``chs20/fare4-clip``) become ``hf-hub:`` names.
    """
    if text is None or isinstance(text, os.PathLike):
        return None
    text = str(text)
    if text.startswith(LOCAL_DIR):
        path = text[len(LOCAL_DIR):]
        return LOCAL_DIR + str(Path(path).expanduser().resolve()) if path else text
    if text.startswith(HF_HUB):
        return text
    entry = find_entry(text)
    return entry.hub_name if entry is not None else None


def hub_label(name: str) -> str:
    """A short label for results: the catalogue name, the repo's name, or the folder's name."""
    entry = find_entry(name) if name.startswith(HF_HUB) else None
    if entry is not None:
        return entry.name
    return Path(name.split(":", 1)[1].rstrip("/")).name or name


@dataclass(frozen=True)
class HubModel:
    """A resolved hub folder: its config and the local path of its weights (None when not asked for)."""

    name: str  # canonical hub name
    folder: Path  # holds open_clip_config.json (a local folder, or a snapshot in the Hugging Face cache)
    config: dict[str, Any]
    weights: Path | None

    @property
    def model_cfg(self) -> dict[str, Any]:
        return self.config["model_cfg"]

    @property
    def preprocess_cfg(self) -> dict[str, Any]:
        return self.config.get("preprocess_cfg") or {}

    @property
    def quick_gelu(self) -> bool:
        """The config's ``quick_gelu`` (some public configs store the string "TRUE"); absent: GELU, as open_clip."""
        value = self.model_cfg.get("quick_gelu", False)
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if isinstance(value, (str, int)) and text in _TRUE + _FALSE:
            if isinstance(value, str) and text in _FALSE and value:
                warnings.warn(f"{self.name}: open_clip_config.json stores quick_gelu as the string {value!r}; pmgaft "
                              f"reads it as false (GELU), but plain open_clip takes any non-empty string as true "
                              f"and builds QuickGELU: write the JSON boolean false.", stacklevel=3)
            return text in _TRUE
        raise PmgaftError(f"{self.name}: open_clip_config.json has quick_gelu = {value!r}; expected true or false.")

    @property
    def hf_tokenizer(self) -> str | None:
        """The Hugging Face tokenizer the config names (text_cfg.hf_tokenizer_name), None for CLIP's own BPE."""
        return self.model_cfg.get("text_cfg", {}).get("hf_tokenizer_name") or None

    def normalization(self) -> str | tuple[tuple[float, ...], tuple[float, ...]]:
        """The preprocess_cfg's mean/std: a pmgaft normalization name when they are one, else the pair."""
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        from pmgaft.models.loading import NORMALIZATIONS

        mean = tuple(float(v) for v in self.preprocess_cfg.get("mean", OPENAI_DATASET_MEAN))
        std = tuple(float(v) for v in self.preprocess_cfg.get("std", OPENAI_DATASET_STD))
        same = [n for n, (m, s) in NORMALIZATIONS.items()
                if all(abs(a - b) < 1e-6 for a, b in zip((*m, *s), (*mean, *std)))]
        return same[0] if same else (mean, std)


def hub_record(hub: HubModel) -> ModelRecord:
    """What the model was built and trained with: the config decides the architecture, activation and
    normalization; pmgaft metadata in the weights (an export of a pmgaft run) adds the rest; the catalogue
    fills the method and training set of a public model."""
    meta = read_metadata(hub.weights) if hub.weights is not None and hub.weights.suffix == ".safetensors" else {}
    record, entry = model_record(meta), find_entry(hub.name) if hub.name.startswith(HF_HUB) else None
    return ModelRecord(arch=hub.name, quick_gelu=hub.quick_gelu, normalization=hub.normalization(),
                       logit_scale=record.logit_scale, method=record.method or (entry and entry.method),
                       recipe=record.recipe, step=record.step,
                       train_dataset=record.train_dataset or (entry and entry.train_dataset),
                       pretrained=record.pretrained or (entry and entry.init))


def hub_base_arch(hub: HubModel) -> str | None:
    """The open_clip architecture a hub model was fine-tuned from (its catalogue entry, or the pmgaft metadata of
    an exported run); None when neither says (a hub config does not name its architecture)."""
    entry = find_entry(hub.name) if hub.name.startswith(HF_HUB) else None
    if entry is not None:
        return entry.architecture
    meta = read_metadata(hub.weights) if hub.weights is not None and hub.weights.suffix == ".safetensors" else {}
    arch = model_record(meta).arch
    return arch if arch and hub_name(arch) is None else None


# --- finding the files -------------------------------------------------------------------------------------

def resolve_hub(name: str, *, weights: bool = True) -> HubModel:
    """Find ``name``'s config (and, with ``weights``, its weights file); a PmgaftError says what is missing."""
    canonical = hub_name(name)
    if canonical is None:
        raise PmgaftError(f"{name!r} is not a hub model name (hf-hub:ORG/NAME, local-dir:PATH, or a name from "
                          f"`pmgaft models`).")
    if canonical.startswith(LOCAL_DIR):
        return _local_dir(canonical, weights)
    return _hf_hub(canonical, weights)


def _read_config(path: Path, name: str) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise PmgaftError(f"{name}: {path} is not readable JSON ({err}).") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_cfg"), dict):
        raise PmgaftError(f"{name}: {HF_CONFIG_NAME} has no 'model_cfg' (open_clip needs it to build the model).")
    lacking = [key for key in _MODEL_CFG_KEYS if key not in config["model_cfg"]]
    if lacking:
        raise PmgaftError(f"{name}: the 'model_cfg' of {HF_CONFIG_NAME} lacks {', '.join(map(repr, lacking))}, so "
                          f"open_clip cannot build the model: write the architecture's whole open_clip config "
                          f"there (as `pmgaft export` does).")
    return config


def _local_dir(name: str, weights: bool) -> HubModel:
    folder = Path(name[len(LOCAL_DIR):])
    if not folder.is_dir():
        raise PmgaftError(f"{name}: no such folder (local-dir: takes a folder holding {HF_CONFIG_NAME} and "
                          f"{HF_SAFE_WEIGHTS_NAME}, as `pmgaft export` writes).")
    if not (folder / HF_CONFIG_NAME).is_file():
        raise PmgaftError(f"{name}: the folder has no {HF_CONFIG_NAME}, so it is not an open_clip hub folder.")
    config = _read_config(folder / HF_CONFIG_NAME, name)
    found = next((folder / f for f in WEIGHTS_NAMES if (folder / f).is_file()), None)
    if weights and found is None:
        others = sorted(p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
        raise PmgaftError(f"{name}: the folder has no weights file ({' or '.join(WEIGHTS_NAMES)})"
                          + (f"; found {', '.join(others)}: rename the weights to {HF_SAFE_WEIGHTS_NAME}" if others
                             else "; open_clip would build the model with random weights, pmgaft refuses") + ".")
    return HubModel(name, folder, config, found if weights else None)


def _hf_hub(name: str, weights: bool) -> HubModel:
    repo = name[len(HF_HUB):]
    config_path = _download(repo, HF_CONFIG_NAME)
    config = _read_config(config_path, name)
    found = _download(repo, None) if weights else None
    return HubModel(name, config_path.parent, config, found)


def _download(repo: str, filename: str | None) -> Path:
    """One file of ``repo`` through open_clip's helper (``None``: the weights, safetensors first) -- from the
    Hugging Face cache, and downloaded into it when the hub can be reached."""
    from huggingface_hub import constants
    from open_clip.pretrained import download_pretrained_from_hf

    online = hub_reachable()
    try:
        with contextlib.nullcontext() if online else hub_offline():  # unreachable: the cache only, at once
            return Path(download_pretrained_from_hf(repo, filename=filename))
    except Exception as err:  # noqa: BLE001  (open_clip wraps every hub error in FileNotFoundError)
        raise PmgaftError(_download_failure(repo, filename, online, err.__context__ or err,
                                            constants.HF_HUB_CACHE)) from None


def _download_failure(repo: str, filename: str | None, online: bool, cause: BaseException, cache: str) -> str:
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, RemoteEntryNotFoundError,
                                        RepositoryNotFoundError)

    what = filename or f"weights file ({' or '.join(WEIGHTS_NAMES)})"
    if isinstance(cause, GatedRepoError):
        return (f"hf-hub:{repo} is gated: accept its terms on huggingface.co and log in (`hf auth login`, or set "
                f"HF_TOKEN).")
    if isinstance(cause, RepositoryNotFoundError):
        return (f"no model repository {repo!r} on the Hugging Face hub (or it is private: log in with `hf auth "
                f"login` or set HF_TOKEN); `pmgaft models` lists the public robust CLIP models.")
    if isinstance(cause, RemoteEntryNotFoundError) and filename == HF_CONFIG_NAME:
        return (f"hf-hub:{repo} has no {HF_CONFIG_NAME}: it is not in open_clip's format (a transformers CLIPModel "
                f"repo cannot be named with hf-hub:).")
    if isinstance(cause, RemoteEntryNotFoundError):
        return f"hf-hub:{repo} has no {what}: open_clip would build it with random weights, pmgaft refuses."
    if isinstance(cause, LocalEntryNotFoundError):
        why = "offline (HF_HUB_OFFLINE)" if _offline_requested() else "unreachable" if not online else \
            "not answering"
        return (f"hf-hub:{repo}: the {what} is not in the Hugging Face cache ({cache}) and the hub is {why}: on a "
                f"machine with internet run `hf download {repo} {HF_CONFIG_NAME} {HF_SAFE_WEIGHTS_NAME}` (or "
                f"{HF_WEIGHTS_NAME} where the repo has no safetensors) and point HF_HUB_CACHE at that cache, or copy "
                f"the files into a folder and name it local-dir:FOLDER.")
    return f"could not fetch the {what} of hf-hub:{repo}: {type(cause).__name__}: {' '.join(str(cause).split())[:200]}"


def _offline_requested() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable(host: str | None = None, timeout: float = 3.0) -> bool:
    """False under HF_HUB_OFFLINE or when the hub does not answer (then only the cache is used, at once).

    The hub is huggingface_hub's endpoint (``HF_ENDPOINT``, e.g. a mirror; default huggingface.co) unless ``host``
    is given. Behind an HTTPS proxy (``HTTPS_PROXY``) a direct connection says nothing: huggingface_hub goes
    through the proxy, so the hub counts as reachable and its own errors tell.
    """
    import urllib.request
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if _offline_requested():
        return False
    endpoint = urlsplit(constants.ENDPOINT if host is None else f"https://{host}")
    name = endpoint.hostname or "huggingface.co"
    if urllib.request.getproxies().get(endpoint.scheme or "https") and not urllib.request.proxy_bypass(name):
        return True
    try:
        socket.create_connection((name, endpoint.port or (80 if endpoint.scheme == "http" else 443)),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """huggingface_hub in offline mode (cached files only, no retries) for the duration."""
    from huggingface_hub import constants

    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old
