"""``pmgaft eval --protocol X --dry-run``: what a protocol scores, per dataset, before any GPU hour is spent.

Per dataset: the split, the number of images (counted on disk when the data is there, else the standard count
of the official layout; both after a protocol's class merge or drop; with ``--source hub``/``auto``, the hub
copy's split and count, or why it is refused), the preprocessing before the attack (at the model's input size),
the prompt template(s), where the class names come from and any label merge/drop; then the attacks, eps, scoring
and logits. Check it against the paper you compare with.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pmgaft.data import DATASETS, HUB_SOURCES, describe_transform, load_dataset
from pmgaft.data.hub_sources import WDS
from pmgaft.data.sources import DEFAULT_SOURCE, choose_source
from pmgaft.errors import PmgaftError
from pmgaft.evaluation.defended import DefenceConfig
from pmgaft.evaluation.grid import cells_for
from pmgaft.evaluation.protocols import Protocol
from pmgaft.prompts import Prompts, get_prompts
from pmgaft.prompts.styles import get_style


def _image_size(model: str | None) -> int:
    if not model:
        return 224
    from pmgaft.evaluation.grid import _image_size as size
    from pmgaft.models import register_model_configs

    register_model_configs()
    return size(model)


def _count(name: str, split: str, data_root: Path, protocol: Protocol, source: str,
           prompts: Prompts | None) -> tuple[int | None, str]:
    """Images scored: the hub copy's count, counted on disk when the data is there, else the standard count; the
    last two after the prompt style's label map (a dropped class's images are not scored)."""
    spec = DATASETS.get(name)
    label_map = prompts.label_map if prompts is not None else None
    if spec is not None and source != DEFAULT_SOURCE and not spec.offline:
        choice = choose_source(spec, split, data_root, source, benchmark_split=protocol.benchmark_splits,
                               who=f"protocol {protocol.name!r}", prompts=protocol.prompts)
        if choice.source == "hub":
            hub = HUB_SOURCES[name].split_for(split, protocol.benchmark_splits)
            before = " (before the label map's drop)" if label_map is not None and None in label_map else ""
            return hub.size, f"hub copy {HUB_SOURCES[name].repo}: {hub.description}{before}"  # type: ignore[union-attr]
        if choice.source is None:
            return None, f"not readable with --source {source}: {choice.why_not}"
    if spec is not None and spec.locate(data_root, split) is not None:
        try:
            ds = load_dataset(name, data_root, split)
            return len(ds.relabel(label_map, prompts.classnames) if label_map is not None else ds), "on disk"
        except PmgaftError:
            pass
    dropped = sum(t is None for t in label_map) if label_map is not None else 0
    return (spec.size_without(split, dropped) if spec is not None else None), "standard"


def plan_rows(protocol: Protocol, *, model: str | None, data_root: Path,
              source: str = DEFAULT_SOURCE) -> list[dict[str, Any]]:
    """One row per dataset: what :func:`print_plan` shows."""
    size = _image_size(model)
    rows = []
    for name in protocol.datasets:
        split = protocol.split_for(name)
        prompts: Prompts | None = None
        try:
            prompts = get_prompts(name, protocol.prompts)
            templates = prompts.templates
            prompt = templates[0] if len(templates) == 1 else f"{len(templates)} templates, e.g. {templates[0]!r}"
            names = f"{prompts.names_source}; e.g. {', '.join(prompts.classnames[:2])}"
        except PmgaftError as err:
            prompt, names = "-", str(err).split(":")[0]
        total, where = _count(name, split, data_root, protocol, source, prompts)
        n = protocol.samples_for(name)
        scored = total if n is None or total is None else min(n, total)
        if where.startswith("hub copy") and get_style(protocol.prompts).uses_shipped_text \
                and HUB_SOURCES[name].format == WDS:
            prompt = names = "the hub copy's own (classnames.txt, zeroshot_classification_templates.txt)"
        unknown = where if where.startswith("not readable") else "unknown without the data"
        rows.append({"dataset": name, "split": split, "images": scored, "count": where if total is not None else
                     unknown, "subset": n,
                     "preprocessing": describe_transform(DATASETS.get(name), protocol.transform, size),
                     "prompt": prompt, "names": names, "labels": prompts.label_note if prompts else ""})
    return rows


def print_plan(protocol: Protocol, *, model: str | None = None, data_root: Path = Path("data"),
               source: str = DEFAULT_SOURCE, defence: DefenceConfig | None = None) -> None:
    rows = plan_rows(protocol, model=model, data_root=data_root, source=source)
    print(f"protocol {protocol.name}: {protocol.description}")
    norm = protocol.normalization or "each model's own (clip when not recorded)"
    scale = protocol.logit_scale if protocol.logit_scale is not None else "each model's own (model when not recorded)"
    resize = "antialiased (torchvision's tensor Resize)" if protocol.resize_antialias else "plain interpolate"
    print(f"  normalization: {norm}; logit scale: {scale}; scoring: {protocol.scoring}; PGD objective: "
          f"{protocol.attack_reduction}; seed {protocol.seed}; model input {_image_size(model)} px; inner bicubic "
          f"resize: {resize}" + (f"; CW margin capped at kappa = {protocol.cw_kappa:g}"
                                 if protocol.cw_kappa is not None else ""))
    if protocol.averaged is not None:
        print(f"  average: the plain mean over {len(protocol.averaged)} sets ({', '.join(protocol.averaged)})")
    if defence is not None:
        settings = ", ".join(f"{k} {v * 255:g}/255" if f"{k}_255" in defence.describe() else f"{k} {v:g}"
                             for k, v in defence.settings.items())
        print(f"  defence: {defence.name} ({defence.spec.description}; {settings}); every attack cell also "
              f"non-adaptive and adaptive, {defence.eot_samples} EOT draws per adaptive step")
    cells = cells_for("m", protocol.datasets[0], protocol, defence) if protocol.datasets else []
    print(f"  cells per model and dataset: {', '.join(f'{c.stem()}' for c in cells)}\n")
    for r in rows:
        images = f"{r['images']:,}" if r["images"] is not None else "?"
        subset = f" (subset of {r['subset']:,})" if r["subset"] else ""
        print(f"{r['dataset']}: split {r['split']}, {images} images{subset} [{r['count']}]")
        print(f"    preprocessing: {r['preprocessing']}")
        print(f"    prompt: {r['prompt']}")
        print(f"    class names: {r['names']}")
        if r["labels"]:
            print(f"    labels: {r['labels']}")
    known = [r["images"] for r in rows if r["images"] is not None]
    print(f"\n{sum(known):,} images per model over {len(known)} of {len(rows)} datasets"
          + ("" if len(known) == len(rows) else " (the others' counts depend on the data on disk)"))
