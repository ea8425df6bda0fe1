"""``pmgaft export``: a trained run as open_clip's hub folder. open_clip loads it (local-dir: and hf-hub: from a
cache) with the run's embeddings, ``pmgaft eval --model local-dir:`` gives the run's cards, the card and
robustness.json carry the run's recipe and measured numbers; bad input writes nothing; --push calls huggingface_hub."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from eval_fixtures import cards
from hub_fixtures import fill_hf_cache, offline_hub  # noqa: F401  (fixture)
from pmgaft.cli import main
from pmgaft.models import load_clip
from training_fixtures import micro_argv, tiny_imagenet

EVAL = ["--datasets", "digits", "--batch-size", "8", "--no-progress"]
PGD = ["--n-samples", "24", "--attacks", "none", "pgd", "--eps", "1", "--steps", "2"]
AUTOATTACK = ["--n-samples", "10", "--attacks", "autoattack", "--eps", "32"]  # large eps: every image falls fast


@pytest.fixture(scope="module")
def run(tmp_path_factory, digits_clip) -> tuple[Path, Path]:
    """A TeCoA run fine-tuned from the digits CLIP, its cards (PGD at 1/255, AutoAttack at 32/255) in results/."""
    tmp = tmp_path_factory.mktemp("export")
    run, results = tmp / "run", tmp / "results"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(micro_argv(tiny_imagenet(tmp / "data"), run, "--method", "tecoa", "--pretrained",
                               str(digits_clip), "--lr", "1e-4")) == 0
    checkpoint = ["--checkpoint", f"mine={run / 'best.safetensors'}", "--out", str(results)]
    assert main(["eval", *checkpoint, *EVAL, *PGD]) == 0
    assert main(["eval", *checkpoint, *EVAL, *AUTOATTACK]) == 0
    return run, results


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "pmgaft-tecoa-micro"
    assert main(["export", str(run[0]), "--out", str(out), "--results", str(run[1])]) == 0
    return out


def _embeddings(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    import open_clip

    torch.manual_seed(0)
    tokens = open_clip.get_tokenizer("pmgaft-micro")(["a photo of a 3", "a photo of a 7"])
    with torch.no_grad():
        return model.encode_image(torch.randn(3, 3, 32, 32)), model.encode_text(tokens)


def _assert_same_model(model: torch.nn.Module, reference: torch.nn.Module) -> None:
    for ours, theirs in zip(_embeddings(model), _embeddings(reference)):
        assert float((ours - theirs).norm() / theirs.norm()) < 1e-5


def test_open_clip_loads_the_folder_as_the_run(run, exported, tmp_path, offline_hub):  # noqa: F811
    import open_clip

    assert sorted(p.name for p in exported.iterdir()) == ["README.md", "open_clip_config.json",
                                                           "open_clip_model.safetensors", "robustness.json"]
    config = json.loads((exported / "open_clip_config.json").read_text())
    assert config["model_cfg"]["vision_cfg"]["width"] == 32 and config["model_cfg"]["quick_gelu"] is False
    assert config["preprocess_cfg"]["mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    ours = load_clip(None, run[0] / "best.safetensors")
    from_dir = open_clip.create_model_from_pretrained(f"local-dir:{exported}", return_transform=False).eval()
    _assert_same_model(from_dir, ours.model)
    fill_hf_cache(offline_hub, "someone/pmgaft-tecoa-micro", exported)
    from_hub = open_clip.create_model_from_pretrained("hf-hub:someone/pmgaft-tecoa-micro",
                                                      return_transform=False).eval()
    _assert_same_model(from_hub, ours.model)
    assert load_clip("hf-hub:someone/pmgaft-tecoa-micro").weights_hash == ours.weights_hash


def test_eval_of_the_folder_gives_the_runs_cards(run, exported, tmp_path):
    out = tmp_path / "results"
    assert main(["eval", "--model", f"local-dir:{exported}", "--out", str(out), *EVAL, *PGD]) == 0
    theirs = {k.split("/", 1)[1]: v for k, v in cards(run[1]).items() if "autoattack" not in k}
    ours = {k.split("/", 1)[1]: v for k, v in cards(out).items()}
    assert ours.keys() == theirs.keys() and len(ours) == 2
    for key, card in ours.items():
        ref = theirs[key]
        for field in ("n", "clean_correct", "robust_correct", "clean_accuracy", "robust_accuracy"):
            assert card[field] == ref[field], (key, field)
        for field in ("weights_hash", "sha256", "method", "normalization", "logit_scale", "quick_gelu"):
            assert card["model"][field] == ref["model"][field], (key, field)
        samples = [json.loads((p.parent / c["samples"]).read_text())
                   for p, c in ((out / f"pmgaft-tecoa-micro/{key}", card), (run[1] / f"mine/{key}", ref))]
        assert samples[0] == samples[1]
    assert 0 < theirs["digits/pgd2_eps1.json"]["clean_accuracy"] < 1  # numbers that could differ


def test_card_and_robustness_json_hold_the_recipe_and_measured_numbers(run, exported):
    readme = (exported / "README.md").read_text()
    _, front, body = readme.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "open_clip" and meta["pipeline_tag"] == "zero-shot-image-classification"
    assert "tecoa" in meta["tags"] and meta["datasets"] == ["tinyimagenet"] and "base_model" not in meta
    assert "| method | tecoa |" in body and "| eps | 1/255 |" in body and "attack_steps: 2" in body
    from pmgaft.export.facts import base_model_id  # what base_model says for other starting weights

    assert base_model_id("ViT-B-32", "openai") == "timm/vit_base_patch32_clip_224.openai"
    assert base_model_id("hf-hub:chs20/fare4-clip", None) == base_model_id("fare4-clip", None) == "chs20/fare4-clip"
    assert base_model_id("pmgaft-micro", "/runs/x/best.safetensors") is None
    found = {k.split("/", 1)[1]: c for k, c in cards(run[1]).items()}
    pgd, aa = found["digits/pgd2_eps1.json"], found["digits/autoattack_eps32.json"]
    assert f"| digits | test | 24 | pgd2 | 1/255 | worst | {100 * pgd['clean_accuracy']:.2f} | " \
           f"{100 * pgd['robust_accuracy']:.2f} |" in body
    doc = json.loads((exported / "robustness.json").read_text())
    entries = {e["attack"]: e for e in doc["entries"]}
    assert set(entries) == {"pgd2", "autoattack"} and doc["weights_hash"] == pgd["model"]["weights_hash"]
    assert entries["autoattack"]["autoattack_acc"] == round(100 * aa["robust_accuracy"], 2)
    assert entries["autoattack"]["eps"] == "32/255" and entries["pgd2"]["eps"] == "1/255"
    assert entries["pgd2"]["robust_acc"] == round(100 * pgd["robust_accuracy"], 2)
    assert "autoattack_acc" not in entries["pgd2"]
    for e in entries.values():
        assert e["reported"] is False and e["threat_model"] == "Linf" and e["architecture"] == "pmgaft-micro"
        assert e["clean_acc"] == round(100 * found[f"digits/{e['attack']}_eps{e['eps'].split('/')[0]}.json"]
                                       ["clean_accuracy"], 2)


def test_the_card_reports_only_cards_of_the_same_tensors_and_activation(run, tmp_path):
    """A card of the same file with other tensors (another base text tower) or of the same tensors run with the
    other activation measured another model: not reported."""
    import shutil

    from pmgaft.export import measured

    results = tmp_path / "results"
    shutil.copytree(run[1], results)
    key = next(p for p in results.rglob("pgd2_eps1.json"))
    card = json.loads(key.read_text())
    model = card["model"]
    for name, change in (("other-activation", {"quick_gelu": not model["quick_gelu"]}),
                         ("other-tensors", {"weights_hash": "0" * 16})):
        other = results / name / "digits"
        other.mkdir(parents=True)
        (other / key.name).write_text(json.dumps({**card, "model": {**model, **change}, "robust_accuracy": 0.5,
                                                  "run": {"timestamp": "9999"}}))
    found = measured(results, weights_hash=model["weights_hash"], sha256=model["sha256"],
                     quick_gelu=model["quick_gelu"])
    pgd = [r for r in found if r.attack == "pgd2"]
    assert len(pgd) == 1 and pgd[0].robust == card["robust_accuracy"] != 0.5
    assert {r.attack for r in measured(results, weights_hash="f" * 16, sha256=model["sha256"])} == set()



def test_cards_under_a_test_time_defence_are_not_the_models_numbers(run, tmp_path):
    """``pmgaft eval --defence ttc`` writes cards of the same weights, dataset, attack and eps, later: they measured
    the weights plus a defence, so neither robustness.json nor the card's table reports them."""
    import shutil

    results = tmp_path / "results"
    shutil.copytree(run[1], results)
    for name, card in cards(results).items():
        path = results / name
        for adaptive in (False, True):
            suffix = "ttc-adaptive" if adaptive else "ttc"
            (path.parent / f"{path.stem}_{suffix}.json").write_text(json.dumps({
                **card, "attack": {**card["attack"], "adaptive": adaptive}, "defence": {"name": "ttc"},
                "clean_accuracy": 0.0123, "robust_accuracy": 0.0123, "run": {"timestamp": "9999"}}))
    out = tmp_path / "export"
    assert main(["export", str(run[0]), "--out", str(out), "--results", str(results)]) == 0
    found = {k.split("/", 1)[1]: c for k, c in cards(run[1]).items()}
    pgd, aa = found["digits/pgd2_eps1.json"], found["digits/autoattack_eps32.json"]
    entries = {e["attack"]: e for e in json.loads((out / "robustness.json").read_text())["entries"]}
    assert entries["pgd2"]["robust_acc"] == round(100 * pgd["robust_accuracy"], 2) != 1.23
    assert entries["autoattack"]["autoattack_acc"] == round(100 * aa["robust_accuracy"], 2) != 1.23
    assert all(e["clean_acc"] != 1.23 for e in entries.values())
    body = (out / "README.md").read_text()
    assert "1.23" not in body and f"| {100 * pgd['robust_accuracy']:.2f} |" in body

def test_released_layout_exports_with_quick_gelu_and_the_base_text_tower(tmp_path):
    """A TeCoA-lineage release (image tower of OpenAI CLIP) becomes a full open_clip model with QuickGELU."""
    import open_clip

    torch.manual_seed(0)
    base = load_clip("pmgaft-micro").model.state_dict()
    visual = {k[len("visual."):]: v + 0.01 for k, v in base.items() if k.startswith("visual.")}
    torch.save({"epoch": 10, "vision_encoder_state_dict": visual, "state_dict": {}}, tmp_path / "tecoa.pth")
    torch.save(base, tmp_path / "base.pt")
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["export", str(tmp_path / "tecoa.pth"), "--model", "pmgaft-micro", "--pretrained",
                     str(tmp_path / "base.pt"), "--out", str(out), "--results", str(tmp_path / "none")]) == 0
        ours = load_clip("pmgaft-micro", tmp_path / "tecoa.pth", text_pretrained=tmp_path / "base.pt")
    assert json.loads((out / "open_clip_config.json").read_text())["model_cfg"]["quick_gelu"] is True
    model = open_clip.create_model_from_pretrained(f"local-dir:{out}", return_transform=False).eval()
    assert type(model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    _assert_same_model(model, ours.model)
    assert "No pmgaft evaluation results were found" in (out / "README.md").read_text()
    # a plain state_dict cannot tell its activation: --quick-gelu states it
    assert main(["export", str(tmp_path / "base.pt"), "--model", "pmgaft-micro", "--quick-gelu", "--out",
                 str(tmp_path / "plain"), "--results", str(tmp_path / "none")]) == 0
    assert json.loads((tmp_path / "plain" / "open_clip_config.json").read_text())["model_cfg"]["quick_gelu"] is True


def test_bad_input_writes_nothing(run, tmp_path, capsys, monkeypatch):
    (tmp_path / "empty-run").mkdir()
    (tmp_path / "empty-run" / "config.yaml").write_text("method: tecoa\n")
    out = tmp_path / "out"
    assert main(["export", str(tmp_path / "empty-run"), "--out", str(out)]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err and not out.exists()
    assert main(["export", str(tmp_path / "missing"), "--out", str(out)]) == 2 and not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export", str(run[0]), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and [p.name for p in out.iterdir()] == ["keep.txt"]

    from pmgaft.export import folder

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(folder, "model_card", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        main(["export", str(run[0]), "--out", str(out), "--force"])
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and sorted(p.name for p in tmp_path.iterdir()) == \
        ["empty-run", "out"]  # no temporary folder left behind
    monkeypatch.undo()
    assert main(["export", str(run[0]), "--out", str(out), "--force", "--results", str(run[1])]) == 0
    assert not (out / "keep.txt").exists() and (out / "open_clip_model.safetensors").is_file()


class _FakeApi:
    calls: list[tuple] = []

    def __init__(self, token=None) -> None:
        self.calls.append(("init", token))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs, sorted(p.name for p in Path(kwargs["folder_path"]).iterdir())))
        return type("Commit", (), {"commit_url": "https://huggingface.co/me/x/commit/1"})()


def test_push_uploads_the_folder_with_the_token(run, tmp_path, capsys, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeApi)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    out = tmp_path / "out"
    assert main(["export", str(run[0]), "--out", str(out), "--push", "me/tecoa-micro"]) == 2
    assert "HF_TOKEN" in capsys.readouterr().err and not out.exists() and not _FakeApi.calls
    assert main(["export", str(run[0]), "--out", str(out), "--push", "not a repo"]) == 2
    assert main(["export", str(run[0]), "--out", str(out), "--push", "me/tecoa-micro", "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert "would write" in listing and "me/tecoa-micro" in listing and "open_clip_model.safetensors" in listing
    assert not out.exists() and not _FakeApi.calls
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test_token")
    assert main(["export", str(run[0]), "--out", str(out), "--push", "me/tecoa-micro", "--private"]) == 0
    assert _FakeApi.calls[0] == ("init", "hf_test_token")
    assert _FakeApi.calls[1] == ("create_repo", "me/tecoa-micro", {"repo_type": "model", "private": True,
                                                                   "exist_ok": True})
    upload = _FakeApi.calls[2]
    assert upload[1]["repo_id"] == "me/tecoa-micro" and Path(upload[1]["folder_path"]) == out
    assert upload[2] == ["README.md", "open_clip_config.json", "open_clip_model.safetensors", "robustness.json"]
    assert 'create_model_from_pretrained("hf-hub:me/tecoa-micro")' in (out / "README.md").read_text()
