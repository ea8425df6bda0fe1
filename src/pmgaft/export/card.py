"""README.md of an exported hub folder: a Hugging Face model card.

YAML front matter as open_clip's own cards carry it (``library_name: open_clip``, ``pipeline_tag:
zero-shot-image-classification``, ``license``, ``tags``) plus ``base_model`` and the training ``datasets``; then
what the model is, how to load it, how it was built (activation, input size and normalization, logit scale),
the training recipe from the run's settings, and the evaluation results measured by pmgaft (clean and robust
accuracy per dataset, attack, eps and protocol, with the mean over sets).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pmgaft.export.facts import ModelFacts
from pmgaft.export.robustness import Measured

TAGS = ["clip", "adversarial-robustness", "zero-shot-adversarial-robustness", "pmgaft"]
# the recipe's headline settings, in the order the card lists them (eps and step sizes are in 1/255 units)
RECIPE_KEYS = ("method", "recipe", "model", "pretrained", "dataset", "eps", "step_size", "attack_steps", "epochs",
               "batch_size", "optimizer", "lr", "momentum", "weight_decay", "warmup_steps", "alpha", "beta",
               "precision", "seed")


def front_matter(facts: ModelFacts, license: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"library_name": "open_clip", "pipeline_tag": "zero-shot-image-classification",
                            "license": license, "tags": TAGS + ([facts.method] if facts.method else [])}
    if facts.base_model:
        meta["base_model"] = facts.base_model
    if facts.train_dataset:
        meta["datasets"] = [facts.train_dataset]
    return meta


def model_card(facts: ModelFacts, rows: list[Measured], robustness: dict[str, Any], *, hub_id: str | None,
               license: str, results: Path | None) -> str:
    """The whole README.md (``rows``: :func:`~pmgaft.export.robustness.measured`; ``robustness``: its
    :func:`~pmgaft.export.robustness.robustness_doc`)."""
    head = "---\n" + yaml.safe_dump(front_matter(facts, license), sort_keys=False, allow_unicode=True) + "---\n"
    parts = [head, f"# {facts.name}\n\n{_summary(facts)}\n", _usage(facts, hub_id), _details(facts),
             _recipe(facts), _evaluation(rows, robustness["entries"], results)]
    return "\n".join(parts)


def _eps(value: Any) -> str:
    return f"{float(value):g}/255" if isinstance(value, (int, float)) else str(value)


def _summary(facts: ModelFacts) -> str:
    from pmgaft import __version__

    c = facts.config
    if facts.method and facts.method != "none":
        what = (f"CLIP {facts.architecture} whose image encoder was adversarially fine-tuned with {facts.method}"
                + (f" (recipe {facts.recipe})" if facts.recipe else "")
                + (f" on {facts.train_dataset}" if facts.train_dataset else "")
                + (f", L-inf eps = {_eps(c['eps'])}" if "eps" in c else "")
                + (f", starting from {facts.base}" if facts.base else "") + ".")
    else:
        what = f"CLIP {facts.architecture} weights."
    step = f" (step {facts.step})" if facts.step is not None else ""
    return f"{what} Exported by pmgaft {__version__} from `{Path(facts.source).name}`{step}."


def _usage(facts: ModelFacts, hub_id: str | None) -> str:
    ref = f"hf-hub:{hub_id}" if hub_id else f"hf-hub:ORG/{facts.name}"
    return (f"## Usage\n\nWith open_clip (no pmgaft needed):\n\n```python\nimport open_clip\n\n"
            f"model, preprocess = open_clip.create_model_from_pretrained(\"{ref}\")\n"
            f"tokenizer = open_clip.get_tokenizer(\"{ref}\")\n```\n\n"
            f"With pmgaft (zero-shot robustness under the paper protocols):\n\n```bash\n"
            f"pmgaft eval --model {ref} --protocol paper\n```\n"
            + ("" if hub_id else "\n(`ORG`: the account the folder is uploaded to; a local copy loads as "
                                 "`local-dir:FOLDER`.)\n"))


def _details(facts: ModelFacts) -> str:
    def floats(v: tuple[float, ...]) -> str:
        return ", ".join(f"{x:.4g}" for x in v)

    scale = "CLIP's learned scale (exp(logit_scale))" if facts.logit_scale == "model" else f"{facts.logit_scale:g}"
    lines = [
        f"- Architecture: `{facts.architecture}` (the full open_clip config is `model_cfg` in "
        f"`open_clip_config.json`)",
        f"- Activation: {'QuickGELU (as OpenAI CLIP)' if facts.quick_gelu else 'GELU'} "
        f"(`quick_gelu: {str(facts.quick_gelu).lower()}`)",
        f"- Input: {facts.image_size} x {facts.image_size} px, mean ({floats(facts.mean)}), std ({floats(facts.std)}) "
        f"({facts.normalization} normalization)",
        f"- Zero-shot logit scale it was trained with: {scale}",
    ]
    if facts.base:
        lines.append(f"- Fine-tuned from: {facts.base}")
    lines += [f"- Weights: `open_clip_model.safetensors`; pmgaft weights hash `{facts.weights_hash}`",
              f"- Exported checkpoint: `{Path(facts.source).name}`, sha256 `{facts.source_sha256}`"]
    return "## Model details\n\n" + "\n".join(lines) + "\n"


def _recipe(facts: ModelFacts) -> str:
    from pmgaft.training.config import RUN_CONTROL

    c = facts.config
    if not c:
        return "## Training recipe\n\nThe checkpoint records no pmgaft training settings.\n"
    rows = [f"| {k} | {_eps(c[k]) if k in ('eps', 'step_size') else c[k]} |" for k in RECIPE_KEYS
            if c.get(k) is not None]
    settings = {k: v for k, v in c.items() if k not in RUN_CONTROL}
    return ("## Training recipe\n\nTrained with `pmgaft train`; eps and the attack step are L-inf radii in 1/255 "
            "units.\n\n| setting | value |\n|---|---|\n" + "\n".join(rows)
            + "\n\nEvery setting that determines the weights (the run's `config.yaml`):\n\n```yaml\n"
            + yaml.safe_dump(settings, sort_keys=False) + "```\n")


def _evaluation(rows: list[Measured], entries: list[dict[str, Any]], results: Path | None) -> str:
    if not rows:
        where = f" in `{results}`" if results is not None else ""
        return (f"## Evaluation\n\nNo pmgaft evaluation results were found for these weights{where}: evaluate "
                f"them (`pmgaft eval --checkpoint ...`) and export again.\n")
    out = ["## Evaluation\n\nZero-shot accuracy (%) of these weights (no test-time defence) measured by pmgaft, clean "
           "and under attack (eps: L-inf radius); `robustness.json` holds the same numbers in RobustBench's field "
           "names (`reported: false`: measured, not claimed).\n"]
    for protocol in dict.fromkeys(r.protocol for r in rows):
        mine = [r for r in rows if r.protocol == protocol]
        lines = [f"### Protocol `{protocol}`\n", "| dataset | split | n | attack | eps | scoring | clean | robust |",
                 "|---|---|---:|---|---|---|---:|---:|"]
        lines += [f"| {r.dataset} | {r.split} | {r.n} | {r.attack} | {'-' if r.is_clean else r.eps} | "
                  f"{r.scoring} | {100 * r.clean:.2f} | {'-' if r.is_clean else f'{100 * r.robust:.2f}'} |"
                  for r in mine]
        for e in entries:  # the mean over sets, as robustness.json states it
            if e["protocol"] == protocol and len(e["per_dataset"]) > 1:
                robust = e.get("autoattack_acc", e.get("robust_acc"))
                lines.append(f"| **mean of {len(e['per_dataset'])} sets** | | | {e['attack']} | {e['eps']} | | "
                             f"**{e['clean_acc']:.2f}** | **{robust:.2f}** |")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)
