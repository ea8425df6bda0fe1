"""Default image transforms: resize/crop to [0, 1] tensors, never normalize (normalization is in the model).

Two presets:

* ``"clip"`` (default): sets with small fixed images (CIFAR 32 px, STL-10 96 px, PCAM 96 px, MNIST-likes 28 px,
  digits 8 px) stay at native size -- the zero-shot classifier upsamples bicubically to 224 inside its
  forward, as the released PMG-AFT code does, so attacks perturb the native pixels. Everything else gets CLIP's
  own preprocessing: ``Resize(224, bicubic) + CenterCrop(224)``.
* ``"official"``: the released ``PMG_AFT.py`` exactly: ``Resize(256) + CenterCrop(224)`` (bilinear) for every
  set except CIFAR-10/100 and STL-10, which it feeds at native size. It also resizes PCAM. TinyImageNet
  training data uses the same ``Resize(256) + CenterCrop(224)`` (PAPER.md, "data" row).

Two training presets (used by ``pmgaft train``, both recipes):

* ``"train"``: the paper's fine-tuning input, ``Resize(256) + CenterCrop(224)`` for sets of large images
  (TinyImageNet, folders), native size for small-image sets; no augmentation.
* ``"train_augment"``: the same sizes with ``RandomResizedCrop`` + horizontal flip (optional; not the paper's).
"""
from __future__ import annotations

from typing import Callable

import pmgaft  # noqa: F401  (torchvision shim)
from torchvision import transforms as T

from pmgaft.data.base import Transform
from pmgaft.data.spec import DatasetSpec
from pmgaft.utils import lookup

# the sets PMG_AFT.py feeds at native size; it resizes every other one, PCAM included
_OFFICIAL_NATIVE = frozenset({"cifar10", "cifar100", "stl10"})


def _native() -> Transform:
    return T.ToTensor()


def _clip224() -> Transform:
    return T.Compose([T.Resize(224, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224), T.ToTensor()])


def _official224() -> Transform:
    return T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])


def _clip_preset(spec: DatasetSpec | None) -> Transform:
    return _native() if spec is not None and spec.native_size is not None else _clip224()


def _official_preset(spec: DatasetSpec | None) -> Transform:
    if spec is not None and spec.native_size is not None and (spec.offline or spec.name in _OFFICIAL_NATIVE):
        return _native()
    return _official224()


def _train_preset(spec: DatasetSpec | None) -> Transform:
    return _native() if spec is not None and spec.native_size is not None else _official224()


def _train_augment_preset(spec: DatasetSpec | None) -> Transform:
    size = spec.native_size if spec is not None and spec.native_size is not None else 224
    return T.Compose([T.RandomResizedCrop(size, scale=(0.5, 1.0)), T.RandomHorizontalFlip(), T.ToTensor()])


PRESETS: dict[str, Callable[[DatasetSpec | None], Transform]] = {
    "clip": _clip_preset,
    "official": _official_preset,
    "train": _train_preset,
    "train_augment": _train_augment_preset,
}


def make_transform(spec: DatasetSpec | None, preset: str = "clip") -> Transform:
    """The ``preset`` transform for ``spec`` (None: a folder of arbitrary images)."""
    return lookup(PRESETS, preset, "transform preset")(spec)


def resolve_transform(spec: DatasetSpec | None, transform: Transform | str | None) -> Transform:
    """A callable as given; a preset name; None -> the ``"clip"`` preset."""
    if transform is None or isinstance(transform, str):
        return make_transform(spec, transform or "clip")
    return transform
