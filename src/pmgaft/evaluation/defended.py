"""Defended cells: the grid under a test-time defence (``pmgaft eval --defence NAME``), both threat models.

Per (model, dataset), after the undefended cells, the grid adds cells whose file stem ends in the defence:

* ``none_eps0_<defence>`` -- the defended classifier on clean images (always written: its clean accuracy, and
  under worst-case scoring the samples the attacks need);
* ``<attack>_eps<k>_<defence>`` -- **non-adaptive** (the defence paper's arithmetic): the attack runs on the
  undefended classifier to its final iterate (no early exit), the defence then runs on that image;
* ``<attack>_eps<k>_<defence>-adaptive`` -- **adaptive**: every adaptive attack of the defence
  (:mod:`pmgaft.defences.adaptive`) attacks the defended classifier. The attacker knows the defence and may also
  ignore it, so the non-adaptive attack's output (``transfer``) is one more candidate: a sample is robust only if
  it survives all of them (adaptive <= non-adaptive, sample by sample), and the card keeps each candidate's own
  number (``robust_accuracy_by_attack``).

How a randomized defence is scored: every prediction is the defended classifier's with the **evaluation's own
delta_0 draw** for that sample, keyed by the run seed and its dataset position (the same draw for its clean and
attacked images, whatever the batch or world size). The attacks never see that draw: the PGD start and the
adaptive attacks' EOT draws come from other streams. ``final`` scoring: robust = every attack's output is
classified right after the defence; ``worst``: and the clean image is too (only those samples are attacked).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from pmgaft.attacks import ATTACKS, pgd, sample_seeds
from pmgaft.attacks.losses import AttackLoss
from pmgaft.attacks.pgd import resolve_loss
from pmgaft.defences import DEFENCES, DefenceSpec, adaptive_settings, eot_pgd, stream_seeds
from pmgaft.errors import PmgaftError
from pmgaft.evaluation.distributed import Dist
from pmgaft.evaluation.engine import Autocast, Shard, _gathered, scoring_for
from pmgaft.evaluation.models import ModelSpec, _is_file
from pmgaft.evaluation.protocols import Protocol
from pmgaft.evaluation.results import Cell
from pmgaft.models import ZeroShotClassifier, hub_base_arch
from pmgaft.utils import lookup

TRANSFER = "the non-adaptive attack's output (an attacker who knows the defence may also ignore it)"
THREAT_MODELS = {False: "non-adaptive: the attack sees the undefended classifier, the defence runs on its output",
                 True: "adaptive: the attacks see the defended classifier; robust = survives every one of them"}
UNMODIFIED = ("clip", "none", "random-init")  # a model's method when its image tower is the original one
EVAL_STREAM = "defence"  # the random stream of the evaluation's own delta_0 draws
Progress = Callable[[int], None]


@dataclass(frozen=True)
class DefenceConfig:
    """A defence as the grid runs it: the registry name, its settings in image units (resolved and checked by
    :meth:`DefenceSpec.settings`), the EOT draws per adaptive attack step, and explicit reference weights for
    the tau of fine-tuned models (None: ``--pretrained``, then the starting weights a checkpoint records)."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    eot_samples: int = 4
    reference: str | None = None

    @classmethod
    def build(cls, name: str, *, eot_samples: int = 4, reference: str | None = None,
              **given: float | int | None) -> "DefenceConfig":
        spec: DefenceSpec = lookup(DEFENCES, name, "defence")
        if isinstance(eot_samples, bool) or int(eot_samples) != eot_samples or eot_samples < 1:
            raise PmgaftError(f"--eot-samples must be an integer >= 1 (noise draws per adaptive attack step), "
                              f"got {eot_samples}.")
        return cls(name, spec.settings(**given), int(eot_samples), reference)

    @property
    def spec(self) -> DefenceSpec:
        return DEFENCES[self.name]

    def key(self) -> dict[str, Any]:
        """What a defended cell's numbers depend on (beyond the model and the attack)."""
        return {"name": self.name, "settings": self.settings, "eot_samples": self.eot_samples,
                "adaptive": adaptive_settings()}

    def describe(self) -> dict[str, Any]:
        """The card's ``defence`` block (settings in image and 1/255 units)."""
        s = dict(self.settings)
        for unit in ("eps", "step_size"):
            if unit in s:
                s[f"{unit}_255"] = round(s[unit] * 255, 6)
        return {"name": self.name, "description": self.spec.description, **s,
                "noise": "delta_0 per sample, keyed by (seed, dataset position); the same draw for its clean and "
                         "attacked images"}


# --- the tau reference (the original CLIP image tower of a fine-tuned model) ---------------------------------

def reference_weights(spec: ModelSpec, config: DefenceConfig) -> tuple[str | None, str]:
    """(weights of the original image tower to load, or None for the model itself; where the choice came from)."""
    if not config.spec.uses_reference(config.settings):
        return None, "not used (the defence has no tau gate with these settings)"
    method = spec.method()["method"]
    if method in UNMODIFIED:
        return None, "the model itself (unmodified weights)"
    if spec.hub is not None and method == "unknown":
        return None, ("the model itself (the hub model records no fine-tuning; if it is a fine-tune, pass its base "
                      "weights with --ttc-reference TAG|PATH)")
    if config.reference:
        return config.reference, "--ttc-reference"
    if spec.text_pretrained:
        return spec.text_pretrained, "--pretrained (the checkpoint's base weights)"
    recorded = spec.record.pretrained
    if recorded and _loadable(spec, recorded):
        return recorded, "recorded in the checkpoint (its starting weights)"
    raise PmgaftError(f"{spec.label}: {config.name}'s tau needs the original CLIP image tower of this fine-tuned "
                      f"checkpoint{f' (it records {recorded!r}, not found)' if recorded else ''}: pass its base "
                      f"weights with --pretrained TAG|PATH or --ttc-reference TAG|PATH.")


def _loadable(spec: ModelSpec, weights: str) -> bool:
    if _is_file(weights):
        return Path(weights).expanduser().is_file()
    import open_clip

    return weights in open_clip.list_pretrained_tags_by_model(_base_arch(spec))


def _base_arch(spec: ModelSpec) -> str:
    """The architecture the reference tower is built as: the model's own, or for a hub model the open_clip
    architecture it was fine-tuned from."""
    if spec.hub is None:
        return spec.arch
    arch = hub_base_arch(spec.hub)
    if arch is None:
        raise PmgaftError(f"{spec.label}: tau needs the original CLIP image tower of this fine-tuned hub model, and "
                          f"neither the catalogue nor its weights name the architecture it was fine-tuned from: "
                          f"evaluate it with --checkpoint {spec.name} --model ARCH --ttc-reference TAG|PATH.")
    return arch


def reference_spec(spec: ModelSpec, config: DefenceConfig) -> ModelSpec | None:
    """The reference as a model spec (for preflight checks and loading); None: the model is its own reference."""
    weights, _ = reference_weights(spec, config)
    if weights is None:
        return None
    return ModelSpec(f"{spec.label}-tau-reference", _base_arch(spec), weights, is_checkpoint=_is_file(weights),
                     trust_checkpoint=spec.trust_checkpoint)


def reference_identity(spec: ModelSpec, config: DefenceConfig) -> dict[str, Any]:
    weights, source = reference_weights(spec, config)
    ref = reference_spec(spec, config)
    return {"weights": weights, "source": source, "sha256": ref.file_sha256 if ref else None}


@dataclass
class Reference:
    """A model's tau reference: the loaded original tower (None: the model itself) and, for its cards, which."""

    loaded: Any | None
    info: dict[str, Any]


class References:
    """Loads each reference tower once per grid run (fine-tunes of one base share it)."""

    def __init__(self) -> None:
        self._loaded: dict[str, Any] = {}

    def get(self, spec: ModelSpec, config: DefenceConfig, model_hash: str, device: str, seed: int) -> Reference:
        """The model's reference; the model itself when it is unmodified or the weights are the same."""
        info = reference_identity(spec, config)
        ref = reference_spec(spec, config)
        if ref is None:
            return Reference(None, info)
        if str(ref.pretrained) not in self._loaded:
            self._loaded[str(ref.pretrained)] = ref.load(device=device, seed=seed)
        loaded = self._loaded[str(ref.pretrained)]
        info["weights_hash"] = loaded.weights_hash
        if loaded.weights_hash == model_hash:
            return Reference(None, {**info, "source": info["source"] + "; the same weights as the model"})
        return Reference(loaded, info)


def reference_encoder(classifier: ZeroShotClassifier, clip_model: torch.nn.Module,
                      dtype: torch.dtype | None) -> Any:
    """The reference image tower with the classifier's own resize and normalization (and autocast)."""
    encoder = ZeroShotClassifier(clip_model, classifier.text_embeddings, image_size=classifier.image_size,
                                 normalization=(classifier.mean.flatten().tolist(), classifier.std.flatten().tolist()),
                                 logit_scale=classifier.logit_scale, antialias=classifier.antialias,
                                 ).eval().requires_grad_(False)
    return Autocast(encoder, dtype) if dtype is not None else encoder


def unwrappable_attack(protocol: Protocol, config: DefenceConfig | None) -> str | None:
    """The sentence refusing the protocol's attacks the defence cannot wrap (None: it wraps them all)."""
    if config is None:
        return None
    unwrappable = [a for a in protocol.attacks if not config.spec.can_wrap(ATTACKS[a])]
    if not unwrappable:
        return None
    wrappable = [n for n, a in ATTACKS.items() if config.spec.can_wrap(a) and not a.is_clean]
    keep = [a for a in protocol.attacks if a not in unwrappable]
    fix = f"--attacks {' '.join(keep)}" if keep else f"--attacks {' '.join(wrappable)}"
    return (f"--defence {config.name} cannot wrap {', '.join(unwrappable)}: its adaptive attacks re-run the "
            f"attack's PGD loss through the defence ({', '.join(wrappable)} only); pass {fix} or evaluate without "
            f"--defence")


def defence_problems(models: list[ModelSpec], protocol: Protocol, config: DefenceConfig | None) -> list[str]:
    """Attacks the defence cannot wrap, and models whose tau reference cannot be determined (preflight)."""
    if config is None:
        return []
    problems = [p for p in [unwrappable_attack(protocol, config)] if p]
    for spec in models:
        try:
            reference_spec(spec, config)
        except PmgaftError as err:
            problems.append(str(err))
    return problems


# --- the defended classifier on this rank's shard -----------------------------------------------------------

@dataclass
class _Outcome:
    pred: int
    tau: float
    counterattacked: bool


class DefendedShard:
    """This rank's share of one dataset under the defence: defended predictions, the clean pass, the cells."""

    def __init__(self, shard: Shard, config: DefenceConfig, reference: Any | None, seed: int, *,
                 reference_info: dict[str, Any] | None = None, cached_clean: dict[str, list] | None = None) -> None:
        self.shard, self.config, self.reference, self.seed = shard, config, reference, seed
        self.reference_info = reference_info  # for the card: which weights tau was computed with, and why
        self.model = getattr(shard.classifier, "_orig_mod", shard.classifier)  # eager: double backward, no compile
        self._clean = cached_clean  # a finished defended clean card's per-sample lists (--skip-existing)
        # (attack, eps, steps) -> position -> the defended outcome of the non-adaptive attack's output: computed by
        # the non-adaptive cell, reused as the adaptive cell's ``transfer`` candidate (the same deterministic image)
        self.transfer: dict[tuple[str, float, int], dict[int, _Outcome]] = {}

    def predict(self, x: torch.Tensor, positions: list[int]) -> list[_Outcome]:
        """The defended prediction of each image, with the evaluation's own delta_0 draw for its position."""
        out = self.config.spec(self.model, x, settings=self.config.settings, reference=self.reference,
                               seeds=stream_seeds(self.seed, positions, EVAL_STREAM))
        with torch.no_grad():
            pred = self.model(out.images).argmax(1).cpu().tolist()
        return [_Outcome(p, float(t), bool(c)) for p, t, c in
                zip(pred, out.tau.cpu().tolist(), out.counterattacked.cpu().tolist())]

    def clean(self, ranks: Dist, progress: Progress | None = None) -> dict[str, list]:
        """The defended clean pass over the whole subset, in dataset order (computed once)."""
        if self._clean is None:
            self._clean = self._clean_pass(ranks, progress)
        return self._clean

    def _clean_pass(self, ranks: Dist, progress: Progress | None) -> dict[str, list]:
        s = self.shard
        mine: dict[int, tuple] = {}
        for x, y, rows in s.decoded.batches(s.batch_size, device=s.device, pin_memory=s.device.type == "cuda"):
            positions = [s.positions[r] for r in rows.tolist()]
            for p, t, o in zip(positions, y.cpu().tolist(), self.predict(x, positions)):
                mine[p] = (t, o.pred, o.tau, o.counterattacked)
            if progress:
                progress(len(rows))
        merged = _gathered(mine, ranks)
        order = sorted(merged)
        rows = [merged[p] for p in order]
        return {"indices": order, "labels": [r[0] for r in rows], "clean_pred": [r[1] for r in rows],
                "clean_correct": [int(r[0] == r[1]) for r in rows], "clean_tau": [_round(r[2]) for r in rows],
                "clean_counterattacked": [int(r[3]) for r in rows]}


def _round(tau: float) -> float | None:
    return None if tau != tau else round(tau, 6)  # NaN (no gate) -> null


def defended_cell(ds: DefendedShard, cell: Cell, protocol: Protocol, ranks: Dist, *,
                  progress: Progress | None = None) -> tuple[dict[str, Any], dict[str, list]]:
    """Run one defended cell on this rank's share; returns (the card's fields, the per-sample lists)."""
    clean = ds.clean(ranks, progress=progress)
    spec = ATTACKS[cell.attack]
    scoring = scoring_for(spec, protocol)
    if spec.is_clean:
        outcomes: dict[str, list] = {}
        attacks: list[str] = []
    else:
        adaptive = ds.config.spec.adaptive_attacks(ds.config.settings) if cell.adaptive else []
        attacks = [a.name for a in adaptive] + ["transfer"]
        outcomes = _attack(ds, cell, spec.objective(protocol), clean, scoring, protocol, ranks, progress)
    return _fields_and_samples(ds, cell, protocol, scoring, clean, attacks, outcomes)


def _draws(ds: DefendedShard) -> int:
    return ds.config.eot_samples if ds.config.spec.randomized(ds.config.settings) else 1  # deterministic: 1 is exact


def _attack(ds: DefendedShard, cell: Cell, loss: str | AttackLoss, clean: dict[str, list], scoring: str,
            protocol: Protocol, ranks: Dist, progress: Progress | None) -> dict[int, dict[str, _Outcome]]:
    """position -> {attack name: the defended outcome of its output}, for the samples the scoring attacks;
    ``loss``: the attack's objective with the protocol's parameters bound (e.g. CW's capped kappa)."""
    s = ds.shard
    correct = dict(zip(clean["indices"], clean["clean_correct"]))
    rows = [r for r, p in enumerate(s.positions) if scoring == "final" or correct[p]]
    step_size = protocol.step_size / 255
    settings = ds.config.settings
    adaptive = ds.config.spec.adaptive_attacks(settings) if cell.adaptive else []
    transfer = ds.transfer.setdefault((cell.attack, cell.eps, cell.steps), {})
    mine: dict[int, dict[str, _Outcome]] = {}
    for start in range(0, len(rows), s.batch_size):
        chunk = rows[start:start + s.batch_size]
        x, y = s.fetch(chunk)
        positions = [s.positions[r] for r in chunk]
        starts = sample_seeds(protocol.seed, positions)  # the undefended attack's random starts
        found: dict[str, list[_Outcome]] = {}
        for a in adaptive:
            objective = a.objective(ds.model, resolve_loss(loss), settings, ds.reference)
            x_adv = eot_pgd(objective, x, y, eps=cell.eps, step_size=step_size, steps=cell.steps, draws=_draws(ds),
                            start_seeds=starts, draw_seeds=stream_seeds(protocol.seed, positions, f"eot:{a.name}"))
            found[a.name] = ds.predict(x_adv, positions)
        # the attack on the undefended classifier, run to its final iterate; the defence runs on that image
        if not all(p in transfer for p in positions):
            x_adv = pgd(s.classifier, x, y, eps=cell.eps, step_size=step_size, steps=cell.steps, loss=loss,
                        reduction=protocol.attack_reduction, sample_seeds=starts)
            transfer.update(zip(positions, ds.predict(x_adv, positions)))
        found["transfer"] = [transfer[p] for p in positions]
        for i, p in enumerate(positions):
            mine[p] = {name: outs[i] for name, outs in found.items()}
        if progress:
            progress(len(chunk))
    return _gathered(mine, ranks)


def _robust(scoring: str, clean_ok: int, preds: list[int], label: int) -> int:
    """Robust: every prediction right (and, under worst-case scoring, the clean one too)."""
    return int((scoring == "final" or bool(clean_ok)) and all(p == label for p in preds))


def _fields_and_samples(ds: DefendedShard, cell: Cell, protocol: Protocol, scoring: str, clean: dict[str, list],
                        attacks: list[str], outcomes: dict[int, dict[str, _Outcome]]
                        ) -> tuple[dict[str, Any], dict[str, list]]:
    """The card's fields and the per-sample lists of a defended cell (``attacks`` empty: the clean cell)."""
    labels, n, attacked = clean["labels"], len(clean["labels"]), len(outcomes)
    per_attack: dict[str, list[int]] = {a: [] for a in attacks}  # the defended prediction of each attack's output
    tau: dict[str, list] = {a: [] for a in attacks}
    for p, cp in zip(clean["indices"], clean["clean_pred"]):
        got = outcomes.get(p, {})  # not attacked (worst scoring, wrong when clean): its clean outcome stands
        for a in attacks:
            per_attack[a].append(got[a].pred if a in got else cp)
            tau[a].append(_round(got[a].tau) if a in got else None)
    candidates = [list(preds) for preds in zip(*per_attack.values())] if attacks else [[cp] for cp in
                                                                                       clean["clean_pred"]]
    robust = [_robust(scoring, c, preds, t) for c, preds, t in zip(clean["clean_correct"], candidates, labels)]
    adv_pred = [next((p for p in preds if p != t), preds[-1]) for preds, t in zip(candidates, labels)]
    spec, settings = ATTACKS[cell.attack], ds.config.settings
    attack = {"name": cell.attack, "id": cell.attack_id, "eps": cell.eps, "eps_255": cell.eps_255,
              "steps": cell.steps if spec.iterative else None, "scoring": scoring, "early_exit": False,
              "adaptive": cell.adaptive, **spec.describe(ds.shard.num_classes), **spec.loss_settings(protocol)}
    if spec.iterative:
        attack.update(step_size=protocol.step_size / 255, step_size_255=protocol.step_size,
                      reduction=protocol.attack_reduction)
    if attacks:
        attack["threat_model"] = THREAT_MODELS[cell.adaptive]
    if cell.adaptive:
        attack["adaptive_attacks"] = {**{a.name: {"description": a.description, "eot_samples": _draws(ds)}
                                         for a in ds.config.spec.adaptive_attacks(settings)},
                                      "transfer": {"description": TRANSFER}}
        attack["adaptive_settings"] = adaptive_settings()
    cost = ds.config.spec.cost(settings, ds.reference is not None)
    defended = attacked * len(attacks) if attacks else n  # the images this cell ran the defence on
    hits = {a: sum(o[a].counterattacked for o in outcomes.values()) / max(attacked, 1) for a in attacks}
    fields: dict[str, Any] = {
        "attack": attack,
        "defence": {**ds.config.describe(), "reference": ds.reference_info, "cost_per_image": cost,
                    "counterattacked": {"clean": sum(clean["clean_counterattacked"]) / max(n, 1), **hits}},
        "robust_correct": sum(robust), "robust_accuracy": sum(robust) / max(n, 1),
        "cost": {"samples_attacked": attacked,
                 "gradient_steps": attacked * cell.steps * sum(1 if a == "transfer" else _draws(ds) for a in attacks),
                 "images_defended": defended, "defence_forwards": cost["forwards"] * defended,
                 "defence_backwards": cost["backwards"] * defended}}
    samples = {**clean, "adv_pred": adv_pred, "robust_correct": robust}
    if cell.adaptive:
        fields["robust_accuracy_by_attack"] = {
            a: sum(_robust(scoring, c, [p], t) for c, p, t in zip(clean["clean_correct"], per_attack[a], labels))
            / max(n, 1) for a in attacks}
        samples.update({f"adv_pred_{a}": per_attack[a] for a in attacks})
        samples.update({f"adv_tau_{a}": tau[a] for a in attacks})
    elif attacks:
        samples["adv_tau"] = tau["transfer"]
    return fields, samples
