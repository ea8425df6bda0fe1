"""The agft and ttc protocols' specification: dry-run listings, prompt styles, label maps, the capped CW margin,
AGFT's "AA", protocol averages in tables, and their bad flags (the golden images/logits are in
test_protocols_golden.py)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from dataset_fixtures import FIXTURES
from pmgaft.attacks import ATTACKS, margin, pgd
from pmgaft.cli import main
from pmgaft.data import load_dataset
from pmgaft.evaluation.dryrun import plan_rows
from pmgaft.evaluation.protocols import PROTOCOLS
from pmgaft.evaluation.tables import build_tables, to_csv, to_markdown
from pmgaft.prompts import get_prompts
from pmgaft.prompts._sources import data_json

R224, R256 = "Resize(224, bilinear) + CenterCrop(224)", "Resize(256, bilinear) + CenterCrop(224)"
NATIVE32 = "native 32x32 (the model resizes inside, bicubic)"
NATIVE96 = "native 96x96 (the model resizes inside, bicubic)"
PHOTO, A_PHOTO = "This is a photo of a {}.", "A photo of a {}."
# (dataset, split, images, preprocessing, template): AGFT's main.py sets, utils.py transforms, clip_dataset.py prompts
AGFT = [("caltech101", "all", 8_677, R224, A_PHOTO), ("caltech256", "all", 30_607, R224, A_PHOTO),
        ("cifar10", "test", 10_000, NATIVE32, PHOTO), ("cifar100", "test", 10_000, NATIVE32, PHOTO),
        ("dtd", "test", 1_880, R224, "A surface with a {} texture."),
        ("eurosat", "all", 27_000, R224, "A centered satellite photo of {}."),
        ("fgvc_aircraft", "test", 3_333, R224, "A photo of a {}, a type of aircraft."),
        ("flowers102", "test", 6_149, R224, "A photo of a {}, a type of flower."),
        ("food101", "test", 25_250, R224, "A photo of {}, a type of food."), ("imagenet", "test", 50_000, R224, PHOTO),
        ("oxford_pets", "test", 3_669, R224, "A photo of a {}, a type of pet."), ("pcam", "test", 32_768, R224, "{}"),
        ("stanford_cars", "test", 8_041, R224, A_PHOTO), ("stl10", "test", 8_000, NATIVE96, PHOTO),
        ("sun397", "all", 108_754, R224, PHOTO)]
# TTC's utils.py DATASETS order (tinyImageNet left out), every set R256/C224, ImageNet without n03710637's 50 images
TTC = [("cifar10", "test", 10_000, PHOTO), ("cifar100", "test", 10_000, PHOTO), ("stl10", "test", 8_000, PHOTO),
       ("imagenet", "test", 49_950, PHOTO), ("caltech101", "all", 8_677, PHOTO), ("caltech256", "all", 30_607, A_PHOTO),
       ("oxford_pets", "test", 3_669, "A photo of a {}, a type of pet."),
       ("flowers102", "test", 6_149, "A photo of a {}, a type of flower."),
       ("fgvc_aircraft", "test", 3_333, "A photo of a {}, a type of aircraft."),
       ("stanford_cars", "test", 8_041, A_PHOTO), ("sun397", "all", 108_754, PHOTO),
       ("country211", "test", 21_100, "A photo I took in {}."),
       ("food101", "test", 25_250, "A photo of {}, a type of food."),
       ("eurosat", "all", 27_000, PHOTO), ("dtd", "test", 1_880, "A surface with a {} texture."),
       ("pcam", "test", 32_768, "{}")]


def _listing(protocol: str, tmp_path: Path, capsys, *extra: str) -> str:
    assert main(["eval", "--protocol", protocol, "--dry-run", "--data-root", str(tmp_path), *extra]) == 0
    return capsys.readouterr().out


def test_agft_dry_run_lists_exactly_its_specification(tmp_path, capsys):
    rows = plan_rows(PROTOCOLS["agft"], model=None, data_root=tmp_path)
    assert [(r["dataset"], r["split"], r["images"], r["preprocessing"], r["prompt"]) for r in rows] == AGFT
    assert {r["dataset"]: r["labels"] for r in rows if r["labels"]} == {
        "caltech101": "'Faces' and 'Faces_easy' scored as one class 'person' (100 classes)"}
    text = _listing("agft", tmp_path, capsys)
    for line in ("normalization: clip; logit scale: 100.0; scoring: final; PGD objective: sum",
                 "inner bicubic resize: antialiased (torchvision's tensor Resize); CW margin capped at kappa = 0",
                 "cells per model and dataset: pgd20_eps1, cw20_eps1, apgd-ce-dlr-eot_eps1",
                 f"average: the plain mean over 15 sets ({', '.join(r[0] for r in AGFT)})",
                 "e.g. person, leopards", "e.g. Boeing 707-320, Boeing 727-200", "e.g. AM General Hummer SUV, Acura RL",
                 f"{sum(r[2] for r in AGFT):,} images per model over 15 of 15 datasets"):
        assert line in text, line


def test_ttc_dry_run_lists_exactly_its_specification(tmp_path, capsys):
    rows = plan_rows(PROTOCOLS["ttc"], model=None, data_root=tmp_path)
    assert [(r["dataset"], r["split"], r["images"], r["preprocessing"], r["prompt"]) for r in rows] == [
        (d, split, n, R256, template) for d, split, n, template in TTC]
    assert {r["dataset"]: r["labels"] for r in rows if r["labels"]} == {
        "imagenet": "the duplicate 'maillot' class n03710637 and its images dropped (999 classes)"}
    text = _listing("ttc", tmp_path, capsys)
    for line in ("normalization: clip; logit scale: 100.0; scoring: final; PGD objective: sum",
                 "inner bicubic resize: plain interpolate; CW margin capped at kappa = 50",
                 "cells per model and dataset: pgd10_eps1, cw10_eps1, apgd-ce-dlr_eps1",
                 "average: the plain mean over 16 sets", "e.g. person, person", "e.g. AnnualCrop, Forest",
                 "e.g. This is a photo of a healthy lymph node tissue., This is a photo of a lymph node tumor tissue.",
                 f"{sum(r[2] for r in TTC):,} images per model over 16 of 16 datasets"):
        assert line in text, line


def test_dry_run_counts_the_label_map_on_disk_and_the_eps_and_attack_overrides(tmp_path, capsys):
    FIXTURES["caltech101"](tmp_path)  # 'Faces' and 'accordion' folders only: AGFT's 101-class label map cannot fit
    text = _listing("agft", tmp_path, capsys, "--datasets", "caltech101", "country211", "--eps", "1", "2", "4",
                    "--attacks", "pgd", "cw", "autoattack")
    assert "caltech101: split all, 8,677 images [standard]" in text  # the files do not fit: the standard count
    assert "country211: split test, 21,100 images [standard]" in text and "A photo I took in {}." in text
    assert ("cells per model and dataset: pgd20_eps1, pgd20_eps2, pgd20_eps4, cw20_eps1, cw20_eps2, cw20_eps4, "
            "autoattack_eps1, autoattack_eps2, autoattack_eps4") in text
    FIXTURES["country211"](tmp_path)
    assert "country211: split test, 4 images [on disk]" in _listing("ttc", tmp_path, capsys, "--datasets", "country211")


def test_relabel_merges_and_drops_on_an_unchanged_dataset(tmp_path):
    FIXTURES["cifar10"](tmp_path)  # test labels [0, 1, 2, 1]
    ds = load_dataset("cifar10", tmp_path, "test")
    view = ds.relabel([0, 0, None, 1, 2, 3, 4, 5, 6, 7], [f"c{i}" for i in range(8)])  # 1 -> 0, drop 2
    assert view.targets == [0, 0, 0] and len(view) == 3 and view.classes[0] == "c0" and view.raw_classes == ds.classes
    assert torch.equal(view[2][0], ds[3][0]) and ds.targets == [0, 1, 2, 1]  # the data itself is unchanged
    with pytest.raises(Exception, match="does not fit"):
        ds.relabel([0, 1], ["a", "b"])


def test_reference_style_rules():
    agft = {d: get_prompts(d, "agft") for d in PROTOCOLS["agft"].datasets}
    assert agft["fgvc_aircraft"].classnames[:2] == ["Boeing 707-320", "Boeing 727-200"]  # case kept, no refine
    assert agft["stanford_cars"].classnames[0] == "AM General Hummer SUV"  # label[:-5], case kept
    assert agft["imagenet"].classnames[2] == "great white shark"  # '_' -> ' ', case kept
    assert {"ball moss", "colts foot", "pink yellow dahlia"} <= set(agft["flowers102"].classnames)
    assert agft["pcam"].classnames == ["This is a photo of healthy lymph node tissue.",
                                       "This is a photo of lymph node tumor tissue."]
    raw = ["apple", "aquarium_fish", *[f"c{i}" for i in range(98)]]  # TTC: torchvision's names, not refined
    assert get_prompts("cifar100", "ttc", classnames=raw).texts()[1] == ["This is a photo of a aquarium_fish."]
    assert get_prompts("cifar100", "agft", classnames=raw).texts()[1] == ["This is a photo of a aquarium fish."]
    for style, bolivia in (("ttc", "Bolivia, Plurinational State of"), ("agft", "Bolivia")):  # TeCoA's full name
        codes = data_json(style)["datasets"]["country211"]["codes"]
        assert codes == sorted(codes) and len(set(codes)) == 211 and {"AD", "FR", "XK"} <= set(codes)
        assert get_prompts("country211", style).classnames[codes.index("BO")] == bolivia


def test_capped_margin_equals_agft_and_ttc_losses():
    """(AGFT takes its 'best other' logit as max((1 - onehot) * z), which is 0 when every other logit is negative,
    as in the last row; pmgaft takes the max over the other classes: a documented difference.)"""
    z = torch.tensor([[3.0, 1.0, 2.5], [0.0, 4.0, -1.0], [-2.0, -3.0, -1.5]])
    y = torch.tensor([0, 0, 2])
    true, other = z.gather(1, y[:, None]).squeeze(1), torch.tensor([2.5, 4.0, -2.0])
    assert torch.equal(margin(z, y), other - true)
    assert torch.equal(margin(z, y, kappa=0.0), -(true - other).clamp(min=-0.0))  # AGFT's -f(), kappa = 0
    assert torch.allclose(margin(z, y, kappa=50.0) - 50.0, -torch.relu(true - other + 50.0))  # TTC's, up to 50


def test_capped_margin_stops_a_fooled_sample():
    """Once the best wrong logit leads by kappa, the capped CW gradient is 0: the iterate stays where it is."""
    w = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    model = lambda x: x.flatten(1)[:, :2] @ w  # noqa: E731  (logits: a fixed linear map of two pixels)
    x = torch.full((1, 1, 1, 4), 0.5)
    x[0, 0, 0, 1] = 0.9  # class 1 leads by 0.8 while the label is 0: already fooled
    y = torch.tensor([0])
    capped = pgd(model, x, y, eps=0.1, step_size=0.05, steps=4, loss=lambda o, t: margin(o, t, kappa=0.0),
                 random_start=False)
    assert torch.equal(capped, x)
    assert not torch.equal(pgd(model, x, y, eps=0.1, step_size=0.05, steps=4, loss="cw", random_start=False), x)


@pytest.mark.parametrize("num_classes, attacks", [(3, ["apgd-ce", "apgd-dlr"]), (2, ["apgd-ce"])])
def test_agft_aa_is_ten_iteration_apgd_ce_dlr_with_eot(num_classes, attacks):
    spec = ATTACKS["apgd-ce-dlr-eot"]
    assert not spec.iterative and spec.scorings == ("worst",)
    torch.manual_seed(0)
    w = torch.randn(12, num_classes)
    model = lambda x: 20 * x.flatten(1) @ w  # noqa: E731
    x, y = torch.rand(6, 3, 2, 2), torch.arange(6) % num_classes
    x_adv, info = spec(model, x, y, eps=8 / 255, step_size=0, steps=0, seed=0)
    assert info == {"attacks": attacks, "n_target_classes": num_classes - 1, "version": "agft", "norm": "Linf",
                    "apgd_n_iter": 10, "apgd_eot_iter": 20, "apgd_restarts": 1}
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert spec.describe(num_classes) == info and ATTACKS["apgd-ce-dlr"].describe(3)["apgd_n_iter"] == 100


def test_reduced_autoattacks_run_their_iterations_and_eot_gradients():
    """A model no perturbation can fool: every APGD iteration runs on every image, so the gradient evaluations
    count the settings -- (iterations + 1) x EOT draws per attack, APGD-CE then APGD-DLR."""
    calls = []

    def model(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.requires_grad and torch.is_grad_enabled())
        return torch.tensor([[5.0, 0.0, -5.0]]).repeat(len(x), 1) + 0 * x.flatten(1).sum(1, keepdim=True)

    x, y = torch.rand(4, 3, 2, 2), torch.zeros(4, dtype=torch.long)
    for name, per_attack in (("apgd-ce-dlr-eot", (10 + 1) * 20), ("apgd-ce-dlr", (100 + 1) * 1)):
        calls.clear()
        x_adv, _ = ATTACKS[name](model, x, y, eps=1 / 255, step_size=0, steps=0, seed=0)
        assert sum(calls) == 2 * per_attack, name
        assert torch.equal(x_adv, x)


def _card(dataset: str, robust: float, protocol: dict | None) -> dict:
    return {"attack": {"id": "pgd20", "eps_255": 1.0, "scoring": "final"}, "dataset": {"name": dataset},
            "model": {"label": "agft-imagenet", "train_dataset": "imagenet"}, "robust_accuracy": robust,
            "clean_accuracy": 0.5, "config": {"protocol": protocol or {"name": "tga-zsr", "averaged": None}}}


def test_tables_add_the_protocols_own_average():
    """AGFT's mean keeps ImageNet even for a model fine-tuned on it; pmgaft's zero-shot average drops it."""
    protocol = PROTOCOLS["agft"].to_dict()
    cards = [_card("imagenet", 0.4, protocol), _card("cifar10", 0.2, protocol), _card("pcam", 0.3, protocol)]
    (table,) = build_tables(cards)
    md, csv = to_markdown(table), to_csv(table)
    assert "| **average (zero-shot)** | **25.00/50.00** (2) |" in md
    assert "| **average (agft protocol, 15 sets)** | **30.00/50.00** (3) |" in md
    assert "average_agft,30.00,50.00" in csv and "average_zero_shot,25.00,50.00" in csv
    (plain,) = build_tables([_card("cifar10", 0.2, None)])
    assert "protocol" not in to_markdown(plain) and not plain.protocol_sets


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_bad_cw_kappa_is_one_sentence_before_any_work(tmp_path, capsys, value):
    rc = main(["eval", "--protocol", "agft", "--cw-kappa", value, "--model", "no-such-model", "--out",
               str(tmp_path / "out"), "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 2 and "--cw-kappa" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unknown_protocol_is_refused_by_the_parser(capsys):
    assert main(["eval", "--protocol", "agft2", "--dry-run"]) == 2
    assert "invalid choice: 'agft2' (choose from 'paper', 'tga-zsr', 'official-code', 'fare', 'agft', 'ttc')" in \
        capsys.readouterr().err


def test_cw_kappa_flag_overrides_and_is_recorded():
    from argparse import ArgumentParser

    from pmgaft.evaluation import cli

    parser = ArgumentParser()
    cli.add_arguments(parser)
    p = cli.resolve_protocol(parser.parse_args(["--protocol", "ttc", "--cw-kappa", "5"]))
    assert p.cw_kappa == 5.0 and p.to_dict()["cw_kappa"] == 5.0 and PROTOCOLS["ttc"].cw_kappa == 50.0
    assert ATTACKS["cw"].loss_settings(p) == {"kappa": 5.0} and ATTACKS["cw"].loss_settings(PROTOCOLS["paper"]) == {}
    assert ATTACKS["pgd"].loss_settings(p) == {} and math.isclose(PROTOCOLS["agft"].cw_kappa, 0.0)
    assert json.loads(json.dumps(p.to_dict()))["averaged"] == list(PROTOCOLS["ttc"].averaged)


def test_ttc_prompts_are_torchvision_names_on_a_hub_copy_and_sun397_is_refused_one(tmp_path, monkeypatch, capsys):
    """TTC prompts the torchvision loaders' names verbatim ('aquarium_fish'); a CLIP_benchmark hub copy spells its
    classes its own way ('aquarium fish'). CIFAR keeps TTC's text on the copy; SUN397, whose raw names pmgaft has
    no copy of, refuses the hub copy before any work instead of prompting with the copy's names."""
    from hub_data_fixtures import offline_hub, wds_files, write_repo
    from test_hub_data import sized

    from pmgaft.data import HUB_SOURCES
    from pmgaft.prompts import curated_classnames

    hub = offline_hub(monkeypatch, tmp_path / "hf")
    for name, n in (("cifar100", 3), ("sun397", 2)):
        names = curated_classnames(name)  # CLIP_benchmark's spelling: '_' and '/' as spaces
        assert "aquarium fish" in names or "apartment building outdoor" in names
        write_repo(hub, HUB_SOURCES[name].repo, wds_files(names, ["a photo of a {c}."],
                                                          {"test": [(t, "png") for t in range(n)]}))
        sized(monkeypatch, name, n)
    out = tmp_path / "out"
    argv = ["eval", "--protocol", "ttc", "--model", "pmgaft-micro", "--attacks", "none", "--source", "hub",
            "--data-root", str(tmp_path / "data"), "--out", str(out), "--no-progress", "--device", "cpu"]
    assert main([*argv, "--datasets", "cifar100"]) == 0
    card = json.loads((out / "pmgaft-micro" / "cifar100" / "none_eps0.json").read_text())
    assert card["dataset"]["source"].startswith("hub:") and card["prompts"]["classnames"][1] == "aquarium_fish"
    assert card["prompts"]["classnames"] == get_prompts("cifar100", "ttc").classnames
    capsys.readouterr()
    assert main([*argv, "--datasets", "sun397", "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert "protocol 'ttc' writes sun397's prompts with the torchvision loader's own class names (prompt style " \
           "'ttc'), which its hub copy clip-benchmark/wds_sun397 does not carry" in err and "Traceback" not in err
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").rglob("*.json"))
    assert main([*argv, "--datasets", "sun397", "--dry-run"]) == 0
    assert "sun397: split all, ? images [not readable with --source hub: protocol 'ttc' writes sun397's" in \
        capsys.readouterr().out
    raw = [f"c{i}/outdoor" for i in range(397)]  # on the torchvision copy: the loader's names, verbatim
    assert get_prompts("sun397", "ttc", classnames=raw).classnames[:2] == ["c0/outdoor", "c1/outdoor"]
