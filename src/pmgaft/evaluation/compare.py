"""Your numbers beside the published ones: result cards matched to :mod:`pmgaft.evaluation.published` rows.

A card and a published row match when they share the protocol, the attack and its steps, eps, the backbone and
the method, and the row says something about the card's dataset (a per-set value, or a set its average covers).
The method is the card's ``model.method`` ("clip" for unmodified weights, the training method of a pmgaft
checkpoint; "+DEFENCE" when the cell records a test-time defence) unless ``--compare-as LABEL=METHOD`` names it
-- foreign checkpoints record "unknown". Unmodified weights also need the row's initial weights (OpenAI's), and
a checkpoint that records its fine-tuning set needs the row's. Averages are compared when the results hold every
set the published average covers. Differences beyond a tolerance (accuracy points) are flagged. A cell scored
differently from its protocol preset (a subset, another scoring or normalization) is compared and says so.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any, Sequence

from pmgaft.attacks import ATTACKS
from pmgaft.errors import PmgaftError
from pmgaft.evaluation.protocols import PROTOCOLS
from pmgaft.evaluation.published import PublishedRow, published_rows
from pmgaft.utils import did_you_mean

DEFAULT_TOLERANCE = 1.0  # accuracy points
AVERAGE = "average"
# protocol settings that change the numbers without changing the cell's key (dataset, attack, steps, eps); the
# attack's own loss settings (CW's kappa) are added per card
_SETTINGS = ("step_size", "prompts", "transform", "normalization", "logit_scale", "split", "scoring",
             "attack_reduction", "resize_antialias")


def backbone(arch: str) -> str:
    """The architecture without open_clip's activation suffix (OpenAI weights run QuickGELU either way)."""
    return arch.removesuffix("-quickgelu")


def _defence_name(card: dict[str, Any]) -> str | None:
    defence = card.get("defence")
    return defence.get("name") if isinstance(defence, dict) else defence


def card_method(card: dict[str, Any]) -> str:
    """What a card's model is, as published rows name methods: METHOD, or METHOD+DEFENCE under a defence."""
    method = card["model"].get("method") or "unknown"
    name = _defence_name(card)
    return f"{method}+{name}" if name else method


def _explicit_method(card: dict[str, Any], method: str) -> str:
    """``--compare-as LABEL=METHOD`` for a card: a defended cell of that model is METHOD+DEFENCE (unless METHOD
    already names a defence), so it is never matched with the model's undefended row."""
    name = _defence_name(card)
    return f"{method}+{name}" if name and "+" not in method else method


def protocol_name(card: dict[str, Any]) -> str | None:
    return card.get("config", {}).get("protocol", {}).get("name")


def deviations(card: dict[str, Any]) -> list[str]:
    """How the card's run differs from its protocol preset (flags given on top of ``--protocol``)."""
    used = card.get("config", {}).get("protocol", {})
    preset = PROTOCOLS.get(used.get("name"))
    if preset is None:
        return []
    base = preset.to_dict()
    attack = ATTACKS.get(card["attack"].get("name", ""))
    settings = _SETTINGS + (tuple(attack.loss_params.values()) if attack is not None else ())
    out = [f"{k} {used[k]} (protocol: {base[k]})" for k in settings if k in used and used[k] != base[k]]
    n, total = card.get("n"), card["dataset"].get("n_total")
    if preset.samples_for(card["dataset"]["name"]) is None and n and total and n < total:
        out.append(f"{card['dataset']['name']}: {n:,} of {total:,} images")
    return out


def parse_compare_as(items: Sequence[str]) -> dict[str, str]:
    """``["LABEL=METHOD", ...]`` -> ``{label: method}``."""
    mapping = {}
    for item in items:
        label, sep, method = item.partition("=")
        if not sep or not label or not method:
            raise PmgaftError(f"--compare-as takes LABEL=METHOD (a model label of the results = a published method, "
                              f"e.g. tgazsr-release=tga_zsr), got {item!r}.")
        mapping[label] = method
    return mapping


@dataclass(eq=False)
class Match:
    """One model of the results against one published row: its cards by dataset."""

    label: str
    method: str
    row: PublishedRow
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    """One dataset (or the average) of one match: (robust, clean) in %, yours and published (None: not given)."""

    match: Match
    dataset: str
    ours: tuple[float, float]
    theirs: tuple[float | None, float | None]
    sets: int = 1
    notes: tuple[str, ...] = ()

    @property
    def diffs(self) -> tuple[float | None, float | None]:
        return tuple(None if t is None else o - t for o, t in zip(self.ours, self.theirs))  # type: ignore[return-value]

    def beyond(self, tolerance: float) -> bool:
        return any(d is not None and abs(d) > tolerance + 1e-9 for d in self.diffs)


def _matches(row: PublishedRow, card: dict[str, Any], method: str, explicit: bool) -> bool:
    model, attack = card["model"], card["attack"]
    trained_on = model.get("train_dataset")
    return (row.method == method and row.protocol == protocol_name(card) and row.attack_id == attack["id"]
            and row.eps_255 == float(attack["eps_255"]) and row.backbone == backbone(model.get("name") or "")
            and card["dataset"]["name"] in row.datasets and trained_on in (None, row.train_dataset)
            and (explicit or row.train_dataset is not None or model.get("pretrained") == row.weights))


def match_cards(cards: list[dict[str, Any]], rows: list[PublishedRow],
                compare_as: dict[str, str] | None = None) -> list[Match]:
    """Every (model, published row) pair with at least one matching card."""
    compare_as = compare_as or {}
    matches: dict[tuple[str, str], Match] = {}
    for card in cards:
        if "error" in card or "robust_accuracy" not in card or card["attack"].get("adaptive"):
            continue  # published defence numbers are their papers' non-adaptive ones
        label = card["model"]["label"]
        method = _explicit_method(card, compare_as[label]) if label in compare_as else card_method(card)
        for row in rows:
            if _matches(row, card, method, explicit=label in compare_as):
                m = matches.setdefault((label, row.id), Match(label, method, row))
                m.cards[card["dataset"]["name"]] = card
    return list(matches.values())


def _listing(values: set[str], limit: int = 20) -> str:
    items = sorted(values)
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def no_match_message(cards: list[dict[str, Any]], rows: list[PublishedRow]) -> str:
    """One sentence: what the results hold vs what the published rows cover."""
    ok = [c for c in cards if "error" not in c and "robust_accuracy" in c]
    attacks = {"clean" if c["attack"]["name"] == "none" else "{} at {:g}/255".format(c["attack"]["id"],
                                                                                  c["attack"]["eps_255"]) for c in ok}
    ours = (f"protocol {_listing({str(protocol_name(c)) for c in ok})}, {_listing(attacks)}, "
            f"backbone {_listing({backbone(c['model'].get('name') or '?') for c in ok})}, "
            f"method {_listing({card_method(c) for c in ok})} on {_listing({c['dataset']['name'] for c in ok})}"
            if ok else "no successful cell")
    theirs = (f"protocol {_listing({r.protocol for r in rows})}, "
              f"{_listing({f'{r.attack_id} at {r.eps_255:g}/255' for r in rows})}, "
              f"backbone {_listing({r.backbone for r in rows})}, method {_listing({r.method for r in rows})} on "
              f"{_listing({d for r in rows for d in r.datasets})}")
    return (f"no result cell has a published counterpart (same protocol, attack and steps, eps, dataset, method and "
            f"backbone): the results hold {ours}; the published rows hold {theirs} "
            f"(`pmgaft published` lists them; --compare-as LABEL=METHOD names a model's method).")


@dataclass(frozen=True)
class CompareReport:
    """The comparisons of a results directory and what they render to."""

    comparisons: list[Comparison]
    incomplete: list[tuple[Match, list[str]]]  # averages not compared: the sets the results lack
    tolerance: float

    def flagged(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.beyond(self.tolerance)]

    def markdown(self) -> str:
        return to_markdown(self)

    def csv(self) -> str:
        return to_csv(self)


def _pct(card: dict[str, Any]) -> tuple[float, float]:
    return 100 * card["robust_accuracy"], 100 * card["clean_accuracy"]


def _comparisons(m: Match) -> tuple[list[Comparison], list[str]]:
    row, out = m.row, []
    for dataset in row.datasets:
        card = m.cards.get(dataset)
        theirs = (row.robust.get(dataset), row.clean.get(dataset))
        if card is not None and theirs != (None, None):
            out.append(Comparison(m, dataset, _pct(card), theirs, notes=tuple(deviations(card))))
    if row.average is None:
        return out, []
    missing = [d for d in row.average.datasets if d not in m.cards]
    if missing:
        return out, missing
    values = [_pct(m.cards[d]) for d in row.average.datasets]
    mean = (sum(r for r, _ in values) / len(values), sum(c for _, c in values) / len(values))
    notes = tuple(dict.fromkeys(n for d in row.average.datasets for n in deviations(m.cards[d])))
    out.append(Comparison(m, AVERAGE, mean, (row.average.robust, row.average.clean), len(values), notes))
    return out, []


def compare_cards(cards: list[dict[str, Any]], *, tolerance: float = DEFAULT_TOLERANCE,
                  compare_as: dict[str, str] | None = None,
                  rows: list[PublishedRow] | None = None) -> CompareReport:
    """Compare result cards with the published rows; a PmgaftError (before any work) for bad settings or when
    no cell has a published counterpart."""
    rows = published_rows() if rows is None else rows
    compare_as = compare_as or {}
    if not (0 <= tolerance < float("inf")):
        raise PmgaftError(f"--tolerance is in accuracy points and must be >= 0, got {tolerance}.")
    labels = {c["model"]["label"] for c in cards}
    methods = {r.method for r in rows}
    for label, method in compare_as.items():
        if label not in labels:
            raise PmgaftError(f"--compare-as {label}={method}: the results have no model {label!r}."
                              f"{did_you_mean(label, labels)}")
        if method not in methods:
            raise PmgaftError(f"--compare-as {label}={method}: no published row has method {method!r}."
                              f"{did_you_mean(method, methods)}")
    matches = match_cards(cards, rows, compare_as)
    if not matches:
        raise PmgaftError(no_match_message(cards, rows))
    comparisons, incomplete = [], []
    for m in matches:
        found, missing = _comparisons(m)
        comparisons += found
        if missing:
            incomplete.append((m, missing))
    return CompareReport(comparisons, incomplete, tolerance)


# --- rendering ------------------------------------------------------------------------------------------------

def _num(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "-"
    v = round(v, 2) + 0.0  # no "-0.00"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def _title(m: Match) -> str:
    return f"{m.label} (as {m.method}) vs {m.row.id}: {m.row.describe()}"


def to_markdown(report: CompareReport) -> str:
    tol = report.tolerance
    flagged = report.flagged()
    lines = ["## Published numbers beside yours", "",
             f"Cells with a published counterpart (same protocol, attack and steps, eps, dataset, method and "
             f"backbone; `pmgaft published` lists every row). Accuracy in %; delta = yours - published; flagged: "
             f"|delta| > {tol:g} point(s). {len(report.comparisons)} comparison(s), {len(flagged)} flagged.", ""]
    by_match: dict[Match, list[Comparison]] = {}
    for c in report.comparisons:
        by_match.setdefault(c.match, []).append(c)
    for m, _ in report.incomplete:
        by_match.setdefault(m, [])
    for m, rows in by_match.items():
        lines += [f"### {_title(m)}", "", f"{m.row.name} in {m.row.source.citation}: {m.row.where}.", ""]
        if rows:
            lines += ["| dataset | robust | published | delta | clean | published | delta | |",
                      "|---|---|---|---|---|---|---|---|"]
            for c in rows:
                name = f"**average ({c.sets} sets)**" if c.dataset == AVERAGE else c.dataset
                (r, cl), (pr, pc), (dr, dc) = c.ours, c.theirs, c.diffs
                flag = f"**beyond ±{tol:g}**" if c.beyond(tol) else ""
                lines.append(f"| {name} | {_num(r)} | {_num(pr)} | {_num(dr, True)} | {_num(cl)} | {_num(pc)} | "
                             f"{_num(dc, True)} | {flag} |")
            lines.append("")
        missing = next((miss for mm, miss in report.incomplete if mm is m), None)
        if missing:
            avg = m.row.average
            lines.append(f"- The published average ({len(avg.datasets)} sets) is not compared: the results lack "
                         f"{len(missing)} of its sets ({', '.join(missing)}).")
        notes = list(dict.fromkeys(n for c in rows for n in c.notes))
        if notes:
            lines.append(f"- Your cells differ from protocol {m.row.protocol}: {'; '.join(notes)}.")
        if m.row.notes:
            lines.append(f"- Published row: {m.row.notes}")
        lines.append("")
    return "\n".join(lines)


CSV_HEADER = ("model", "compared_as", "published_row", "protocol", "attack", "eps_255", "backbone", "dataset", "sets",
              "robust", "robust_published", "robust_delta", "clean", "clean_published", "clean_delta",
              "beyond_tolerance", "tolerance", "source", "notes")


def to_csv(report: CompareReport) -> str:
    """One row per comparison (numbers in %, empty where the source gives none)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for c in report.comparisons:
        m, row = c.match, c.match.row
        (r, cl), (pr, pc), (dr, dc) = c.ours, c.theirs, c.diffs
        cells = [f"{v:.4f}" if v is not None else "" for v in (r, pr, dr, cl, pc, dc)]
        w.writerow([m.label, m.method, row.id, row.protocol, row.attack_id, f"{row.eps_255:g}", row.backbone,
                    c.dataset, c.sets, *cells, str(c.beyond(report.tolerance)).lower(), f"{report.tolerance:g}",
                    row.source.url, "; ".join(c.notes)])
    return buf.getvalue()


def flag_lines(report: CompareReport) -> list[str]:
    """One line per flagged comparison, for the terminal."""
    out = []
    for c in report.flagged():
        parts = [f"{kind} {_num(o)} vs {_num(t)} published ({_num(d, True)})"
                 for kind, o, t, d in zip(("robust", "clean"), c.ours, c.theirs, c.diffs)
                 if d is not None and abs(d) > report.tolerance + 1e-9]
        where = f"average of {c.sets} sets" if c.dataset == AVERAGE else c.dataset
        out.append(f"{c.match.label} / {where} vs {c.match.row.id}: {', '.join(parts)}")
    return out
