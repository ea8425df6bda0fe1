"""Models from the hub: ``hf-hub:`` (offline, from a filled Hugging Face cache), ``local-dir:`` and catalogue names
load with pmgaft's one loader exactly as open_clip builds them; missing weights, unsafe pickles and uncached repos
are refused with one sentence; eval, train and bench take them wherever a model is named."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from hub_fixtures import fill_hf_cache, hub_folder, offline_hub  # noqa: F401  (fixture)
from pmgaft.cli import main
from pmgaft.errors import PmgaftError
from pmgaft.models import load_clip, model_config

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


@pytest.fixture
def weights(micro_clip) -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    return {k: v + 0.02 * torch.randn_like(v) if v.is_floating_point() else v
            for k, v in micro_clip.model.state_dict().items()}


def _cfg(quick_gelu=None) -> dict:
    cfg = model_config("pmgaft-micro")
    if quick_gelu is not None:
        cfg["quick_gelu"] = quick_gelu
    return cfg


def _embeddings(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    import open_clip

    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32)
    tokens = open_clip.get_tokenizer("pmgaft-micro")(["a photo of a cat", "a diagram"])
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(tokens)


def _same_function(loaded, reference: torch.nn.Module) -> None:
    for ours, theirs in zip(_embeddings(loaded.model), _embeddings(reference)):
        assert float((ours - theirs).norm() / theirs.norm()) < 1e-5


def test_local_dir_is_what_open_clip_builds(tmp_path, weights):
    """quick_gelu stored as the string "TRUE" (as chs20's configs) gives QuickGELU; mean/std are recorded."""
    import open_clip

    folder = hub_folder(tmp_path / "hub", weights, _cfg("TRUE"), preprocess=IMAGENET)
    loaded = load_clip(f"local-dir:{folder}")
    reference = open_clip.create_model_from_pretrained(f"local-dir:{folder}", return_transform=False).eval()
    assert loaded.quick_gelu and "open_clip_config.json" in loaded.activation_source
    assert type(reference.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    assert loaded.normalization == "imagenet" and loaded.name == f"local-dir:{folder.resolve()}"
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in weights.items())
    _same_function(loaded, reference)
    other = hub_folder(tmp_path / "inception", weights, _cfg(), preprocess={"mean": [0.5] * 3, "std": [0.5] * 3})
    assert load_clip(f"local-dir:{other}").normalization == ((0.5,) * 3, (0.5,) * 3)  # no name: the numbers


@pytest.mark.parametrize("weights_file", ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"])
def test_hf_hub_offline_from_the_cache(tmp_path, offline_hub, weights, weights_file):  # noqa: F811
    import open_clip

    fill_hf_cache(offline_hub, "testorg/tiny-clip", hub_folder(tmp_path / "hub", weights, _cfg(True),
                                                               weights=weights_file))
    loaded = load_clip("hf-hub:testorg/tiny-clip")
    assert loaded.quick_gelu and loaded.normalization == "clip"
    reference = open_clip.create_model_from_pretrained("hf-hub:testorg/tiny-clip", return_transform=False).eval()
    _same_function(loaded, reference)


def test_missing_weights_are_refused_not_random(tmp_path, offline_hub):  # noqa: F811
    folder = hub_folder(tmp_path / "hub", None, _cfg())
    with pytest.raises(PmgaftError, match=r"no weights file .*random weights, pmgaft refuses"):
        load_clip(f"local-dir:{folder}")
    fill_hf_cache(offline_hub, "testorg/config-only", folder)  # config cached, weights not
    with pytest.raises(PmgaftError, match=r"the weights file .* not in the Hugging Face cache .*offline.*hf download"):
        load_clip("hf-hub:testorg/config-only")


def test_nothing_cached_offline_says_what_to_download(offline_hub, capsys):  # noqa: F811
    with pytest.raises(PmgaftError) as err:
        load_clip("hf-hub:nobody/nothing")
    msg = str(err.value)
    assert "open_clip_config.json is not in the Hugging Face cache" in msg and str(offline_hub) in msg
    assert "hf download nobody/nothing" in msg and "HF_HUB_CACHE" in msg and msg.count(". ") <= 1
    assert main(["eval", "--model", "hf-hub:nobody/nothing", "--datasets", "digits", "--out",
                 str(offline_hub.parent / "res")]) == 2
    assert "hf download nobody/nothing" in capsys.readouterr().err
    assert not (offline_hub.parent / "res").exists() or not any((offline_hub.parent / "res").rglob("*.json"))


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_bin_that_pickles_code_is_refused(tmp_path, offline_hub, weights):  # noqa: F811
    folder = hub_folder(tmp_path / "hub", None, _cfg())
    torch.save({"state_dict": weights, "payload": _Payload(tmp_path / "PWNED")}, folder / "open_clip_pytorch_model.bin")
    fill_hf_cache(offline_hub, "testorg/planted", folder)
    for name in ("hf-hub:testorg/planted", f"local-dir:{folder}"):
        with pytest.raises(PmgaftError, match=r"refusing to load .*--trust-checkpoint"):
            load_clip(name)
    assert not (tmp_path / "PWNED").exists()
    with pytest.warns(UserWarning, match="weights_only=False"):
        load_clip(f"local-dir:{folder}", trust_checkpoint=True)  # the same opt-in as for any file


def test_quick_gelu_values(tmp_path, weights):
    for value, expected in (("FALSE", False), (1, True), (False, False)):
        folder = hub_folder(tmp_path / str(value), weights, _cfg(value))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert load_clip(f"local-dir:{folder}").quick_gelu is expected
        assert any("plain open_clip takes any non-empty string as true" in str(w.message) for w in caught) is \
            (value == "FALSE")
    with pytest.raises(PmgaftError, match="quick_gelu = 'maybe'"):
        load_clip(f"local-dir:{hub_folder(tmp_path / 'bad', weights, _cfg('maybe'))}")
    partial = {k: v for k, v in _cfg().items() if k != "text_cfg"}  # open_clip would fail with a KeyError
    with pytest.raises(PmgaftError, match="the 'model_cfg' of open_clip_config.json lacks 'text_cfg'"):
        load_clip(f"local-dir:{hub_folder(tmp_path / 'partial', weights, partial)}")


def test_catalogue_names_every_public_model_with_its_sources(capsys):
    assert main(["models", "--json"]) == 0
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    required = {"tecoa2-clip", "tecoa4-clip", "fare2-clip", "fare4-clip", "TeCoA4-ViT-B-32-laion2B-s34B-b79K",
                "FARE4-ViT-B-32-laion2B-s34B-b79K", "TeCoA4-ViT-B-16-laion2B-s34B-b88K",
                "FARE4-ViT-B-16-laion2B-s34B-b88K"}
    assert required <= set(entries)
    for e in entries.values():
        assert e["hub_name"] == f"hf-hub:{e['repo']}" and e["architecture"] and e["method"]
        if e["reported"]:  # a number only with the source it was read in
            assert e["reported"]["source"] and 0 < e["reported"]["clean"] < 100
    assert entries["fare4-clip"]["reported"]["robust"] == {"2/255": 45.9, "4/255": 32.4}
    assert main(["models", "fare4-clip", "chs20/tecoa2-clip"]) == 0
    out = capsys.readouterr().out
    assert "chs20/fare4-clip" in out and "chs20/tecoa2-clip" in out and "fare2-clip" not in out
    assert main(["models", "fare5-clip"]) == 2 and "fare4-clip" in capsys.readouterr().err


def test_short_names_evaluate_offline_from_the_cache(tmp_path, offline_hub, weights, capsys):  # noqa: F811
    """``--model fare4-clip`` and ``--checkpoint fare4-clip`` are chs20/fare4-clip: its config and weights."""
    from pmgaft.evaluation import model_specs

    fill_hf_cache(offline_hub, "chs20/fare4-clip", hub_folder(tmp_path / "hub", weights, _cfg("TRUE")))
    fill_hf_cache(offline_hub, "chs20/fare2-clip", hub_folder(tmp_path / "config-only", None, _cfg("TRUE")))
    assert main(["models", "fare4-clip", "fare2-clip", "tecoa4-clip"]) == 0  # the "cached" column
    listed = {line.split()[0]: line.split()[-2] for line in capsys.readouterr().out.splitlines()[2:5]}
    assert listed == {"fare4-clip": "yes", "fare2-clip": "config", "tecoa4-clip": "no"}
    [spec] = model_specs("fare4-clip", None, [])
    assert spec.name == "hf-hub:chs20/fare4-clip" and spec.label == "fare4-clip"
    assert [s.label for s in model_specs(None, None, ["fare4-clip", "mine=hf-hub:chs20/fare4-clip"])] == \
        ["fare4-clip", "mine"]
    out = tmp_path / "res"
    assert main(["eval", "--checkpoint", "fare4-clip", "--datasets", "digits", "--attacks", "none", "--n-samples",
                 "10", "--out", str(out), "--no-progress"]) == 0
    card = json.loads((out / "fare4-clip" / "digits" / "none_eps0.json").read_text())
    assert card["model"]["name"] == "hf-hub:chs20/fare4-clip" and card["model"]["quick_gelu"] is True
    assert card["model"]["method"] == "fare" and card["model"]["train_dataset"] == "imagenet"
    assert card["model"]["sha256"] and card["model"]["normalization"] == "clip"
    with pytest.raises(PmgaftError, match="carries its own weights"):
        model_specs("fare4-clip", "openai", [])
    with pytest.raises(PmgaftError, match="a hub model is named with --model"):
        model_specs("ViT-L-14", "fare4-clip", [])


def test_skip_existing_does_not_reuse_cards_of_an_edited_hub_config(tmp_path, weights):
    """The same weights under another open_clip_config.json (its quick_gelu) are another model: recomputed."""
    folder = hub_folder(tmp_path / "hub", weights, _cfg(False))
    out = tmp_path / "res"
    argv = ["eval", "--model", f"local-dir:{folder}", "--datasets", "digits", "--attacks", "none", "--n-samples",
            "10", "--out", str(out), "--no-progress", "--skip-existing"]
    card = out / "hub" / "digits" / "none_eps0.json"
    assert main(argv) == 0 and json.loads(card.read_text())["model"]["quick_gelu"] is False
    hub_folder(folder, None, _cfg(True))  # the config edited, the weights file unchanged
    assert main(argv) == 0 and json.loads(card.read_text())["model"]["quick_gelu"] is True


def test_train_starts_from_a_hub_model(tmp_path, weights):
    """``pmgaft train --model local-dir:DIR``: its weights (the frozen text tower stays theirs), its config."""
    from training_fixtures import micro_argv, tiny_imagenet, weights as read

    folder = hub_folder(tmp_path / "hub", weights, _cfg())
    run = tmp_path / "run"
    argv = micro_argv(tiny_imagenet(tmp_path / "data"), run, "--method", "tecoa", "--max-steps", "2")
    argv[argv.index("pmgaft-micro")] = f"local-dir:{folder}"
    argv[argv.index("--pretrained"):argv.index("--pretrained") + 2] = []  # a hub model brings its weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 0
    trained = read(run / "last.safetensors")
    assert torch.equal(trained["token_embedding.weight"], weights["token_embedding.weight"])
    assert not torch.equal(trained["visual.conv1.weight"], weights["visual.conv1.weight"])
    again = load_clip(None, run / "last.safetensors")  # the checkpoint records the hub architecture
    assert again.name == f"local-dir:{folder.resolve()}" and torch.equal(
        again.model.state_dict()["visual.conv1.weight"], trained["visual.conv1.weight"])
    assert main([*argv[:-2], "--out-dir", str(tmp_path / "run2"), "--pretrained", "openai"]) == 2


def test_bench_times_a_hub_model_with_its_weights(tmp_path, weights):
    from pmgaft.bench.harness import build_harness

    folder = hub_folder(tmp_path / "hub", weights, _cfg())
    harness = build_harness(f"local-dir:{folder}", classes=3, device=torch.device("cpu"))
    assert torch.equal(harness.loaded.model.state_dict()["visual.proj"], weights["visual.proj"])


def test_the_hub_is_the_configured_endpoint_and_a_proxy_is_trusted(monkeypatch):
    """HF_ENDPOINT (a mirror) is what is probed, not huggingface.co; behind HTTPS_PROXY a direct connection
    says nothing, so pmgaft does not force the cache-only mode there."""
    import socket

    from huggingface_hub import constants

    from pmgaft.models.hub_folder import hub_reachable

    for var in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as server, socket.socket() as closed:
        server.bind(("127.0.0.1", 0))
        server.listen()
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub_reachable()
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
        assert not hub_reachable()
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        assert hub_reachable()
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert not hub_reachable()
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.delenv("NO_PROXY")
        assert not hub_reachable()


@pytest.mark.parametrize("error, filename, match", [
    ("RepositoryNotFoundError", "open_clip_config.json", r"no model repository 'someone/typo' on the Hugging Face hub"),
    ("RemoteEntryNotFoundError", "open_clip_config.json", r"has no open_clip_config.json: it is not in open_clip's"),
    ("RemoteEntryNotFoundError", None, r"has no weights file .* open_clip would build it with random weights"),
])
def test_what_the_hub_answers_is_said_in_one_sentence(monkeypatch, error, filename, match):
    """Online: an unknown repo, a repo not in open_clip's format, a repo without weights (huggingface_hub's errors
    as open_clip's download helper wraps them)."""
    import importlib

    import huggingface_hub.errors as hub_errors

    from pmgaft.models import hub_folder as hub

    http = importlib.import_module(hub_errors.Response.__module__.split(".")[0])  # huggingface_hub's HTTP library
    response = http.Response(404, request=http.Request("GET", "https://huggingface.co/someone/typo"))
    cause = getattr(hub_errors, error)("404 Client Error", response=response)

    def download(repo, filename=None, **kwargs):
        try:
            raise cause
        except Exception as e:  # what open_clip.pretrained.download_pretrained_from_hf does
            raise FileNotFoundError(f"Failed to download file ({filename}) for {repo}. Last error: {e}")

    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: True)
    monkeypatch.setattr("open_clip.pretrained.download_pretrained_from_hf", download)
    with pytest.raises(PmgaftError, match=match):
        hub._download("someone/typo", filename)
