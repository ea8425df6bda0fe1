"""pmgaft computes exactly what OpenAI's own CLIP code computes, for every route OpenAI-lineage weights arrive by.

Reference: ``clip/model.py`` of clip-anytorch (OpenAI's code), random OpenAI-shaped weights. Routes: a
TorchScript archive (how OpenAI ships ``ViT-B-32.pt``), the ``openai`` hub tag (offline, from a pre-filled
Hugging Face cache), the TeCoA-lineage released layout (TeCoA / PMG-AFT / TGA-ZSR / Comp-TGA), FARE's
image-tower-only files, plain state dicts with an explicit choice, and pmgaft's own checkpoints -- on a micro
OpenAI-shaped model, and at the real shapes of ViT-B/32 (the tag), ViT-B/16 and ViT-L/14 (the tag, OpenAI's
TorchScript release format and pmgaft's checkpoint).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from openai_reference import (MICRO, MICRO_NAME, REAL_SHAPES, inputs, openai_micro, openai_model_module,
                              openai_real_size, register_micro_config, relative_error)
from pmgaft.errors import PmgaftError
from pmgaft.models import load_clip, save_weights, weights_metadata

TOLERANCE = 2e-4


@pytest.fixture
def micro_name(tmp_path: Path) -> str:
    return register_micro_config(tmp_path)


def _assert_same_function(loaded, reference, tol: float = TOLERANCE) -> None:
    images, tokens = inputs()
    with torch.no_grad():
        assert relative_error(loaded.model.encode_image(images), reference.encode_image(images)) < tol
        assert relative_error(loaded.model.encode_text(tokens), reference.encode_text(tokens)) < tol


def _torchscript(model: torch.nn.Module, path: Path) -> Path:
    images, tokens = inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing warnings
        torch.jit.trace(model, (images, tokens), check_trace=False).save(str(path))
    return path


def _visual_only(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.visual.state_dict().items()}


def _fine_tuned(seed: int = 5) -> torch.nn.Module:
    """The reference with a changed image tower (what the TeCoA lineage releases), text tower unchanged."""
    model = openai_micro()
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.visual.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_torchscript_archive_builds_quick_gelu_and_matches_openai(tmp_path, micro_name):
    reference = openai_micro()
    path = _torchscript(reference, tmp_path / "ViT-micro.pt")
    loaded = load_clip(micro_name, path)
    assert loaded.quick_gelu and "OpenAI" in loaded.activation_source and loaded.layout == "torchscript"
    _assert_same_function(loaded, reference)
    with pytest.warns(UserWarning, match="different function"):
        gelu = load_clip(micro_name, path, quick_gelu=False)
    images, _ = inputs()
    with torch.no_grad():  # the check above can fail: GELU is measurably another model
        assert relative_error(gelu.model.encode_image(images), reference.encode_image(images)) > 10 * TOLERANCE


def test_openai_state_dict_with_openai_entries_is_quick_gelu(tmp_path, micro_name):
    reference = openai_micro()
    extras = {"input_resolution": torch.tensor(32), "context_length": torch.tensor(77),
              "vocab_size": torch.tensor(49408)}
    torch.save({**reference.state_dict(), **extras}, tmp_path / "openai_names.pt")
    _assert_same_function(load_clip(micro_name, tmp_path / "openai_names.pt"), reference)


def test_plain_state_dict_follows_the_explicit_choice(tmp_path, micro_name):
    reference = openai_micro()
    torch.save(reference.state_dict(), tmp_path / "plain.pt")
    loaded = load_clip(micro_name, tmp_path / "plain.pt", quick_gelu=True)
    assert loaded.activation_source == "asked for explicitly"
    _assert_same_function(loaded, reference)


@pytest.mark.parametrize("prefix", ["", "module."])
def test_released_tecoa_layout_with_base_weights_matches_openai(tmp_path, micro_name, prefix):
    base, tuned = openai_micro(), _fine_tuned()
    _torchscript(base, tmp_path / "base.pt")
    torch.save({"epoch": 10, "state_dict": {}, "add_prompter": None,
                "vision_encoder_state_dict": {prefix + k: v for k, v in _visual_only(tuned).items()},
                "best_acc1": torch.tensor(31.2), "optimizer": {"state": {}, "param_groups": [{"lr": 5e-5}]}},
               tmp_path / "model_best.pth.tar")
    with pytest.warns(UserWarning, match="TeCoA-lineage checkpoint.*ignored: add_prompter, best_acc1, epoch"):
        loaded = load_clip(micro_name, tmp_path / "model_best.pth.tar", text_pretrained=tmp_path / "base.pt")
    assert loaded.quick_gelu and loaded.layout == "released"
    _assert_same_function(loaded, tuned)


def test_released_layout_without_base_weights_names_the_fix(tmp_path, micro_name):
    torch.save({"epoch": 1, "state_dict": {}, "vision_encoder_state_dict": _visual_only(openai_micro())},
               tmp_path / "tecoa.pth.tar")
    with pytest.raises(PmgaftError, match=r"TeCoA/PMG-AFT/TGA-ZSR release.*--pretrained openai"):
        load_clip(micro_name, tmp_path / "tecoa.pth.tar")


def test_fare_image_tower_file_takes_activation_and_text_from_base(tmp_path, micro_name):
    base, tuned = openai_micro(), _fine_tuned(seed=9)
    _torchscript(base, tmp_path / "base.pt")
    torch.save(_visual_only(tuned), tmp_path / "fare_eps2.pt")
    loaded = load_clip(micro_name, tmp_path / "fare_eps2.pt", text_pretrained=tmp_path / "base.pt")
    assert loaded.quick_gelu
    _assert_same_function(loaded, tuned)


def test_pmgaft_checkpoint_rebuilds_its_architecture_and_activation(tmp_path, micro_name):
    reference = openai_micro()
    loaded = load_clip(micro_name, _torchscript(reference, tmp_path / "base.pt"))
    meta = weights_metadata(model=micro_name, quick_gelu=True, normalization="imagenet", logit_scale=1.0,
                            provenance={"pmgaft_method": "pmg_aft", "step": 7})
    save_weights(tmp_path / "best.safetensors", loaded.model, meta)
    again = load_clip(None, tmp_path / "best.safetensors")  # the metadata names the architecture
    assert again.name == micro_name and again.quick_gelu and again.activation_source.startswith("recorded")
    assert again.normalization == "imagenet" and again.logit_scale == 1.0 and again.record.step == 7
    _assert_same_function(again, reference)


def test_openai_weights_under_the_wrong_architecture_name_the_right_one(tmp_path, micro_name):
    path = _torchscript(openai_micro(), tmp_path / "ViT-micro.pt")
    with pytest.raises(PmgaftError, match=rf"does not fit model 'pmgaft-micro'.*It fits --model {MICRO_NAME}"):
        load_clip("pmgaft-micro", path)


_TAG_SCRIPT = textwrap.dedent("""
    import json, sys, torch
    sys.path.insert(0, {tests!r})
    import pmgaft, open_clip
    from open_clip import pretrained
    from safetensors.torch import load_file
    from openai_reference import inputs, openai_model_module, register_micro_config, relative_error
    from pathlib import Path
    name = {name!r}
    if name != "ViT-B-32":
        name = register_micro_config(Path({tmp!r}))
        pretrained._PRETRAINED[name] = {{"openai": pretrained._pcfg(hf_hub="pmgaft-test/openai-micro/",
                                                                      quick_gelu=True)}}
    from pmgaft.models import load_clip
    reference = openai_model_module().CLIP(**{kwargs!r}).float().eval()
    reference.load_state_dict(load_file({weights!r}))
    loaded = load_clip(name, "openai")
    images, tokens = inputs(image_size=loaded.image_size)
    with torch.no_grad():
        out = {{"quick_gelu": loaded.quick_gelu, "source": loaded.activation_source,
               "image": relative_error(loaded.model.encode_image(images), reference.encode_image(images)),
               "text": relative_error(loaded.model.encode_text(tokens), reference.encode_text(tokens))}}
    print(json.dumps(out))
""")


def _fill_hf_cache(cache: Path, repo: str, state_dict: dict[str, torch.Tensor]) -> Path:
    """The layout huggingface_hub's cache uses: models--ORG--NAME/{refs/main, snapshots/<commit>/<file>}."""
    from safetensors.torch import save_file

    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    path = folder / "snapshots" / commit / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path))
    return path


def _run_tag(tmp_path: Path, name: str, kwargs: dict, state_dict: dict[str, torch.Tensor], repo: str) -> dict:
    weights = _fill_hf_cache(tmp_path / "hf", repo, state_dict)
    script = _TAG_SCRIPT.format(tests=str(Path(__file__).parent), name=name, tmp=str(tmp_path), kwargs=kwargs,
                                weights=str(weights))
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_openai_tag_offline_from_the_hf_cache_matches_openai(tmp_path):
    out = _run_tag(tmp_path, "micro", MICRO, openai_micro().state_dict(), "pmgaft-test/openai-micro")
    assert out["quick_gelu"] and "open_clip tag 'openai'" in out["source"]
    assert out["image"] < TOLERANCE and out["text"] < TOLERANCE


VIT_B_32 = REAL_SHAPES["ViT-B-32"]


@pytest.mark.slow
def test_vit_b_32_openai_tag_is_openai_clip(tmp_path):
    """The real route: ``load_clip("ViT-B-32", "openai")`` under open_clip's own repo id for that tag."""
    torch.manual_seed(0)
    state = openai_model_module().CLIP(**VIT_B_32).float().state_dict()
    out = _run_tag(tmp_path, "ViT-B-32", VIT_B_32, state, "timm/vit_base_patch32_clip_224.openai")
    assert out["quick_gelu"] and out["image"] < TOLERANCE and out["text"] < TOLERANCE


# --- ViT-B/16 and ViT-L/14 at their real shapes ---------------------------------------------------------------
# One set of random OpenAI-code weights per architecture (built once, shared by the routes), one image and two
# captions, no_grad, files deleted as soon as they are read. In-process: the tag route reads a Hugging Face cache
# redirected to a temporary folder (offline), as the ViT-B/32 test does in a subprocess.

@pytest.fixture(scope="module")
def real_size():
    """``get(name) -> (OpenAI-code model, its image and text embeddings)``; one architecture held at a time."""
    held: dict[str, tuple] = {}

    def get(name: str):
        if name not in held:
            held.clear()  # ViT-L/14 is 1.7 GB: never two references at once
            reference = openai_real_size(name)
            images, tokens = inputs(image_size=224)
            with torch.no_grad():
                held[name] = reference, images[:1], tokens, reference.encode_image(images[:1]), \
                    reference.encode_text(tokens)
        return held[name]
    yield get
    held.clear()


def _assert_openai_function(loaded, expected) -> None:
    """QuickGELU in every block of both towers, and the reference's embeddings (one image, two captions)."""
    _, images, tokens, image_emb, text_emb = expected
    blocks = [*loaded.model.visual.transformer.resblocks, *loaded.model.transformer.resblocks]
    assert loaded.quick_gelu and all(type(b.mlp.gelu).__name__ == "QuickGELU" for b in blocks)
    with torch.no_grad():
        assert relative_error(loaded.model.encode_image(images), image_emb) < TOLERANCE
        assert relative_error(loaded.model.encode_text(tokens), text_emb) < TOLERANCE


REAL_ARCHS = ["ViT-B-16", pytest.param("ViT-L-14", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", REAL_ARCHS)
def test_openai_tag_at_real_size_is_openai_clip(name, tmp_path, monkeypatch, real_size):
    """``load_clip(name, "openai")``: open_clip's own hub repo for the tag, from the cache, offline."""
    import open_clip
    from huggingface_hub import constants

    expected = real_size(name)
    repo = open_clip.get_pretrained_cfg(name, "openai")["hf_hub"].strip("/")
    weights = _fill_hf_cache(tmp_path / "hf", repo, expected[0].state_dict())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    loaded = load_clip(name, "openai")
    weights.unlink()
    assert loaded.layout == "tag" and "open_clip tag 'openai'" in loaded.activation_source
    _assert_openai_function(loaded, expected)


def test_openai_torchscript_and_pmgaft_checkpoint_at_real_size(tmp_path, real_size):
    """ViT-B/16 from OpenAI's own release format (a TorchScript archive, as ViT-B-16.pt is shipped), then from
    pmgaft's checkpoint of what was loaded (how a fine-tuned model comes back for evaluation): both are the
    reference's function. (ViT-L/14 takes the same code path; at 1.7 GB its test is the tag route only.)"""
    name = "ViT-B-16"
    expected = real_size(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing warnings
        torch.jit.trace(expected[0], (expected[1], expected[2]), check_trace=False).save(str(tmp_path / "a.pt"))
    loaded = load_clip(name, tmp_path / "a.pt")
    (tmp_path / "a.pt").unlink()
    assert loaded.layout == "torchscript" and "OpenAI" in loaded.activation_source
    _assert_openai_function(loaded, expected)
    meta = weights_metadata(model=name, quick_gelu=loaded.quick_gelu, normalization="clip", logit_scale="model",
                            provenance={"pmgaft_method": "agft"})
    save_weights(tmp_path / "last.safetensors", loaded.model, meta)
    del loaded
    again = load_clip(None, tmp_path / "last.safetensors")
    (tmp_path / "last.safetensors").unlink()
    assert again.name == name and again.activation_source.startswith("recorded")
    _assert_openai_function(again, expected)
