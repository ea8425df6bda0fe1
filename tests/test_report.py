"""`pmgaft report`: tables match the cards, PNGs are real images, suspicious results are flagged;
`pmgaft reproduce --dry-run` prints a plan."""
from __future__ import annotations

import copy
import csv
from pathlib import Path

import pytest
from PIL import Image

from eval_fixtures import cards
from pmgaft.cli import main
from pmgaft.evaluation.checks import find_suspicious


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "results"
    for label, seed in (("micro-a", "0"), ("micro-b", "3")):
        assert main(["eval", "--model", "pmgaft-micro", "--label", label, "--seed", seed, "--datasets", "digits",
                     "foolbox_mnist", "--attacks", "none", "pgd", "--eps", "1", "64", "--steps", "5",
                     "--step-size", "16", "--n-samples", "30", "--out", str(out), "--no-progress"]) == 0
    return out


def test_report_writes_markdown_csv_and_pngs_matching_the_cards(results, capsys):
    assert main(["report", str(results)]) == 0
    printed = capsys.readouterr().out
    report = results / "report"
    md = (report / "report.md").read_text()
    assert "### pgd5, eps = 64/255 (worst case over iterates)" in md and "average (zero-shot)" in md
    assert "average (all)" in md
    for card in cards(results).values():
        a = card["attack"]
        cell = f"{100 * card['robust_accuracy']:.2f}/{100 * card['clean_accuracy']:.2f}"
        section = md.split(f"### {a['id']}, eps = {a['eps_255']:g}/255 (" if a["name"] != "none"
                           else "### clean (no attack)")[1].split("###")[0]
        row = next(line for line in section.splitlines() if line.startswith(f"| {card['dataset']['name']} |"))
        header = next(line for line in section.splitlines() if line.startswith("| dataset |"))
        column = [c.strip() for c in header.strip("|").split("|")].index(card["model"]["label"])
        assert [c.strip() for c in row.strip("|").split("|")][column] == cell
    with open(report / "table_pgd5_eps1.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["dataset"] for r in rows} >= {"digits", "foolbox_mnist", "average_zero_shot", "average_all"}
    assert "pgd5" in printed
    pngs = sorted(report.glob("*.png"))
    assert {p.name for p in pngs} >= {"bars_pgd5_eps1.png", "eps_curve_pgd5.png", "clean_vs_robust_pgd5_eps64.png"}
    for png in pngs:
        assert png.stat().st_size > 5000
        with Image.open(png) as im:
            im.verify()
            assert im.format == "PNG" and min(im.size) > 200


def test_report_flags_suspicious_results(results, tmp_path, capsys):
    base = next(c for c in cards(results).values() if c["attack"]["id"] == "pgd5" and c["attack"]["eps_255"] == 1)
    def card(attack_id, name, eps, robust, clean=0.5, steps=None):
        c = copy.deepcopy(base)
        c["attack"].update(id=attack_id, name=name, eps_255=eps, steps=steps)
        c.update(robust_accuracy=robust, clean_accuracy=clean)
        return c
    fake = [card("pgd10", "pgd", 1, 0.3, steps=10), card("pgd10", "pgd", 4, 0.4, steps=10),
            card("pgd100", "pgd", 1, 0.35, steps=100), card("autoattack", "autoattack", 1, 0.05),
            card("cw10", "cw", 1, 0.6, steps=10)]
    notes = find_suspicious(fake)
    assert any("rises with eps" in n for n in notes)
    assert any("rises with steps" in n for n in notes)
    assert any("gradient masking" in n for n in notes)
    assert any("robust 60.00% > clean 50.00%" in n for n in notes)
    real = find_suspicious([c for c in cards(results).values()])
    assert real and all("at chance level" in n for n in real)  # random-init models guess: said, nothing else
    broken = copy.deepcopy(base)
    broken["model"]["weights_finite"] = False
    assert any("NaN or inf" in n for n in find_suspicious([broken]))
    # end to end: a card edited on disk is flagged in the report and on the terminal
    import json
    import shutil
    out = tmp_path / "results"
    shutil.copytree(results, out)
    path = out / "micro-a" / "digits" / "pgd5_eps64.json"
    data = json.loads(path.read_text())
    data["robust_accuracy"] = data["clean_accuracy"] + 0.1
    path.write_text(json.dumps(data))
    assert main(["report", str(out), "--format", "md", "--quiet"]) == 0
    assert "WARNING:" in capsys.readouterr().out
    assert "rises with eps" in (out / "report" / "report.md").read_text()


def test_report_on_an_empty_directory_says_what_to_do(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "pmgaft eval" in capsys.readouterr().err


def test_reproduce_dry_run_prints_the_plan(tmp_path, capsys):
    assert main(["reproduce", "--data-root", str(tmp_path), "--out", str(tmp_path / "rep"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "train pmg_aft" in text and "configs/pmg_aft.yaml (recipe paper, lr 5e-05, batch 256, 10 epochs)" in text
    assert "--protocol paper" in text and "344,128 images per model" in text and "no cost estimate" in text
    assert not (tmp_path / "rep").exists()
    assert main(["reproduce", "--data-root", str(tmp_path), "--configs", "configs/tga-zsr", "--methods", "clip",
                 "tecoa", "tga_zsr", "comp_tga", "--protocol", "tga-zsr", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "train comp_tga" in text and "lr 1e-05, batch 128" in text  # TeCoA as the table's run trained it
    assert main(["reproduce", "--data-root", str(tmp_path), "--methods", "comp_tga", "--dry-run"]) == 2
    assert "configs/comp_tga.yaml does not exist" in capsys.readouterr().err
