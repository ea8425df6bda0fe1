"""Published numbers: the data file's schema and values, `pmgaft published`, and `pmgaft report --compare` on a
results folder of ViT-B-32 cards (made from a real card, as test_report.py does)."""
from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest

from eval_fixtures import cards
from pmgaft.cli import main
from pmgaft.data import DATASETS
from pmgaft.evaluation.protocols import PROTOCOLS
from pmgaft.evaluation.published import parse_published, published_document, published_rows
from pmgaft.evaluation.results import Cell
from pmgaft.methods import METHODS

ROUNDING = 0.01  # per-set values and averages are printed to 0.01: their means agree within that


def _row(row_id: str):
    return next(r for r in published_rows() if r.id == row_id)


# --- the data file -------------------------------------------------------------------------------------------

def test_every_row_names_real_protocols_attacks_datasets_and_methods():
    rows = published_rows()
    assert len(rows) >= 18
    for r in rows:
        assert r.protocol in PROTOCOLS, r.id
        assert set(r.datasets) <= set(DATASETS), r.id
        base, _, defence = r.method.partition("+")
        assert base in set(METHODS) | {"clip", "ft_adv"} and defence in ("", "ttc", "random-noise"), r.id
        assert r.backbone == "ViT-B-32" and r.weights == "openai" and r.source.url.startswith("https://")
        assert r.train_dataset in (None, "tinyimagenet")


def test_spot_values_match_the_sources():
    clip = _row("tga-zsr/clip")
    assert (clip.robust["tinyimagenet"], clip.clean["tinyimagenet"]) == (0.88, 57.26)
    assert (clip.average.robust, clip.average.clean, len(clip.average.datasets)) == (4.90, 64.42, 16)
    assert _row("tga-zsr/tga_zsr").robust["imagenet"] == 28.74
    assert _row("tga-zsr/pmg_aft").clean["pcam"] == 49.99
    aa = _row("tga-zsr/pmg_aft/autoattack")
    assert aa.attack_id == "apgd-ce-dlr" and aa.average.robust == 30.78 and aa.clean == {} and aa.average.clean is None
    for row_id, avg in (("tga-zsr-readme/ft_clean", (7.05, 54.37)), ("tga-zsr-readme/ft_adv", (28.83, 43.36)),
                        ("tga-zsr-readme/comp_tga", (44.46, 55.44))):
        row = _row(row_id)  # the README gives averages only: the row holds nothing else
        assert (row.average.robust, row.average.clean) == avg and row.robust == row.clean == {}
    paper = _row("pmg-aft-paper/pmg_aft")
    assert (paper.average.robust, paper.average.clean, paper.protocol) == (29.15, 59.49, "paper")
    assert len(paper.average.datasets) == 15 and "tinyimagenet" not in paper.average.datasets
    ttc = _row("ttc-poster/clip+ttc")
    assert ttc.attack_id == "pgd10" and (ttc.average.robust, ttc.average.clean) == (39.17, 59.75)
    assert ttc.robust["stanford_cars"] == 33.01 and "country211" in ttc.average.datasets
    assert "tinyimagenet" not in ttc.average.datasets
    assert (_row("ttc-poster/fare+ttc").average.robust, _row("ttc-poster/fare+ttc").clean) == (33.89, {})


def test_averages_are_the_means_of_their_sets_unless_the_row_says_the_source_disagrees():
    checked = 0
    for r in published_rows():
        for kind in ("robust", "clean"):
            values, published = getattr(r, kind), getattr(r.average, kind) if r.average else None
            if published is None or set(values) != set(r.average.datasets):
                continue
            checked += 1
            mean = sum(values.values()) / len(values)
            assert (abs(mean - published) > ROUNDING) == (f"average.{kind}" in r.inconsistent), (r.id, kind, mean)
    assert checked == 11  # five methods x robust/clean + PMG-AFT under AutoAttack
    assert _row("tga-zsr/tga_zsr").inconsistent == ("average.clean",)  # 56.38 from its sets vs 56.44 printed


@pytest.mark.parametrize("edit, error", [
    (lambda r: r.update(robust={**r["robust"], "cifar10": 101}), "accuracy in %"),
    (lambda r: r.pop("source"), "missing or unknown"),
    (lambda r: r.update(attack="fgsm"), "not a registered attack"),
    (lambda r: r.update(steps=None), "steps must be an int"),
    (lambda r: r.update(average={"over": "nowhere", "robust": 1.0}), "dataset group"),
    (lambda r: r.update(average={"over": "tga-zsr-16"}), "dataset group"),
    (lambda r: r.update(inconsistent=["robust.cifar10"]), "inconsistent"),
])
def test_a_malformed_row_is_rejected(edit, error):
    doc = copy.deepcopy(published_document())
    edit(doc["rows"][0])
    with pytest.raises(ValueError, match=error):
        parse_published(doc)
    doc = copy.deepcopy(published_document())
    doc["rows"].append(copy.deepcopy(doc["rows"][0]) | {"id": "copy"})
    with pytest.raises(ValueError, match="unique"):
        parse_published(doc)


# --- pmgaft published ----------------------------------------------------------------------------------------

def test_published_lists_filters_and_prints_json(capsys):
    assert main(["published"]) == 0
    out = capsys.readouterr().out
    assert all(r.id in out for r in published_rows()) and "4.90/64.42 (16 sets)" in out and "arxiv.org" in out
    assert main(["published", "--protocol", "ttc"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "ViT-B-32" in line]
    assert len(lines) == 7 and all(" ttc " in line for line in lines)
    assert main(["published", "--method", "pmg_aft", "--protocol", "tga-zsr", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in doc["rows"]] == ["tga-zsr/pmg_aft", "tga-zsr/pmg_aft/autoattack"]
    assert doc["rows"][0]["robust"]["tinyimagenet"] == 47.11 and doc["rows"][0]["attack_id"] == "pgd100"
    assert doc["rows"][0]["average"]["datasets"][0] == "tinyimagenet" and "arxiv" in doc["rows"][0]["source"]["url"]


@pytest.mark.parametrize("argv, message", [
    (["--protocol", "fare"], "no published numbers for protocol 'fare'"),
    (["--method", "pmgaft"], "Did you mean 'pmg_aft'"),
    (["--method", "pmg_aft", "--protocol", "ttc"], "no published row has method 'pmg_aft' under protocol 'ttc'"),
])
def test_published_bad_filters_exit_2_naming_what_exists(argv, message, capsys):
    assert main(["published", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# --- pmgaft report --compare ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def micro_results(tmp_path_factory) -> Path:
    """A real results folder: a tiny random model under tga-zsr (what the quickstart's results look like)."""
    out = tmp_path_factory.mktemp("published") / "micro"
    assert main(["eval", "--model", "pmgaft-micro", "--protocol", "tga-zsr", "--datasets", "digits", "--attacks",
                 "pgd", "--steps", "1", "--n-samples", "10", "--out", str(out), "--no-progress"]) == 0
    return out


def _card(base: dict, root: Path, label: str, method: str, dataset: str, robust: float, clean: float, *,
          pretrained: str | None = None, train: str | None = "tinyimagenet", steps: int = 100, **protocol) -> None:
    """A ViT-B-32 card (accuracies in %) written where `pmgaft eval` would write it."""
    card = copy.deepcopy(base)
    card["model"].update(label=label, name="ViT-B-32", method=method, pretrained=pretrained, train_dataset=train)
    card["dataset"].update(name=dataset, n_total=card["n"])
    card["attack"].update(id=f"pgd{steps}", steps=steps)
    card["config"]["protocol"].update(protocol)
    card.update(robust_accuracy=robust / 100, clean_accuracy=clean / 100)
    path = Cell(label, dataset, "pgd", 1.0, steps).path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(card))


@pytest.fixture(scope="module")
def vit_results(micro_results, tmp_path_factory) -> Path:
    base = next(iter(cards(micro_results).values()))
    root = tmp_path_factory.mktemp("published") / "vit"
    clip = _row("tga-zsr/clip")
    for d in clip.datasets:  # CLIP on all 16 sets: the published numbers, CIFAR-10 robust 2 points higher
        _card(base, root, "clip-openai", "clip", d, clip.robust[d] + 2 * (d == "cifar10"), clip.clean[d],
              pretrained="openai", train=None)
    _card(base, root, "clip-laion", "clip", "cifar10", 2.42, 88.06, pretrained="laion2b_s34b_b79k", train=None)
    _card(base, root, "tecoa-run", "tecoa", "cifar10", 29.80, 67.64, scoring="worst")  # clean 1.5 points higher
    _card(base, root, "tecoa-run", "tecoa", "imagenet", 18.18, 37.09, scoring="worst")
    _card(base, root, "tecoa-run", "tecoa", "dtd", 17.0, 25.0, steps=10)  # PGD-10: no published tga-zsr row
    _card(base, root, "tecoa-in1k", "tecoa", "cifar10", 30.30, 66.14, train="imagenet")  # another training set
    _card(base, root, "pmg-release", "unknown", "cifar10", 46.01, 74.62)  # a foreign file: method unknown
    return root


def _compare_csv(root: Path) -> list[dict[str, str]]:
    with open(root / "report" / "compare.csv") as f:
        return list(csv.DictReader(f))


def test_compare_puts_published_numbers_beside_yours_and_flags_differences(vit_results, capsys):
    assert main(["report", str(vit_results), "--compare", "--quiet", "--format", "md", "csv"]) == 0
    out = capsys.readouterr().out
    rows = _compare_csv(vit_results)
    assert {(r["model"], r["published_row"]) for r in rows} == {("clip-openai", "tga-zsr/clip"),
                                                               ("tecoa-run", "tga-zsr/tecoa")}
    by = {(r["model"], r["dataset"]): r for r in rows}
    c10 = by["clip-openai", "cifar10"]
    assert (float(c10["robust"]), float(c10["robust_published"]), float(c10["robust_delta"])) == (4.42, 2.42, 2.0)
    assert float(c10["clean_delta"]) == 0 and c10["beyond_tolerance"] == "true"
    assert by["clip-openai", "stl10"]["beyond_tolerance"] == "false"
    avg = by["clip-openai", "average"]  # every one of the 16 sets is there: the average is compared
    assert avg["sets"] == "16" and avg["beyond_tolerance"] == "false"
    assert float(avg["robust"]) == pytest.approx(4.90 + 2 / 16, abs=0.01) and float(avg["robust_published"]) == 4.90
    tecoa = by["tecoa-run", "cifar10"]
    assert float(tecoa["robust_delta"]) == pytest.approx(-0.5) and float(tecoa["clean_delta"]) == pytest.approx(1.5)
    assert tecoa["beyond_tolerance"] == "true" and "scoring worst (protocol: final)" in tecoa["notes"]
    assert by["tecoa-run", "imagenet"]["beyond_tolerance"] == "false"
    assert ("tecoa-run", "average") not in by and ("tecoa-run", "dtd") not in by
    md = (vit_results / "report" / "report.md").read_text()
    section = md.split("## Published numbers beside yours")[1].split("## Suspicious results")[0]
    assert "### clip-openai (as clip) vs tga-zsr/clip: tga-zsr, pgd100, eps 1/255, ViT-B-32" in section
    assert "| cifar10 | 4.42 | 2.42 | +2.00 | 88.06 | 88.06 | +0.00 | **beyond ±1** |" in section
    assert "| **average (16 sets)** | 5.02 | 4.90 | +0.12 | 64.42 | 64.42 | +0.00 |  |" in section
    assert "the results lack 14 of its sets" in section and "arXiv 2410.21802" in section
    assert "DIFFERS from published (beyond ±1): clip-openai / cifar10 vs tga-zsr/clip: robust 4.42 vs 2.42" in out
    assert "2 beyond ±1 point(s)" in out


def test_compare_tolerance_is_user_set(vit_results, capsys):
    assert main(["report", str(vit_results), "--compare", "--tolerance", "3", "--quiet", "--format", "csv"]) == 0
    assert "0 beyond ±3 point(s)" in capsys.readouterr().out
    assert {r["beyond_tolerance"] for r in _compare_csv(vit_results)} == {"false"}
    assert main(["report", str(vit_results), "--compare", "--tolerance", "0.1", "--quiet", "--format", "csv"]) == 0
    assert "3 beyond ±0.1 point(s)" in capsys.readouterr().out  # + CLIP's 16-set average, 0.125 above
    for bad in (["--tolerance", "-1"], ["--tolerance", "nan"]):
        assert main(["report", str(vit_results), "--compare", *bad]) == 2
        assert "--tolerance" in capsys.readouterr().err
    assert main(["report", str(vit_results), "--tolerance", "2"]) == 2  # without --compare
    assert "add --compare" in capsys.readouterr().err


def test_compare_as_names_the_method_of_a_foreign_checkpoint(vit_results, capsys):
    assert main(["report", str(vit_results), "--compare", "--compare-as", "pmg-release=pmg_aft", "--quiet",
                 "--format", "csv"]) == 0
    rows = [r for r in _compare_csv(vit_results) if r["model"] == "pmg-release"]
    assert [(r["published_row"], r["dataset"], r["robust_delta"]) for r in rows] == [
        ("tga-zsr/pmg_aft", "cifar10", "0.0000")]
    for argv, message in ((["pmg=pmg_aft"], "the results have no model 'pmg'"),
                          (["pmg-release=pmgaft"], "no published row has method 'pmgaft'"),
                          (["pmg-release"], "--compare-as takes LABEL=METHOD")):
        assert main(["report", str(vit_results), "--compare", "--compare-as", *argv]) == 2
        assert message in capsys.readouterr().err


def test_compare_without_a_published_counterpart_exits_2_before_writing(micro_results, capsys):
    assert main(["report", str(micro_results), "--compare"]) == 2
    err = capsys.readouterr().err
    assert "no result cell has a published counterpart" in err
    assert "backbone pmgaft-micro, method random-init on digits" in err and "backbone ViT-B-32" in err
    assert not (micro_results / "report").exists()


def test_deviations_name_the_cw_kappa_only_for_cw_cells_and_the_inner_resize():
    from pmgaft.evaluation.compare import deviations

    def card(attack: str, **protocol) -> dict:
        used = {**PROTOCOLS["agft"].to_dict(), **protocol}
        return {"attack": {"name": attack}, "config": {"protocol": used}, "dataset": {"name": "cifar10"}}

    assert deviations(card("cw")) == deviations(card("pgd", cw_kappa=5.0)) == []
    assert deviations(card("cw", cw_kappa=5.0)) == ["cw_kappa 5.0 (protocol: 0.0)"]
    assert deviations(card("pgd", resize_antialias=False)) == ["resize_antialias False (protocol: True)"]


def test_defended_cells_match_the_defence_rows_and_adaptive_ones_match_none():
    """A defended card is METHOD+DEFENCE (also under --compare-as); the published defence rows are their papers'
    non-adaptive numbers, so an adaptive card is never put beside them."""
    from pmgaft.evaluation.compare import match_cards

    def card(label: str, method: str, defence: str | None, adaptive: bool | None, robust: float) -> dict:
        c = {"model": {"label": label, "name": "ViT-B-32", "method": method, "pretrained": "openai",
                       "train_dataset": None},
             "dataset": {"name": "cifar10"}, "attack": {"id": "pgd10", "eps_255": 1.0},
             "config": {"protocol": {"name": "ttc"}}, "robust_accuracy": robust, "clean_accuracy": 0.8}
        if defence:
            c["defence"] = {"name": defence}
            c["attack"]["adaptive"] = adaptive
        return c

    found = [card("clip", "clip", None, None, 0.1), card("clip", "clip", "ttc", False, 0.4),
             card("clip", "clip", "ttc", True, 0.05), card("rel", "unknown", "ttc", False, 0.3),
             card("rel", "unknown", None, None, 0.2)]
    matches = {(m.label, m.row.id): m for m in match_cards(found, published_rows(), {"rel": "tecoa"})}
    assert set(matches) == {("clip", "ttc-poster/clip"), ("clip", "ttc-poster/clip+ttc"),
                            ("rel", "ttc-poster/tecoa"), ("rel", "ttc-poster/tecoa+ttc")}
    assert matches["clip", "ttc-poster/clip+ttc"].cards["cifar10"]["robust_accuracy"] == 0.4  # the non-adaptive one
    assert matches["rel", "ttc-poster/tecoa+ttc"].cards["cifar10"]["robust_accuracy"] == 0.3
    assert matches["rel", "ttc-poster/tecoa"].cards["cifar10"]["robust_accuracy"] == 0.2
