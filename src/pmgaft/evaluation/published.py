"""Published numbers as data: the accuracies the papers print, read from ``evaluation/data/published.json``.

One :class:`PublishedRow` per (method, backbone, training set, protocol, attack, eps) as one source prints it:
per-set robust and clean accuracy in % (only the sets the source gives), the average and the datasets it
averages, and the source (paper table or repository file at a commit). A number absent from the source is absent
from the row; nothing is derived. ``pmgaft published`` lists the rows, ``pmgaft report --compare``
(:mod:`pmgaft.evaluation.compare`) puts them beside a results directory's cards. docs/published.md says where
every row comes from.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from pmgaft.attacks import ATTACKS
from pmgaft.errors import PmgaftError
from pmgaft.evaluation.results import Cell
from pmgaft.utils import did_you_mean

SCHEMA = "pmgaft.published/1"
_ROW_KEYS = {"id", "method", "name", "backbone", "weights", "train_dataset", "protocol", "attack", "steps", "eps_255",
             "robust", "clean", "average", "source", "where", "notes"}
_OPTIONAL_KEYS = {"inconsistent"}  # "average.robust" / "average.clean": the source's average is not its sets' mean


@dataclass(frozen=True)
class Source:
    key: str
    citation: str
    url: str


@dataclass(frozen=True)
class Average:
    """The source's average and the datasets it averages (``over`` names the group in the data file)."""

    over: str
    datasets: tuple[str, ...]
    robust: float | None = None
    clean: float | None = None


@dataclass(frozen=True)
class PublishedRow:
    """One method's published numbers under one protocol, attack and eps (accuracies in %)."""

    id: str
    method: str  # a pmgaft method name, "clip" for unmodified weights, METHOD+DEFENCE for a test-time defence
    name: str  # as the source names it
    backbone: str  # open_clip architecture
    weights: str  # the initial weights (open_clip tag)
    train_dataset: str | None  # the fine-tuning set (None: not fine-tuned)
    protocol: str
    attack: str
    steps: int | None  # None for parameter-free attacks
    eps_255: float
    robust: dict[str, float]
    clean: dict[str, float]
    average: Average | None
    source: Source
    where: str
    notes: str = ""
    inconsistent: tuple[str, ...] = field(default=())

    @property
    def attack_id(self) -> str:
        """As result cards spell it: ``pgd100``, ``apgd-ce-dlr``."""
        return Cell("", "", self.attack, self.eps_255, self.steps or 0).attack_id

    @property
    def datasets(self) -> tuple[str, ...]:
        """Every dataset the row says something about: its per-set values, then the rest of its average."""
        named = dict.fromkeys([*self.robust, *self.clean, *(self.average.datasets if self.average else ())])
        return tuple(named)

    def describe(self) -> str:
        return f"{self.protocol}, {self.attack_id}, eps {self.eps_255:g}/255, {self.backbone}"

    def to_dict(self) -> dict[str, Any]:
        avg = self.average
        return {"id": self.id, "method": self.method, "name": self.name, "backbone": self.backbone,
                "weights": self.weights, "train_dataset": self.train_dataset, "protocol": self.protocol,
                "attack": self.attack, "attack_id": self.attack_id, "steps": self.steps, "eps_255": self.eps_255,
                "robust": self.robust, "clean": self.clean,
                "average": None if avg is None else {"over": avg.over, "datasets": list(avg.datasets),
                                                     "robust": avg.robust, "clean": avg.clean},
                "source": {"key": self.source.key, "citation": self.source.citation, "url": self.source.url},
                "where": self.where, "notes": self.notes, "inconsistent": list(self.inconsistent)}


def _percent(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        raise ValueError(f"{where}: expected an accuracy in % (0-100), got {value!r}")
    return float(value)


def _per_set(raw: Any, where: str) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected {{dataset: accuracy}}, got {raw!r}")
    return {str(k): _percent(v, f"{where}.{k}") for k, v in raw.items()}


def parse_row(raw: dict[str, Any], sources: dict[str, Source], groups: dict[str, tuple[str, ...]]) -> PublishedRow:
    """One row of the data file, checked (a ValueError names the row and the field)."""
    rid = raw.get("id", "?")
    if set(raw) - _OPTIONAL_KEYS != _ROW_KEYS:
        raise ValueError(f"row {rid}: keys {sorted(set(raw) ^ (_ROW_KEYS | (set(raw) & _OPTIONAL_KEYS)))} "
                         f"missing or unknown")
    spec = ATTACKS.get(raw["attack"])
    if spec is None or spec.is_clean:
        raise ValueError(f"row {rid}: attack {raw['attack']!r} is not a registered attack")
    if spec.iterative != isinstance(raw["steps"], int):
        raise ValueError(f"row {rid}: steps must be an int for iterative attacks and null otherwise")
    if raw["source"] not in sources:
        raise ValueError(f"row {rid}: unknown source {raw['source']!r}")
    average = None
    if raw["average"] is not None:
        a = raw["average"]
        if (a.get("over") not in groups or not set(a) <= {"over", "robust", "clean"}
                or a.get("robust") is None and a.get("clean") is None):
            raise ValueError(f"row {rid}: average needs 'over' (a dataset group) and robust and/or clean")
        robust_avg, clean_avg = (None if a.get(k) is None else _percent(a[k], f"row {rid} average.{k}")
                                 for k in ("robust", "clean"))
        average = Average(a["over"], groups[a["over"]], robust_avg, clean_avg)
    robust, clean = _per_set(raw["robust"], f"row {rid} robust"), _per_set(raw["clean"], f"row {rid} clean")
    if average and not set(robust) | set(clean) <= set(average.datasets):
        raise ValueError(f"row {rid}: per-set values for sets outside its average's group {average.over}")
    if not (robust or clean or average):
        raise ValueError(f"row {rid}: no numbers")
    bad = set(raw.get("inconsistent", ())) - {"average.robust", "average.clean"}
    if bad:
        raise ValueError(f"row {rid}: inconsistent lists {sorted(bad)}; allowed: average.robust, average.clean")
    return PublishedRow(rid, raw["method"], raw["name"], raw["backbone"], raw["weights"], raw["train_dataset"],
                        raw["protocol"], raw["attack"], raw["steps"], float(raw["eps_255"]), robust, clean, average,
                        sources[raw["source"]], raw["where"], raw["notes"], tuple(raw.get("inconsistent", ())))


def parse_published(doc: dict[str, Any]) -> list[PublishedRow]:
    """Every row of a published-numbers document, checked; a ValueError for a malformed one."""
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"expected schema {SCHEMA}, got {doc.get('schema')!r}")
    sources = {k: Source(k, v["citation"], v["url"]) for k, v in doc["sources"].items()}
    groups = {k: tuple(v) for k, v in doc["dataset_groups"].items()}
    rows = [parse_row(r, sources, groups) for r in doc["rows"]]
    ids = [r.id for r in rows]
    keys = [(r.method, r.backbone, r.train_dataset, r.protocol, r.attack_id, r.eps_255) for r in rows]
    if len(set(ids)) != len(ids) or len(set(keys)) != len(keys):
        raise ValueError("row ids and (method, backbone, training set, protocol, attack, eps) must be unique")
    return rows


@lru_cache(maxsize=1)
def published_document() -> dict[str, Any]:
    text = resources.files("pmgaft.evaluation").joinpath("data", "published.json").read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def _rows() -> tuple[PublishedRow, ...]:
    return tuple(parse_published(published_document()))


def published_rows(protocol: str | None = None, method: str | None = None) -> list[PublishedRow]:
    """The rows, optionally of one protocol and/or method; a PmgaftError for a name no row has."""
    rows = list(_rows())
    for what, value in (("protocol", protocol), ("method", method)):
        known = sorted({getattr(r, what) for r in rows})
        if value is not None and value not in known:
            raise PmgaftError(f"no published numbers for {what} {value!r}.{did_you_mean(value, known)} "
                              f"(`pmgaft published` lists every row.)")
    chosen = [r for r in rows if protocol in (None, r.protocol) and method in (None, r.method)]
    if not chosen:
        methods = ", ".join(sorted({r.method for r in rows if r.protocol == protocol}))
        raise PmgaftError(f"no published row has method {method!r} under protocol {protocol!r}; that protocol's "
                          f"methods: {methods}.")
    return chosen
