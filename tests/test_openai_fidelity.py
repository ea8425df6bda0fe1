"""pmgaft computes exactly what OpenAI's own CLIP code computes, for every route OpenAI-lineage weights arrive by.

Reference: ``clip/model.py`` of clip-anytorch (OpenAI's code), random OpenAI-shaped weights. Routes: a
TorchScript archive (how OpenAI ships ``ViT-B-32.pt``), the ``openai`` hub tag (offline, from a pre-filled
Hugging Face cache), a hub model (``hf-hub:``, open_clip's hub folder), the TeCoA-lineage released layout (TeCoA /
PMG-AFT / TGA-ZSR / Comp-TGA), FARE's image-tower-only files, state dicts with OpenAI's entries or with an
explicit choice, and pmgaft's own checkpoints -- on a micro OpenAI-shaped model, at the real shapes of ViT-B/16
and ViT-L/14 (every route), and of ViT-B/32 (the tag).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from dataclasses import dataclass
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


def _fill_hf_cache(cache: Path, repo: str, state_dict: dict[str, torch.Tensor], link: Path | None = None) -> Path:
    """The layout huggingface_hub's cache uses: models--ORG--NAME/{refs/main, snapshots/<commit>/<file>}; the
    weights file written from ``state_dict``, or a link to the file ``link`` (one file, two repos)."""
    from safetensors.torch import save_file

    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    path = folder / "snapshots" / commit / "open_clip_model.safetensors"
    if link is not None:
        path.symlink_to(link)
    else:
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


# --- ViT-B/16 and ViT-L/14 at their real shapes, on every route ------------------------------------------------
# ViT-L/14 has 428 M parameters (1.7 GB in fp32); what keeps it affordable: one set of random OpenAI-code weights
# per architecture and its embeddings of one image and two captions, computed once and shared by every route (one
# test per architecture: one process builds it, whatever xdist does); the weights written once per file format (the
# tag's safetensors file is also the hub model's and the plain file), in fp16 as OpenAI ships them (the weights are
# fp16-exact, so loading them into fp32 is exact), each file deleted as soon as it is read; one loaded model alive
# at a time; no autograd; no random initialisation of a model the file then fills.
#
# What is checked where: pmgaft builds every model with one function from (architecture, activation) -- open_clip's
# named config, or a hub folder's own config -- and then fills it strictly from the file. So the forward against
# OpenAI's code (about 6 s of CPU per ViT-L/14 image) runs once per build path: the `openai` tag and `hf-hub:`. Every
# route is checked for what a route can change: QuickGELU in every block of both towers, and every tensor bit for
# bit. The same build with the same tensors computes the same function.

REAL_ARCHS = ["ViT-B-16", pytest.param("ViT-L-14", marks=pytest.mark.slow)]
HUB_REPO = "pmgaft-test/openai-clip"  # a hub model holding the same weights (open_clip's hub folder layout)
_RANDOM_FILLS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
                 "xavier_normal_")


@dataclass
class RealSize:
    """OpenAI's code at ``name``'s real shapes with random weights, what it computes on one image and two captions,
    and an offline Hugging Face cache holding those weights once: the ``openai`` tag's file, also ``HUB_REPO``'s."""

    name: str
    reference: torch.nn.Module
    weights: dict[str, torch.Tensor]  # the reference's own tensors (not copies), fp16-exact
    images: torch.Tensor  # [1, 3, 224, 224]
    tokens: torch.Tensor  # [2, 77]
    image_emb: torch.Tensor
    text_emb: torch.Tensor
    cache: Path
    tag_file: Path

    def half(self) -> dict[str, torch.Tensor]:
        """The weights in fp16, as the files hold them (made when a file is written, not held: 0.85 GB)."""
        return {k: v.half() for k, v in self.weights.items()}


def _real_size(name: str, folder: Path) -> RealSize:
    import open_clip
    from open_clip.constants import HF_CONFIG_NAME, OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    from pmgaft.models import model_config

    reference = openai_real_size(name)
    with torch.no_grad():
        for p in reference.parameters():
            p.copy_(p.half())  # fp16-exact
    images, tokens = inputs(image_size=224)
    with torch.inference_mode():
        image_emb, text_emb = reference.encode_image(images[:1]), reference.encode_text(tokens)
    weights = reference.state_dict()
    cache = folder / "hf"
    tag_repo = open_clip.get_pretrained_cfg(name, "openai")["hf_hub"].strip("/")
    tag_file = _fill_hf_cache(cache, tag_repo, {k: v.half() for k, v in weights.items()})
    hub = _fill_hf_cache(cache, HUB_REPO, {}, link=tag_file).parent
    config = {"model_cfg": {**model_config(name), "quick_gelu": True},
              "preprocess_cfg": {"mean": list(OPENAI_DATASET_MEAN), "std": list(OPENAI_DATASET_STD)}}
    (hub / HF_CONFIG_NAME).write_text(json.dumps(config))
    return RealSize(name, reference, weights, images[:1], tokens, image_emb, text_emb, cache, tag_file)


def _offline(monkeypatch, cache: Path) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))


@contextlib.contextmanager
def _no_random_init():
    """torch's random fills are no-ops while models are built here: for a model whose every tensor is then filled
    from weights (about 8 s of CPU saved per ViT-L/14 model)."""
    def keep(tensor, *_, **__):
        return tensor

    with pytest.MonkeyPatch.context() as patch:
        for module in (torch.nn.init, torch.nn.modules.activation):  # activation.py imports its fills by name
            for fill in _RANDOM_FILLS:
                if hasattr(module, fill):
                    patch.setattr(module, fill, keep)
        yield


def _load(*args, **kwargs):
    """``load_clip`` without the random initialisation its strict load then overwrites. A tensor the file did not
    fill would hold uninitialised memory and fail the bit-for-bit check."""
    with _no_random_init():
        return load_clip(*args, **kwargs)


def _assert_openai_weights(loaded, real: RealSize, *, tuned_tower: bool = False) -> None:
    """QuickGELU in every block of both towers, and every tensor bit for bit: the reference's, or with the image
    tower negated (the fine-tuned tower a release carries)."""
    blocks = [*loaded.model.visual.transformer.resblocks, *loaded.model.transformer.resblocks]
    assert loaded.quick_gelu and all(type(b.mlp.gelu).__name__ == "QuickGELU" for b in blocks)
    state = loaded.model.state_dict()
    assert state.keys() == real.weights.keys()
    for key, value in real.weights.items():
        assert torch.equal(state[key], -value if tuned_tower and key.startswith("visual.") else value), key


def _assert_openai_function(loaded, real: RealSize) -> None:
    """The reference's embeddings of the image and the two captions."""
    with torch.inference_mode():
        assert relative_error(loaded.model.encode_image(real.images), real.image_emb) < TOLERANCE
        assert relative_error(loaded.model.encode_text(real.tokens), real.text_emb) < TOLERANCE


def _tag(real: RealSize, tmp_path: Path) -> None:
    """``load_clip(NAME, "openai")``: open_clip's own hub repo for the tag, from the cache, offline; open_clip's
    named config is the build path of every file route below."""
    loaded = _load(real.name, "openai")
    assert loaded.layout == "tag" and "open_clip tag 'openai'" in loaded.activation_source
    _assert_openai_weights(loaded, real)
    _assert_openai_function(loaded, real)


def _hub_model(real: RealSize, tmp_path: Path) -> None:
    """``hf-hub:ORG/NAME``, how the public robust ViT-L/14 models load (`pmgaft models`): built from the folder's
    own open_clip_config.json (quick_gelu true), the other build path."""
    loaded = _load(f"hf-hub:{HUB_REPO}")
    assert loaded.name == f"hf-hub:{HUB_REPO}" and "open_clip_config.json" in loaded.activation_source
    _assert_openai_weights(loaded, real)
    _assert_openai_function(loaded, real)


def _torchscript_archive(real: RealSize, tmp_path: Path) -> None:
    """OpenAI's release format: a TorchScript archive of OpenAI's model with its weights in fp16 (how
    ViT-B-16.pt and ViT-L-14.pt are shipped). It is traced through ``encode_text`` on one caption: the archive still
    holds the whole module tree, every storage and every class's parameter declarations -- all pmgaft reads, never
    the traced code -- without the image forward (about 6 s of CPU at ViT-L/14) a trace of ``forward`` costs."""
    openai_model_module().convert_weights(real.reference)  # what OpenAI's build_model does: fp16 weights
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracing warnings
            archive = torch.jit.trace_module(real.reference, {"encode_text": real.tokens[:1]}, check_trace=False)
        archive.save(str(tmp_path / "archive.pt"))
        del archive
    finally:
        real.reference.load_state_dict(real.weights, assign=True)  # its fp32 tensors back, as they were
    loaded = _load(real.name, tmp_path / "archive.pt")
    (tmp_path / "archive.pt").unlink()
    assert loaded.layout == "torchscript" and "OpenAI" in loaded.activation_source
    _assert_openai_weights(loaded, real)


def _openai_state_dict(real: RealSize, tmp_path: Path) -> None:
    """A ``torch.save`` state dict with OpenAI's extra entries: they alone say QuickGELU."""
    extras = {"input_resolution": torch.tensor(224), "context_length": torch.tensor(77),
              "vocab_size": torch.tensor(49408)}
    torch.save({**real.half(), **extras}, tmp_path / "openai.pt")
    loaded = _load(real.name, tmp_path / "openai.pt")
    (tmp_path / "openai.pt").unlink()
    assert loaded.activation_source == "OpenAI CLIP weights (state_dict file)"
    _assert_openai_weights(loaded, real)


def _plain_file_and_pmgaft_checkpoint(real: RealSize, tmp_path: Path) -> None:
    """A plain state dict that tells nothing (the tag's safetensors file, by path) with the explicit choice, then
    pmgaft's checkpoint of what was loaded (how a fine-tuned model comes back for evaluation), which names its
    architecture and activation itself."""
    loaded = _load(real.name, real.tag_file, quick_gelu=True)
    assert loaded.layout == "safetensors" and loaded.activation_source == "asked for explicitly"
    _assert_openai_weights(loaded, real)
    meta = weights_metadata(model=real.name, quick_gelu=loaded.quick_gelu, normalization="clip", logit_scale="model",
                            provenance={"pmgaft_method": "agft"})
    save_weights(tmp_path / "last.safetensors", loaded.model, meta)
    del loaded
    again = _load(None, tmp_path / "last.safetensors")
    (tmp_path / "last.safetensors").unlink()
    assert again.name == real.name and again.activation_source.startswith("recorded")
    _assert_openai_weights(again, real)


def _image_tower_releases(real: RealSize, tmp_path: Path) -> None:
    """The TeCoA lineage's released checkpoint and FARE's image-tower file, each with the base weights
    ``text_pretrained="openai"`` (pmgaft: --pretrained openai): the image tower is the file's (the reference's
    negated, so a tower taken from the base would show), the text tower the base's."""
    tower = {k[len("visual."):]: -v.half() for k, v in real.weights.items() if k.startswith("visual.")}
    torch.save({"epoch": 10, "state_dict": {}, "add_prompter": None, "vision_encoder_state_dict": tower,
                "best_acc1": torch.tensor(31.2)}, tmp_path / "model_best.pth.tar")
    torch.save(tower, tmp_path / "fare_eps4.pt")
    del tower
    with pytest.warns(UserWarning, match="TeCoA-lineage checkpoint"):
        loaded = _load(real.name, tmp_path / "model_best.pth.tar", text_pretrained="openai")
    (tmp_path / "model_best.pth.tar").unlink()
    assert loaded.layout == "released" and "OpenAI" in loaded.activation_source
    _assert_openai_weights(loaded, real, tuned_tower=True)
    del loaded
    loaded = _load(real.name, tmp_path / "fare_eps4.pt", text_pretrained="openai")
    (tmp_path / "fare_eps4.pt").unlink()
    assert "open_clip tag 'openai'" in loaded.activation_source  # the base's: the file tells nothing
    _assert_openai_weights(loaded, real, tuned_tower=True)


ROUTES = (_tag, _hub_model, _torchscript_archive, _openai_state_dict, _plain_file_and_pmgaft_checkpoint,
          _image_tower_releases)


@pytest.mark.parametrize("name", REAL_ARCHS)
def test_every_route_at_real_size_is_openai_clip(name, tmp_path, monkeypatch):
    """ViT-B/16 and ViT-L/14 through every route in turn. One test per architecture: one process (one xdist worker)
    builds its reference, and a failing route names itself in the traceback."""
    real = _real_size(name, tmp_path)
    _offline(monkeypatch, real.cache)
    try:
        for route in ROUTES:
            route(real, tmp_path)
    finally:  # a failed route may leave its file: none of the gigabytes outlive the test
        for path in tmp_path.iterdir():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
