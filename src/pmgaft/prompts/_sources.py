"""Where prompt data comes from: our JSON files, clip-benchmark's JSON files, open_clip's metadata module.

Lists a maintained package already ships are read from it, not retyped. clip-benchmark is read as *data*: its
JSON files are located through the import system without executing any clip_benchmark module (its Python code
pulls in datasets/tensorflow machinery we do not want). Everything is cached: these files never change at run time.
"""
from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from pmgaft.errors import PmgaftError

_CLIP_BENCHMARK_HINT = "install it with `pip install --no-deps clip-benchmark` (or `pip install -e .[offline-data]`)"


@lru_cache(maxsize=None)
def data_json(name: str) -> dict[str, Any]:
    """One of our files in ``pmgaft/prompts/data/`` (``classnames``, ``paper``, ``ensemble``)."""
    text = resources.files("pmgaft.prompts").joinpath("data", f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=None)
def _clip_benchmark_dir() -> Path:
    spec = importlib.util.find_spec("clip_benchmark")  # finds the package; does not import it
    if spec is None or not spec.submodule_search_locations:
        raise PmgaftError(f"the prompt data of these datasets comes from clip-benchmark, which is not installed: "
                          f"{_CLIP_BENCHMARK_HINT}.")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets"


@lru_cache(maxsize=None)
def clip_benchmark_json(name: str) -> dict[str, Any]:
    """``clip_benchmark/datasets/<name>.json``, e.g. ``en_classnames`` or ``en_zeroshot_classification_templates``."""
    path = _clip_benchmark_dir() / f"{name}.json"
    if not path.is_file():
        raise PmgaftError(f"{path} not found: this clip-benchmark install lacks its data files; reinstall it "
                          f"({_CLIP_BENCHMARK_HINT}).")
    return json.loads(path.read_text(encoding="utf-8"))


def clip_benchmark_classnames(key: str) -> list[str]:
    """clip-benchmark's English class names for one of its dataset keys (``pets``, ``flowers`` ...)."""
    return list(clip_benchmark_json("en_classnames")[key])


def clip_benchmark_templates(key: str) -> list[str]:
    """clip-benchmark's English template ensemble for one of its dataset keys, placeholders as ``{}``."""
    return [t.replace("{c}", "{}") for t in clip_benchmark_json("en_zeroshot_classification_templates")[key]]


def open_clip_metadata(attr: str) -> list[str]:
    """A list from ``open_clip.zero_shot_metadata``; its template lambdas are rendered to ``{}`` strings."""
    return list(_open_clip_metadata(attr))


@lru_cache(maxsize=None)
def _open_clip_metadata(attr: str) -> tuple[str, ...]:
    # ``import pmgaft`` (done by importing this package) has already applied the torchvision shim open_clip needs
    from open_clip import zero_shot_metadata

    items = getattr(zero_shot_metadata, attr)
    return tuple(item("{}") if callable(item) else str(item) for item in items)
