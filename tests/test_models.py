"""load_clip: every checkpoint layout round-trips bit-exactly; bad input gives short, actionable errors."""
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from pmgaft.errors import PmgaftError
from pmgaft.models import load_clip


def _perturbed_state(loaded) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
            for k, v in loaded.model.state_dict().items()}


def _writers():
    def plain(sd, path):
        torch.save(sd, path)

    def wrapped(sd, path):  # the released PMG-AFT / TeCoA format: DataParallel-wrapped CLIP
        torch.save({"epoch": 10, "state_dict": {f"module.{k}": v for k, v in sd.items()},
                    "best_acc1": torch.tensor(31.5), "optimizer": {"state": {}, "param_groups": [{"lr": 5e-5}]}},
                   path)

    def module_prefix(sd, path):
        torch.save({f"module.{k}": v for k, v in sd.items()}, path)

    def openai_names(sd, path):  # OpenAI's CLIP checkpoints carry three extra entries
        extra = {"input_resolution": torch.tensor(32), "context_length": torch.tensor(16),
                 "vocab_size": torch.tensor(49408)}
        torch.save({**sd, **extra}, path)

    def safetensors_file(sd, path):
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))

    return {"plain.pt": plain, "released.pth": wrapped, "ddp.bin": module_prefix, "openai.pt": openai_names,
            "weights.safetensors": safetensors_file}


@pytest.mark.parametrize("filename", list(_writers()))
def test_checkpoint_formats_round_trip_bit_exactly(tmp_path: Path, micro_clip, filename):
    sd = _perturbed_state(micro_clip)
    path = tmp_path / filename
    _writers()[filename](sd, path)
    loaded = load_clip("pmgaft-micro", path)
    got = loaded.model.state_dict()
    assert got.keys() == sd.keys()
    for k in sd:
        assert torch.equal(got[k], sd[k]), k
    assert loaded.pretrained == str(path) and loaded.weights_hash != micro_clip.weights_hash


def test_image_tower_only_checkpoint_takes_the_text_tower_from_the_base_weights(tmp_path, micro_clip):
    sd = _perturbed_state(micro_clip)
    torch.save({k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}, tmp_path / "fare.pt")
    torch.save(micro_clip.model.state_dict(), tmp_path / "base.pt")
    loaded = load_clip("pmgaft-micro", tmp_path / "fare.pt", text_pretrained=tmp_path / "base.pt")
    got = loaded.model.state_dict()
    assert torch.equal(got["visual.conv1.weight"], sd["visual.conv1.weight"])
    assert torch.equal(got["token_embedding.weight"], micro_clip.model.state_dict()["token_embedding.weight"])


def test_image_tower_only_checkpoint_without_base_weights_is_an_error(tmp_path, micro_clip):
    """A random text tower makes every zero-shot number meaningless: refuse, and name the fix."""
    sd = _perturbed_state(micro_clip)
    torch.save({k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}, tmp_path / "fare.pt")
    with pytest.raises(PmgaftError, match=r"only the image tower.*--pretrained openai"):
        load_clip("pmgaft-micro", tmp_path / "fare.pt")
    torch.save(sd, tmp_path / "full.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a full checkpoint carries its own text tower: nothing to say
        load_clip("pmgaft-micro", tmp_path / "full.pt")


def test_random_init_and_tokenizer(micro_clip):
    model, tokenizer = micro_clip
    assert micro_clip.image_size == 32 and micro_clip.pretrained is None
    assert tokenizer(["a photo of a cat"]).shape == (1, 16)
    assert not model.training


def test_wrong_architecture_names_keys(tmp_path):
    tiny = load_clip("pmgaft-tiny")
    torch.save(tiny.model.state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(PmgaftError) as err:
        load_clip("pmgaft-micro", tmp_path / "tiny.pt")
    msg = str(err.value)
    assert "does not fit model 'pmgaft-micro'" in msg and "shape mismatches" in msg and "--model" in msg
    assert len(msg) < 1500  # a short message, not a 200-line dump


def test_missing_and_unexpected_keys_are_named(tmp_path, micro_clip):
    sd = dict(micro_clip.model.state_dict())
    sd.pop("visual.proj")
    sd["visual.extra_head.weight"] = torch.zeros(2)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(PmgaftError, match=r"1 missing keys: visual\.proj.*1 unexpected keys: visual\.extra_head"):
        load_clip("pmgaft-micro", tmp_path / "bad.pt")


@pytest.mark.parametrize("name, pretrained, match", [
    ("ViT-B-3", None, r"unknown model 'ViT-B-3'.*ViT-B-32"),
    ("ViT-B-32", "opnai", r"no pretrained weights tagged 'opnai'.*openai"),
    ("pmgaft-micro", "/nonexistent/ckpt.pt", r"does not exist"),
])
def test_bad_names(name, pretrained, match):
    with pytest.raises(PmgaftError, match=match):
        load_clip(name, pretrained)


def test_unreadable_checkpoint(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PmgaftError, match="cannot read checkpoint"):
        load_clip("pmgaft-micro", tmp_path / "junk.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"nope")
    with pytest.raises(PmgaftError, match="not a readable safetensors"):
        load_clip("pmgaft-micro", tmp_path / "junk.safetensors")


def test_hub_unreachable_message(monkeypatch):
    from pmgaft.models import loading

    monkeypatch.setattr(loading, "_hub_reachable", lambda *a, **k: False)
    with pytest.raises(PmgaftError, match=r"hub is unreachable.*--pretrained /path/to"):
        load_clip("ViT-B-32", "openai")


def test_state_dict_hash_sees_names_shapes_dtypes_and_values():
    from pmgaft.utils import state_dict_hash

    w = torch.arange(6.0)
    base = state_dict_hash({"w": w.view(2, 3)})
    assert state_dict_hash({"w": w.view(2, 3).clone()}) == base
    assert state_dict_hash({"w": w.view(3, 2)}) != base  # same values, other shape
    assert state_dict_hash({"w": w.view(2, 3).double()}) != base
    assert state_dict_hash({"v": w.view(2, 3)}) != base
    assert state_dict_hash({"w": (w + 1).view(2, 3)}) != base
    # the digest is a stable format (result cards and caches keep it): name, shape and dtype, then the raw bytes
    import hashlib

    assert base == hashlib.sha256(b"w:(2, 3):torch.float32" + w.numpy().tobytes()).hexdigest()
    assert state_dict_hash({"w": w.view(2, 3).t()}) == state_dict_hash({"w": w.view(2, 3).t().contiguous()})


def test_atomic_writes_get_normal_file_permissions(tmp_path):
    import os

    from pmgaft.utils import atomic_write_text

    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "result.json", "{}")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644  # readable by the group/others, like open() would create


class _Payload:
    """Unpickling this creates a file: proof that code from the checkpoint ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _planted(tmp_path: Path, micro_clip) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    path = tmp_path / "malicious.pt"
    torch.save({"state_dict": micro_clip.model.state_dict(), "payload": _Payload(marker)}, path)
    return path, marker


def test_a_planted_pickle_never_runs(tmp_path, micro_clip):
    path, marker = _planted(tmp_path, micro_clip)
    torch.save(micro_clip.model.state_dict(), tmp_path / "base.pt")
    for kwargs in ({"pretrained": path}, {"pretrained": tmp_path / "base.pt", "text_pretrained": path}):
        with pytest.raises(PmgaftError, match=r"refusing to load .*malicious\.pt: it pickles .*--trust-checkpoint"):
            load_clip("pmgaft-micro", **kwargs)
    assert not marker.exists()


def test_trusting_a_checkpoint_warns_before_it_is_unpickled(tmp_path, micro_clip):
    path, marker = _planted(tmp_path, micro_clip)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning raises: if it came after the load, the marker would exist
        with pytest.raises(UserWarning, match="weights_only=False.*runs any code"):
            load_clip("pmgaft-micro", path, trust_checkpoint=True)
    assert not marker.exists()
    with pytest.warns(UserWarning, match="weights_only=False"):
        loaded = load_clip("pmgaft-micro", path, trust_checkpoint=True)
    assert marker.exists() and loaded.weights_hash == micro_clip.weights_hash  # the opt-in does load it


def test_numpy_scalars_next_to_weights_load_safely(tmp_path, micro_clip):
    import numpy as np

    torch.save({"state_dict": micro_clip.model.state_dict(), "best_acc1": np.float64(31.5), "epoch": 3},
               tmp_path / "np.pt")
    assert load_clip("pmgaft-micro", tmp_path / "np.pt").weights_hash == micro_clip.weights_hash
