"""Read the weights of a TorchScript archive (OpenAI's ``ViT-B-32.pt``) without running any of its code.

``torch.jit.load`` compiles the archive's code and runs its ``__setstate__`` methods, and ``torch.load(...,
weights_only=True)`` refuses TorchScript archives. An archive is a zip: ``<name>/data.pkl`` pickles the module
tree (objects of ``__torch__.*`` classes whose state holds tensors and submodules), ``<name>/data/<key>`` holds
the raw storages, and ``<name>/code/**.py`` declares each class's ``__parameters__`` and ``__buffers__``. This
reader unpickles ``data.pkl`` with an unpickler that knows only inert stand-ins (no class of the archive and no
Python callable is ever imported or called), reads the declarations as text, and returns the parameters and
buffers under their ``state_dict`` names -- the same dict ``torch.jit.load(path).state_dict()`` gives.
"""
from __future__ import annotations

import collections
import pickle
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch

from pmgaft.errors import PmgaftError

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}
_CLASS_DECL = re.compile(r"^class (\w+)\(Module\):\n  __parameters__ = \[(.*?)\]\n  __buffers__ = \[(.*?)\]", re.M)


def is_torchscript_archive(path: str | Path) -> bool:
    """True for a zip holding ``*/data.pkl`` and TorchScript code (``*/code/``)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/data.pkl") for n in names) and any("/code/" in n for n in names)


class _ScriptObject:
    """Inert stand-in for one ``__torch__.*`` object: keeps its class name and its state, nothing else."""

    qualname = ""
    state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.state = dict(state) if isinstance(state, dict) else {}


def _stand_in(qualname: str) -> type:
    # a fresh class per qualname: NEWOBJ builds an inert object that remembers which class it stood for
    return type("ScriptObject", (_ScriptObject,), {"qualname": qualname})


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
    if not size:
        return storage[offset].clone()
    return storage.as_strided(size, stride, offset).clone()


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__"):
            return _stand_in(f"{module}.{name}")
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a TorchScript weights archive")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        kind, dtype, key, _location, numel = pid
        if kind != "storage" or not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        raw = self.archive.read(f"{self.prefix}/data/{key}")
        flat = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        if flat.numel() != numel:
            raise pickle.UnpicklingError(f"storage {key}: {flat.numel()} values, expected {numel}")
        return flat


def _declarations(archive: zipfile.ZipFile, prefix: str) -> dict[str, set[str]]:
    """``{"__torch__.pkg.Class": {parameter and buffer names}}`` from the archive's code files (read as text)."""
    declared: dict[str, set[str]] = {}
    code = f"{prefix}/code/"
    for name in archive.namelist():
        if not (name.startswith(code) and name.endswith(".py")):
            continue
        module = name[len(code):-3].replace("/", ".")
        for cls, params, buffers in _CLASS_DECL.findall(archive.read(name).decode("utf-8", "replace")):
            declared[f"{module}.{cls}"] = set(re.findall(r'"([^"]+)"', params + buffers))
    return declared


def _collect(obj: _ScriptObject, prefix: str, declared: dict[str, set[str]], out: dict[str, torch.Tensor]) -> None:
    names = declared.get(obj.qualname)
    for key, value in obj.state.items():
        if isinstance(value, _ScriptObject):
            _collect(value, f"{prefix}{key}.", declared, out)
        elif isinstance(value, torch.Tensor) and (names is None or key in names):
            out[f"{prefix}{key}"] = value


def read_torchscript_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of the module in TorchScript archive ``path``, read without executing anything."""
    if sys.byteorder != "little":  # archives store little-endian raw storages
        raise PmgaftError(f"cannot read TorchScript archive {path} on a big-endian machine.")
    try:
        with zipfile.ZipFile(path) as archive:
            data = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
            prefix = data[: -len("/data.pkl")]
            with archive.open(data) as f:
                root = _Unpickler(f, archive, prefix).load()
            declared = _declarations(archive, prefix)
    except (zipfile.BadZipFile, StopIteration, KeyError, pickle.UnpicklingError, EOFError, ValueError) as err:
        raise PmgaftError(f"{path} is not a readable TorchScript weights archive: {err}") from None
    if not isinstance(root, _ScriptObject):
        raise PmgaftError(f"{path}: the TorchScript archive's root is not a module.")
    out: dict[str, torch.Tensor] = {}
    _collect(root, "", declared, out)
    return out
