"""The result schema (``pmgaft.result/2``): one JSON card per (model, dataset, attack, eps) cell.

Layout under a results directory::

    RESULTS/<model_label>/<dataset>/<attack_id>_eps<k>.json          # the card (or an error card)
    RESULTS/<model_label>/<dataset>/<attack_id>_eps<k>.samples.json  # per-sample indices + correctness
    RESULTS/<model_label>/<dataset>/clean.json (+ .samples.json)     # clean pass, cached for --skip-existing
    RESULTS/<model_label>/<dataset>/<attack_id>_eps<k>_<defence>[-adaptive].json  # under a test-time defence

``attack_id`` is the attack name plus its step count for iterative attacks (``pgd100``, ``cw10``,
``autoattack``, ``none``); ``k`` is eps in 1/255 units (``1``, ``0.5``). Cards of a defended classifier
(``pmgaft eval --defence ttc``) carry a ``defence`` block and ``attack.adaptive`` (the threat model). Everything
that varies between two identical runs (time stamps, duration, host, device, world size) lives under ``"run"``.

Version 2 (vs 1) records how robust accuracy was scored (``attack.scoring``: ``worst`` = clean-correct and
correct at every iterate, ``final`` = the final iterate of every image), whether PGD stopped early, the attack's
cost, the normalization and logit scale each model was evaluated with (and why), skipped unreadable images, and
per sample the first iterate that fooled it (``fooled_at``). Version-1 cards are still read.
"""
from __future__ import annotations

import datetime
import json
import platform
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from pmgaft.evaluation.models import safe_name
from pmgaft.utils import atomic_write_json, atomic_write_text, json_fingerprint

SCHEMA = "pmgaft.result/2"
READABLE_SCHEMAS = ("pmgaft.result/1", SCHEMA)
CLEAN_SCHEMA = "pmgaft.clean/2"


@dataclass(frozen=True)
class Cell:
    """One grid cell. eps is in 1/255 units (``eps_255``). ``defence``: a test-time defence the classifier runs
    under (None: undefended); ``adaptive``: the attack sees the defence (else the undefended classifier)."""

    model: str
    dataset: str
    attack: str
    eps_255: float
    steps: int
    defence: str | None = None
    adaptive: bool = False

    @property
    def iterative(self) -> bool:
        from pmgaft.attacks import ATTACKS

        spec = ATTACKS.get(self.attack)
        return bool(spec and spec.iterative)

    @property
    def attack_id(self) -> str:
        return f"{self.attack}{self.steps}" if self.iterative else self.attack

    @property
    def eps(self) -> float:
        return self.eps_255 / 255

    @property
    def defence_id(self) -> str:
        """``""`` undefended, else the defence and the threat model (``ttc``, ``ttc-adaptive``)."""
        return "" if not self.defence else self.defence + ("-adaptive" if self.adaptive else "")

    def stem(self) -> str:
        stem = f"{self.attack_id}_eps{self.eps_255:g}"
        return f"{stem}_{self.defence_id}" if self.defence else stem

    def path(self, root: str | Path) -> Path:
        return Path(root) / safe_name(self.model) / safe_name(self.dataset) / f"{self.stem()}.json"


def samples_path(card: str | Path) -> Path:
    card = Path(card)
    return card.with_name(card.stem + ".samples.json")


def clean_path(root: str | Path, model: str, dataset: str) -> Path:
    return Path(root) / safe_name(model) / safe_name(dataset) / "clean.json"


def fingerprint(obj: Any) -> str:
    """A short stable hash of a JSON-able object (what decides whether a stored result can be reused)."""
    return json_fingerprint(obj)


@lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """pmgaft's version and, when run from a git checkout, its commit (and whether it had local changes)."""
    from pmgaft import __version__

    info: dict[str, Any] = {"pmgaft": __version__, "git_commit": None, "git_dirty": None}
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=here, capture_output=True,
                                   text=True, timeout=5)
            info["git_dirty"] = bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def run_info(device: str, started: float, finished: float) -> dict[str, Any]:
    stamp = datetime.datetime.fromtimestamp(finished, datetime.timezone.utc).isoformat(timespec="seconds")
    return {"timestamp": stamp, "duration_s": round(finished - started, 3), "device": device,
            "host": platform.node()}


def write_card(path: Path, card: dict[str, Any], samples: dict[str, list] | None = None) -> Path:
    """Per-sample file first, card last: a card on disk means the cell finished."""
    if samples is not None:
        atomic_write_text(samples_path(path), json.dumps(samples, separators=(",", ":")) + "\n")
    return atomic_write_json(path, card)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def finished(path: Path, fp: str) -> bool:
    """True when ``path`` holds a successful card for the same cell configuration (``fingerprint``)."""
    card = read_json(path)
    return bool(card and card.get("schema") == SCHEMA and "error" not in card and card.get("fingerprint") == fp
                and samples_path(path).is_file())


def load_results(root: str | Path) -> list[dict[str, Any]]:
    """Every result card (successes and errors) under ``root``, in a stable order."""
    cards = []
    for path in sorted(Path(root).rglob("*.json")):
        if path.name.endswith(".samples.json") or path.name == "clean.json":
            continue
        card = read_json(path)
        if card and card.get("schema") in READABLE_SCHEMAS:
            card["_path"] = str(path)
            cards.append(card)
    return cards


def defence_id(card: dict[str, Any]) -> str:
    """A card's :attr:`Cell.defence_id`: ``""`` undefended, ``ttc`` (non-adaptive), ``ttc-adaptive``."""
    name = (card.get("defence") or {}).get("name")
    return "" if not name else name + ("-adaptive" if card.get("attack", {}).get("adaptive") else "")


def iter_errors(cards: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (c for c in cards if "error" in c)
