"""Property-based fuzzing of ``pmgaft train``'s configuration: every invalid YAML file and flag list hypothesis
generates ends in a clean error (exit 2, a one-line message or argparse's usage + error, no traceback) before any
model or data is loaded. Each example is one valid configuration with one invalid change."""
from __future__ import annotations

import math
import sys
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmgaft.cli import main
from pmgaft.training import TrainConfig, loop
from pmgaft.training.config import FIELD_NAMES
from pmgaft.training.cli import _CHOICES

sys.path.insert(0, str(Path(__file__).parent))
from training_fixtures import tiny_imagenet  # noqa: E402

HINTS = typing.get_type_hints(TrainConfig)
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
COUNTS = {"yaml": [0, 0], "flags": [0, 0], "yaml_text": [0, 0]}  # generated, clean
POSITIVE = {"lr", "batch_size", "epochs", "log_every", "keep_checkpoints", "dist_timeout", "grad_accum",
            "micro_batch", "max_steps", "eval_every", "save_every", "val_batch_size"}
NON_NEGATIVE = {"momentum", "weight_decay", "num_workers", "skip_nonfinite", "eps", "step_size", "attack_steps",
                "val_attack_steps", "warmup_steps", "val_size", "alpha", "beta"}
NUMERIC = {k for k in FIELD_NAMES if {int, float} & set(typing.get_args(HINTS[k]) or (HINTS[k],))}
NUMERIC -= {"logit_scale"}  # str | float: 'model' or a number


class ReachedWork(Exception):
    pass


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    """A valid configuration (pmgaft-micro on the fixture, CPU) that reaches training."""
    root = tmp_path_factory.mktemp("fuzz")
    return {"model": "pmgaft-micro", "pretrained": None, "dataset": "tinyimagenet",
            "data_root": str(tiny_imagenet(root / "data")), "out_dir": str(root / "run"), "device": "cpu",
            "batch_size": 4, "epochs": 1, "num_workers": 0, "progress": False}


@pytest.fixture(autouse=True)
def no_work(monkeypatch):
    def reached(*args, **kwargs):
        raise ReachedWork("a configuration passed every check")

    monkeypatch.setattr(loop, "_train", reached)


def _wrong_type(key: str) -> st.SearchStrategy:
    hint = set(typing.get_args(HINTS[key]) or (HINTS[key],))
    options = [st.lists(st.integers(), min_size=1, max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                                min_size=1, max_size=2)]
    if str not in hint:
        options.append(st.text(min_size=1, max_size=8).filter(lambda t: _not_a_number(t)))
    if bool not in hint:
        options.append(st.booleans())
    if bool in hint:
        options.append(st.integers(2, 9))
    if key in ("batch_size", "epochs", "max_steps", "grad_accum", "keep_checkpoints"):  # ints only
        options.append(st.floats(0.1, 9.9).filter(lambda v: not float(v).is_integer()))
    return st.one_of(options)


def _not_a_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text.strip().lower() not in ("none", "null", "true", "false", "yes", "no", "on", "off", "~", "")
    return False


def _bad_value(key: str) -> st.SearchStrategy:
    """An invalid value for ``key``: a wrong type, or a value its checks refuse."""
    options = [_wrong_type(key)]
    is_int = int in (typing.get_args(HINTS[key]) or (HINTS[key],)) and float not in typing.get_args(HINTS[key])
    if key in NUMERIC and not is_int:
        options.append(st.sampled_from([math.nan, math.inf, -math.inf]))
    if key in POSITIVE:
        options.append(st.integers(-5, 0) if is_int else st.floats(-5, 0))
    if key in NON_NEGATIVE:
        options.append(st.integers(-9, -1) if is_int else st.floats(-9, -1e-3))
    if key in ("eps", "step_size"):
        options.append(st.floats(256, 1e6))
    if key == "momentum":
        options.append(st.floats(1, 10))
    if key in _CHOICES or key in ("dataset", "pretrained", "model", "allow_change"):
        options.append(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(lambda t: t not in (
            _CHOICES.get(key, []) + ["none", "null"] + list(FIELD_NAMES))))
    if key == "out_dir":
        options.append(st.just("/proc/pmgaft-fuzz/run"))
    if key == "data_root":
        options.append(st.just("/nonexistent/pmgaft-data"))
    if key == "device":
        options.append(st.sampled_from(["cuda", "cuda:7", "tpu", "gpu0", "cpu:x"]))
    return st.one_of(options)


# keys whose every value of the right type is valid (free text or any flag): nothing invalid to generate besides
# types, and a wrong type for them is still a wrong type
FUZZED = [k for k in FIELD_NAMES if k not in ("resume", "trust_checkpoint", "progress", "augment", "random_start",
                                             "quick_gelu", "text_pretrained")]
changes = st.sampled_from(FUZZED).flatmap(lambda k: st.tuples(st.just(k), _bad_value(k)))
# not a key, nor a prefix of one: argparse takes a unique prefix of a flag as that flag (--ba = --batch-size)
unknown_keys = st.from_regex(r"[a-z][a-z_]{1,14}", fullmatch=True).filter(
    lambda k: not any(name.startswith(k) for name in FIELD_NAMES))


def _clean(run, counts: list[int], capsys) -> None:
    counts[0] += 1
    try:
        status = run()
    except SystemExit as exit_info:  # argparse
        status = exit_info.code
    except ReachedWork:
        pytest.fail("an invalid configuration reached training")
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err and err.rstrip().splitlines()[-1].startswith("pmgaft train: error: "), err
    counts[1] += 1


@SETTINGS
@given(change=st.one_of(changes, changes, changes, st.tuples(unknown_keys, st.integers())))
def test_invalid_yaml_configs_are_clean_errors(base: dict, tmp_path: Path, capsys, change) -> None:
    key, value = change
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**base, key: value}))
    _clean(lambda: main(["train", "--config", str(path)]), COUNTS["yaml"], capsys)


@SETTINGS
@given(text=st.text(max_size=60))
def test_yaml_that_is_not_a_mapping_is_a_clean_error(base: dict, tmp_path: Path, capsys, text: str) -> None:
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = "invalid"
    if isinstance(parsed, dict) or parsed is None:
        parsed = "invalid"
        text = text + "\n- [unclosed"  # make it invalid YAML whatever it was
    path = tmp_path / "config.yaml"
    path.write_text(text)
    flags = [a for k, v in base.items() for a in (f"--{k.replace('_', '-')}", str(v))
             if k not in ("pretrained", "progress")]
    _clean(lambda: main(["train", "--config", str(path), *flags]), COUNTS["yaml_text"], capsys)


def _flag_tokens(key: str, value) -> list[str]:
    flag = f"--{key.replace('_', '-')}"
    return [flag, value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip()
            .removesuffix("...").strip()]


flag_lists = st.one_of(
    # a flag's value is text: `--out-dir true` names a folder "true", which is valid (YAML would read a bool)
    changes.filter(lambda kv: not (kv[0] == "out_dir" and not isinstance(kv[1], str))).map(
        lambda kv: _flag_tokens(*kv)),
    unknown_keys.map(lambda k: [f"--{k.replace('_', '-')}", "1"]),
    st.sampled_from([f"--{k.replace('_', '-')}" for k in FUZZED if HINTS[k] is not bool]).map(lambda f: [f]),
)


@SETTINGS
@given(tokens=flag_lists)
def test_invalid_flags_are_clean_errors(base: dict, capsys, tokens: list[str]) -> None:
    flags = [a for k, v in base.items() if f"--{k.replace('_', '-')}" not in tokens
             for a in ((f"--{k.replace('_', '-')}", "none") if v is None else
                       (f"--no-{k}",) if v is False else (f"--{k.replace('_', '-')}", str(v)))]
    _clean(lambda: main(["train", *flags, *tokens]), COUNTS["flags"], capsys)


def test_report_fuzz_counts() -> None:
    """Runs last in this module (file order): how many invalid configurations were generated and ended cleanly."""
    for kind, (generated, clean) in COUNTS.items():
        print(f"fuzz {kind}: {generated} invalid configurations generated, {clean} clean errors")
        assert generated == 0 or clean == generated
