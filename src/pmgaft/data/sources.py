"""Which copy of a registered dataset to read: the torchvision layout under the data root, or the hub copy.

``torchvision`` (the default) reads ``--data-root`` as today; ``hub`` reads the Hugging Face hub copy from the
Hugging Face cache (:mod:`pmgaft.data.hub`); ``auto`` takes the torchvision layout when it is present, else a
usable hub copy that is cached, else -- when downloading -- whichever can be fetched (torchvision's download
first: it is the registered set itself). A hub copy is *usable* for a split when it holds the same images
(:meth:`HubSource.split_for`); CLIP_benchmark's own, different test splits only when ``benchmark_split``; and
never for a prompt style that builds the set's prompts from the torchvision loader's own class names (TTC's
CIFAR, STL-10, SUN397: a hub copy names its classes its own way, ``aquarium fish`` for ``aquarium_fish``).
Nothing here reads an image or touches the network.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pmgaft.data.folder import PREFIX as FOLDER_PREFIX
from pmgaft.data.hub_sources import HUB_SOURCES
from pmgaft.data.spec import DatasetSpec

SOURCES: tuple[str, ...] = ("torchvision", "hub", "auto")
DEFAULT_SOURCE = "torchvision"
HUB_PREFIX = "hub:"


def source_id(name: str, source: str, offline: bool = False) -> str:
    """What result cards record as a dataset's ``source``: ``hub:ORG/NAME`` for its hub copy (``source`` "hub"),
    else ``folder`` (``folder:PATH``), ``bundled`` (``offline`` sets shipped by a package) or ``torchvision``."""
    if source == "hub" and name in HUB_SOURCES:
        return HUB_PREFIX + HUB_SOURCES[name].repo
    if name.startswith(FOLDER_PREFIX):
        return "folder"
    return "bundled" if offline else DEFAULT_SOURCE


@dataclass(frozen=True)
class SourceChoice:
    """``source``: ``"torchvision"`` or ``"hub"``; None when neither can be read, and ``why_not`` says what to do."""

    source: str | None
    why_not: str = ""


def _loader_named(name: str, prompts: str | None) -> bool:
    """Whether prompt style ``prompts`` builds registered set ``name``'s prompts from the loader's ``.classes``."""
    from pmgaft.prompts.classnames import resolve_dataset
    from pmgaft.prompts.styles import get_style

    key = resolve_dataset(name)
    return prompts is not None and key is not None and get_style(prompts).loader_names(key)


def hub_refusal(spec: DatasetSpec, split: str, root: Path, benchmark_split: bool, who: str,
                prompts: str | None = None) -> str | None:
    """Why the hub copy cannot stand for ``split`` of ``spec`` (one sentence), or None when it can. ``prompts``:
    the prompt style the set will be scored with (None: not known here)."""
    hub = HUB_SOURCES.get(spec.name)
    if hub is None:
        return f"dataset {spec.name!r} has no hub copy (hub copies: {', '.join(HUB_SOURCES)})"
    instead = f"get the torchvision copy instead ({spec.fix(root)}) and evaluate with --source torchvision or auto"
    if hub.split_for(split, benchmark_split) is None:
        return f"{who} scores {spec.name} on {spec.describe_split(split)}, but its hub copy {hub.repo} holds " \
               f"{hub.holds()}: {instead}"
    if _loader_named(spec.name, prompts):
        return (f"{who} writes {spec.name}'s prompts with the torchvision loader's own class names (prompt style "
                f"{prompts!r}), which its hub copy {hub.repo} does not carry (it names the classes its own way): "
                f"{instead}")
    return None


def choose_source(spec: DatasetSpec, split: str, root: Path, source: str, *, download: bool = False,
                  benchmark_split: bool = False, who: str = "pmgaft", prompts: str | None = None) -> SourceChoice:
    """Where ``split`` of ``spec`` will be read from under ``source`` (``SOURCES``); see the module docstring.
    ``prompts``: the prompt style it will be scored with, when known (see :func:`hub_refusal`)."""
    from pmgaft.data.hub import cache_dir, cached, download_hint

    local = spec.locate(root, split) is not None
    if source == "torchvision" or spec.offline:
        if local or (download and spec.download):
            return SourceChoice("torchvision")
        return SourceChoice(None, str(spec.not_found(root, split)))
    refusal = hub_refusal(spec, split, root, benchmark_split, who, prompts)
    hub = HUB_SOURCES.get(spec.name)
    hub_cached = refusal is None and cached(hub, hub.split_for(split, benchmark_split)) is not None
    if source == "hub":
        if refusal is not None:
            return SourceChoice(None, refusal)
        if hub_cached or download:
            return SourceChoice("hub")
        return SourceChoice(None, f"the hub copy of {spec.name} ({hub.repo}) is not in the Hugging Face cache "
                                  f"{cache_dir()}: {download_hint(hub)}")
    for usable, choice in ((local, "torchvision"), (hub_cached, "hub"), (download and spec.download, "torchvision"),
                           (download and refusal is None, "hub")):
        if usable:
            return SourceChoice(choice)
    hub_hint = refusal or (f"nor is its hub copy {hub.repo} in the Hugging Face cache {cache_dir()} "
                           f"({download_hint(hub)})")
    return SourceChoice(None, f"{spec.not_found(root, split)}; {hub_hint}")
