"""``pmgaft bench``: the JSON it writes, its FLOP counts, the released-recipe reference, the prototype variants.

No timing assertions: times only have to be positive and MFU plausible.
"""
from __future__ import annotations

import json

import pytest
import torch

from pmgaft.bench import (FORWARD_EQUIVALENTS, VARIANTS, apply_variants, counted_forward_flops,
                          forward_equivalents, per_image_costs, released_pmg_aft_step, vit_forward_flops)
from pmgaft.bench.harness import TEMPLATE, build_harness
from pmgaft.bench.profile import held_tensor_bytes, tensor_peak_bytes
from pmgaft.bench.timing import PeakMemory
from pmgaft.bench.train import TRAINABLE, build_step_context
from pmgaft.cli import main
from pmgaft.errors import PmgaftError
from pmgaft.methods import AttackSettings
from pmgaft.models import load_clip
from pmgaft.models.fast import PatchEmbedding
from pmgaft.training.step import train_step
from dataset_fixtures import save

# pmgaft-micro: 32 px, patch 8 -> 16 patches + class token = 17 tokens, width 32, MLP 128, 2 layers, proj 32x32
MICRO_F = 2 * 16 * (3 * 8 * 8) * 32 + 2 * (2 * 17 * 32 * (3 * 32 + 32) + 4 * 17 * 17 * 32
                                           + 2 * 17 * 32 * 128 * 2) + 2 * 32 * 32


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    for label, cls in enumerate(["cat", "dog"]):
        for i in range(3):
            save(root / "jpegs" / cls / f"{i}.jpg", label)
    out = root / "bench.json"
    code = main(["bench", "--model", "pmgaft-micro", "--method", "pmg_aft", "tecoa", "--batch-size", "2",
                 "--classes", "3", "--steps", "2", "--repeats", "2", "--warmup", "1", "--device", "cpu",
                 "--gemm-size", "256", "--what", "train,pgd,clean,data", "--dataset", f"folder:{root / 'jpegs'}",
                 "--workers", "0", "--data-images", "5", "--tensor-memory", "--json", str(out)])
    assert code == 0
    return json.loads(out.read_text())


def test_bench_json_has_the_documented_keys_and_sane_values(bench_json):
    assert bench_json["schema"] == "pmgaft.bench/1"
    assert bench_json["tower"] == {"forward_flops": MICRO_F, "counted_by": "analytic", "image_size": 32}
    peak = bench_json["gemm_peak"]["flops_per_s"]
    assert peak > 0 and bench_json["gemm_peak"]["size"] == 256
    m = bench_json["measurements"]
    assert set(m) == {"train:pmg_aft", "released:pmg_aft", "train:tecoa", "pgd", "clean", "data"}
    counts = {"train:pmg_aft": 2 * 2 + 7, "released:pmg_aft": 2 * 2 + 7, "train:tecoa": 2 * 2 + 3, "pgd": 2 * 2,
              "clean": 1}
    for key, fe in counts.items():
        r = m[key]
        assert r["step_seconds"] > 0 and len(r["samples"]) == 2 and len(r["warmup_seconds"]) == 1
        assert r["images_per_s"] == pytest.approx(2 / r["step_seconds"])
        assert r["forward_equivalents"] == fe
        assert r["useful_flops"] == fe * 2 * MICRO_F
        assert r["achieved_flops_per_s"] == pytest.approx(r["useful_flops"] / r["step_seconds"])
        assert 0 < r["mfu"] < 1.5 and r["mfu"] == pytest.approx(r["achieved_flops_per_s"] / peak)
        assert r["peak_memory_bytes"] > 0 and r["step_memory_bytes"] >= 0
    assert m["train:pmg_aft"]["loss"] > 0 and m["released:pmg_aft"]["loss"] > 0
    for key in ("train:pmg_aft", "released:pmg_aft", "train:tecoa"):
        assert m[key]["tensor_memory_bytes"] > m[key]["step_tensor_bytes"] > 0
    data = m["data"]
    assert data["images"] == 5 and data["seconds_per_image"] > 0 and data["mfu"] is None
    assert bench_json["comparisons"]["pmg_aft_speedup_vs_released"] > 0
    assert bench_json["comparisons"]["pmg_aft_memory_vs_tecoa"] > 0
    assert bench_json["comparisons"]["pmg_aft_tensor_memory_vs_tecoa"] > 1  # a frozen copy of the image tower
    # the released arithmetic also keeps a graph through the frozen model and its weight gradients
    assert 0 < bench_json["comparisons"]["pmg_aft_tensor_memory_vs_released"] < 1


def test_memory_against_the_released_code_reads_as_n_times_less():
    from pmgaft.bench.runner import describe

    assert describe("pmg_aft_tensor_memory_vs_released", 0.5) == (
        "pmg_aft_tensor_memory_vs_released: 0.500 (2.00x less than the released code's arithmetic)")
    assert describe("pmg_aft_tensor_memory_vs_tecoa", 1.5) == "pmg_aft_tensor_memory_vs_tecoa: 1.500"


def test_per_image_costs_from_the_bench_json(bench_json, tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bench_json))
    costs = per_image_costs(path)
    m = bench_json["measurements"]
    assert costs.pgd_step == pytest.approx(m["pgd"]["step_seconds"] / 2 / 2)
    assert costs.clean_forward == pytest.approx(m["clean"]["step_seconds"] / 2)
    assert costs.train_step == {"pmg_aft": pytest.approx(m["train:pmg_aft"]["step_seconds"] / 2),
                                "tecoa": pytest.approx(m["train:tecoa"]["step_seconds"] / 2)}
    assert costs.data == pytest.approx(m["data"]["seconds_per_image"]) and costs.source["model"] == "pmgaft-micro"
    with pytest.raises(PmgaftError, match="--what train,pgd,clean"):
        per_image_costs({"measurements": {"clean": m["clean"]}})


def test_reproduce_costs_its_plan_from_the_bench_json(bench_json, tmp_path, capsys):
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bench_json))
    costs = per_image_costs(path)
    argv = ["reproduce", "--data-root", str(tmp_path), "--methods", "clip", "tecoa", "pmg_aft",
            "--protocol", "tga-zsr", "--bench", str(path), "--dry-run"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "from pmgaft bench figures" in text and "pmgaft-micro on cpu" in text
    # training: seconds per image x TinyImageNet's 100,000 training images x 10 epochs (configs/pmg_aft.yaml)
    assert f"train pmg_aft   {costs.train_step['pmg_aft'] * 100_000 * 10 / 3600:8.2f} GPU-h" in text
    # evaluation (tga-zsr: PGD-100 at one eps), 3 models x 344,128 images x (clean forward + 100 PGD steps)
    eval_hours = 3 * 344_128 * (costs.clean_forward + 100 * costs.pgd_step) / 3600
    assert f"evaluate        {eval_hours:8.2f} GPU-h" in text
    # figures that lack a method being trained: a clear error, not a zero
    assert main([*argv[:5], "fare", *argv[5:]]) == 2
    assert "no training step for 'fare'" in capsys.readouterr().err


def test_data_loading_per_worker_on_imagenet_train(tmp_path, capsys):
    """ImageNet train (torchvision's layout) through AGFT's training transform, per worker count; the fastest
    count is what ``pmgaft reproduce`` costs data loading with."""
    from training_fixtures import imagenet_train

    root = imagenet_train(tmp_path / "data")  # 3 classes x 4 images, sorted by class on disk
    out = tmp_path / "bench.json"
    assert main(["bench", "--what", "data", "--dataset", "imagenet", "--data-root", str(root), "--data-split",
                 "train", "--data-transform", "train224", "--workers", "0", "2", "--data-images", "6",
                 "--batch-size", "2", "--repeats", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    m = json.loads(out.read_text())["measurements"]
    assert set(m) == {"data:w0", "data:w2"}
    for workers in (0, 2):
        r = m[f"data:w{workers}"]
        assert (r["workers"], r["images"], r["split"], r["transform"]) == (workers, 6, "train", "train224")
        rate = 6 / (r["seconds_per_image"] * 6)
        assert r["images_per_s_per_worker"] == pytest.approx(rate / max(workers, 1))
        assert f"data imagenet train (train224): {workers} worker(s) " in text
    assert per_image_costs({"measurements": {"pgd": {"step_seconds": 1, "batch_size": 1, "steps": 1},
                                             "clean": {"step_seconds": 1, "batch_size": 1}, **m}}).data == \
        min(r["seconds_per_image"] for r in m.values())
    assert main(["bench", "--what", "data", "--dataset", "imagenet", "--data-root", str(root), "--workers",
                 "-1"]) == 2
    assert "--workers takes one or more counts >= 0" in capsys.readouterr().err


def test_workers_needed_takes_a_measured_count_that_keeps_up_else_extrapolates_the_largest():
    """Per-worker throughput falls as workers are added: 2 workers at 100 images/s each, 8 at 50 each. A step
    of 300 images/s needs the measured 8 (400/s), not ceil(300 / 100) = 3; beyond every count, the largest
    count's rate per worker extrapolates."""
    from pmgaft.bench.results import Measurement
    from pmgaft.bench.runner import workers_needed

    def data(workers: int, per_worker: float) -> Measurement:
        return Measurement("data", 1, 1.0, [], [], 0.0, [], 0.0, extra={
            "workers": workers, "images_per_s_per_worker": per_worker,
            "seconds_per_image": 1 / (workers * per_worker)})

    measured = [data(8, 50.0), data(2, 100.0)]
    assert workers_needed(300.0, measured) == (8, "measured: 400.0 images/s")
    assert workers_needed(200.0, measured) == (2, "measured: 200.0 images/s")
    assert workers_needed(1000.0, measured) == (20, "extrapolated from 8 workers' 50.0 images/s each")


@pytest.mark.parametrize("model", ["pmgaft-micro", "pmgaft-tiny"])
def test_tower_flops_formula_matches_the_flop_counter(model):
    loaded = load_clip(model)
    analytic = vit_forward_flops(loaded.model.visual)
    assert analytic == counted_forward_flops(loaded.model.visual, loaded.image_size)
    if model == "pmgaft-micro":
        assert analytic == MICRO_F


def test_every_trainable_method_has_a_forward_count():
    assert set(TRAINABLE) <= set(FORWARD_EQUIVALENTS)
    assert forward_equivalents("pmg_aft", 10) == 27 and forward_equivalents("ft_clean", 10) == 3
    with pytest.raises(PmgaftError, match="FORWARD_EQUIVALENTS"):
        forward_equivalents("new_method", 2)


def _contexts(random_start: bool, method: str = "pmg_aft"):
    """Two step contexts with identical weights, their batch, the tokenized prompts."""
    harness = build_harness("pmgaft-micro", classes=4, device=torch.device("cpu"))
    ours, ref = (build_step_context(harness, method, attack_steps=2) for _ in range(2))
    for ctx in (ours, ref):
        ctx.attack = AttackSettings(eps=8 / 255, step_size=2 / 255, steps=2, random_start=random_start)
        ctx.optimizer.param_groups[0]["lr"] = 0.1  # a visible update
    x, y = harness.batch(3, seed=5)
    tokens = harness.loaded.tokenizer([TEMPLATE.format(c) for c in harness.classnames])
    return ours, ref, x, y, tokens


@pytest.mark.parametrize("random_start", [False, True])
def test_released_reference_computes_our_loss_and_update(random_start):
    ours, ref, x, y, tokens = _contexts(random_start)
    text_calls, original_grads = [], []
    assert ref.target.clip.transformer is ref.original.clip.transformer  # the frozen copy shares the text tower
    ref.target.clip.transformer.register_forward_hook(lambda *a: text_calls.append(1))

    def spy(visual, inputs, output):  # the original's weights require grad while the reference runs it
        if visual.conv1.weight.requires_grad:
            visual.conv1.weight.register_hook(lambda g: original_grads.append(g.abs().sum()))
    ref.original.clip.visual.register_forward_hook(spy)
    ours_terms = train_step(ours, 7, [(x, y, torch.arange(len(y)))]).terms
    ref_terms = released_pmg_aft_step(ref, 7, x, y, tokens)
    assert ref_terms.keys() == ours_terms.keys()
    for key in ours_terms:
        assert ref_terms[key] == pytest.approx(ours_terms[key], rel=1e-4, abs=1e-6), key
    for a, b in zip(ours.target.clip.visual.parameters(), ref.target.clip.visual.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # its arithmetic is the released code's: text tower in each of k + 3 forwards, a backward through the original
    assert len(text_calls) == 2 + 3
    assert len(original_grads) == 1 and original_grads[0] > 0
    assert not any(p.requires_grad or p.grad is not None for p in ref.original.clip.visual.parameters())


@pytest.mark.parametrize("method", ["pmg_aft", "fare"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_keeps_the_step_result(name, method):
    ours, patched, x, y, _ = _contexts(random_start=True, method=method)
    base = train_step(ours, 3, [(x, y, torch.arange(len(y)))]).terms
    towers = [patched.target.clip.visual, patched.original.clip.visual]
    with apply_variants([name], towers, patched):
        terms = train_step(patched, 3, [(x, y, torch.arange(len(y)))]).terms
    for key in base:
        assert terms[key] == pytest.approx(base[key], rel=1e-4, abs=1e-6), key
    for a, b in zip(ours.target.clip.visual.parameters(), patched.target.clip.visual.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6)  # (AdamW's first update is ~sign(g))
    # the patches are gone afterwards
    assert type(patched.target.clip.visual.conv1) is PatchEmbedding
    assert type(patched.method) is type(ours.method) and "image_features" not in vars(patched.original)
    assert getattr(patched.method, "lean", None) == getattr(ours.method, "lean", None)


def test_reuse_original_saves_one_original_forward_in_fare():
    _, ctx, x, y, _ = _contexts(random_start=True, method="fare")
    calls = []
    ctx.original.clip.visual.register_forward_hook(lambda *a: calls.append(1))
    train_step(ctx, 1, [(x, y, torch.arange(len(y)))])
    assert len(calls) == 2  # the attack's target and the loss's target, both original(x)
    with apply_variants(["reuse_original"], [], ctx):
        train_step(ctx, 2, [(x, y, torch.arange(len(y)))])
    assert len(calls) == 3


def test_peak_memory_sees_an_allocation():
    with PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB
        del block
    assert memory.peak_bytes - memory.baseline_bytes >= 48 * 2**20 or not memory.reset


def test_tensor_memory_counts_live_tensors():
    def work():
        a = torch.ones(2**20)  # 4 MiB
        b = torch.ones(2**20)  # live together: 8 MiB
        del a, b
        torch.ones(2**20)  # 4 MiB, after they are gone
    peak = tensor_peak_bytes(work)
    assert peak is None or 8 * 2**20 <= peak < 9 * 2**20
    layer = torch.nn.Linear(4, 3)
    layer(torch.ones(2, 4)).sum().backward()
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    optimizer.step()
    assert held_tensor_bytes(layer, optimizer, layer) == 3 * (4 * 3 + 3) * 4  # weights, grads, momentum; once


@pytest.mark.parametrize("argv, message", [
    (["--precision", "bf16", "--device", "cpu"], "needs a CUDA device"),
    (["--what", "data"], "needs --dataset"),
    (["--what", "train,trian"], "unknown --what"),
])
def test_bad_flags_fail_with_a_fix(argv, message, capsys):
    assert main(["bench", "--model", "pmgaft-micro", "--method", "tecoa", *argv]) == 2
    assert message in capsys.readouterr().err


def test_bench_times_the_defences_against_their_undefended_twins(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", "--model", "pmgaft-micro", "--batch-size", "2", "--classes", "3", "--steps", "1",
                 "--repeats", "1", "--warmup", "0", "--device", "cpu", "--gemm-size", "128", "--what", "defence",
                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    m = doc["measurements"]
    assert set(m) == {"defence:none", "defence:pgd", "defence:ttc", "defence:random-noise", "adaptive:e2e",
                      "adaptive:bpda", "adaptive:tau"}
    assert m["defence:ttc"]["forward_equivalents"] == 2 * 2 + 2 and m["defence:pgd"]["forward_equivalents"] == 2
    assert m["adaptive:e2e"]["forward_equivalents"] is None and m["adaptive:e2e"]["steps"] == 1
    c, seconds = doc["comparisons"], {k: v["step_seconds"] for k, v in m.items()}
    assert set(c) == {"ttc_vs_undefended", "random-noise_vs_undefended", "adaptive_e2e_vs_pgd", "adaptive_bpda_vs_pgd",
                      "adaptive_tau_vs_pgd"}
    assert c["ttc_vs_undefended"] == pytest.approx(seconds["defence:ttc"] / seconds["defence:none"])
    assert c["adaptive_e2e_vs_pgd"] == pytest.approx(seconds["adaptive:e2e"] / seconds["defence:pgd"])
