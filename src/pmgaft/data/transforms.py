"""Image transforms as data: resize/crop to [0, 1] tensors, never normalize (normalization is in the model).

A preset maps (dataset, model input size ``S``) to a :class:`Preprocess` record; the record builds the
transform, describes it for dry runs and gives the identity the decoded cache is keyed by -- one source for all
three. "R/C" = resize the shorter side to ``round(S * 256 / 224)``, centre-crop ``S`` (R256/C224 at 224).

* ``"clip"`` (default): sets with small fixed images (CIFAR 32 px, STL-10 96 px, PCAM 96 px, MNIST-likes 28 px,
  digits 8 px) stay at native size -- the zero-shot classifier upsamples bicubically inside its forward;
  everything else gets CLIP's own preprocessing, ``Resize(S, bicubic) + CenterCrop(S)``.
* ``"tga-zsr"`` (docs/protocols.md): images are attacked at the model's resolution. CIFAR-10/100, STL-10 and the
  offline small-image sets -> ``Resize((S, S))``; every other set (PCAM included) -> R/C.
* ``"official"`` (official-code, the released ``PMG_AFT.py``): CIFAR-10/100 and STL-10 at native size (the model
  upsamples inside, so the perturbation lives at native resolution), the offline small-image sets native too;
  every other set (PCAM included) -> R/C.
* ``"agft"`` (AGFT's evaluation, utils.py ``get_val_dataset``): CIFAR-10/100 and STL-10 at native size (the model
  upsamples inside), the offline small-image sets native too; every other set (PCAM included) ->
  ``Resize(S) + CenterCrop(S)``, i.e. Resize(224) + CenterCrop(224) at 224 (no 256 step).
* ``"ttc"`` (the test-time-counterattack evaluation, utils.py ``preprocess224``): R/C for every set, CIFAR and
  STL-10 included (a 32 px image is upscaled to 256, then cropped), so every attack works on S x S pixels.
* ``"train"``: the fine-tuning input of both reference codes: R/C for sets of large images (TinyImageNet,
  folders), native size for small-image sets; no augmentation.
* ``"train_augment"``: ``RandomResizedCrop`` + horizontal flip at the same sizes (optional; not the paper's).
* ``"train224"``: AGFT's fine-tuning input (its ``utils.py``: ``Resize(S)`` + ``CenterCrop(S)``, no augmentation):
  the shorter side straight to ``S``, centre crop ``S`` (R224/C224 at 224), bilinear; small-image sets native.

Interpolation: the reference codes build R/C and the square resize as ``transforms.Resize(256)`` and
``transforms.Resize((224, 224))`` (AGFT: ``Resize(224)``), i.e. with torchvision's default interpolation,
**bilinear** (antialiased on PIL images). Summaries call R256/C224 bicubic; the released code does not, and
the code is what produced the numbers, so :data:`REFERENCE_INTERPOLATION` is bilinear (one constant to change if
that is ever shown wrong).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import pmgaft  # noqa: F401  (torchvision shim)
from PIL import Image
from torchvision import transforms as T

from pmgaft.data.base import Transform
from pmgaft.data.decode import DECODE_VERSION
from pmgaft.data.spec import DatasetSpec
from pmgaft.utils import lookup

REFERENCE_INTERPOLATION = "bilinear"  # torchvision's Resize default, as the reference codes call it
# the sets both reference codes treat as small fixed images (everything offline with a native size joins them)
_REFERENCE_SMALL = frozenset({"cifar10", "cifar100", "stl10"})
_MODES = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}


@dataclass(frozen=True)
class Preprocess:
    """What one preset does to a PIL RGB image before ``ToTensor``.

    ``kind``: ``native`` (nothing), ``resize_crop`` (shorter side to ``resize``, centre crop ``size``),
    ``resize_square`` (to ``size`` x ``size``, aspect not kept) or ``random_crop`` (RandomResizedCrop to ``size``
    + horizontal flip). ``native`` is the dataset's fixed side where known (for the description only).
    """

    kind: str
    size: int | None = None
    resize: int | None = None
    interpolation: str = "bilinear"
    native: int | None = None

    @property
    def random(self) -> bool:
        """Whether two calls on one image may differ (such a transform cannot be cached)."""
        return self.kind == "random_crop"

    @property
    def output_side(self) -> int | None:
        """The square side of every output image, or None when it follows the input (native)."""
        return self.native if self.kind == "native" else self.size

    def pil_steps(self) -> list[Callable[[Image.Image], Image.Image]]:
        mode = _MODES[self.interpolation]
        if self.kind == "native":
            return []
        if self.kind == "resize_crop":
            return [T.Resize(self.resize, interpolation=mode), T.CenterCrop(self.size)]
        if self.kind == "resize_square":
            return [T.Resize((self.size, self.size), interpolation=mode)]
        return [T.RandomResizedCrop(self.size, scale=(0.5, 1.0), interpolation=mode), T.RandomHorizontalFlip()]

    def build(self) -> "PresetTransform":
        return PresetTransform(self)

    def describe(self) -> str:
        """One line for dry runs, e.g. ``Resize(256, bilinear) + CenterCrop(224)``."""
        if self.kind == "native":
            side = f"{self.native}x{self.native}" if self.native else "size"
            return f"native {side} (the model resizes inside, bicubic)"
        if self.kind == "resize_crop":
            return f"Resize({self.resize}, {self.interpolation}) + CenterCrop({self.size})"
        if self.kind == "resize_square":
            return f"Resize(({self.size}, {self.size}), {self.interpolation})"
        return f"RandomResizedCrop({self.size}, scale=(0.5, 1.0), {self.interpolation}) + RandomHorizontalFlip"

    def identity(self) -> dict[str, Any]:
        """A stable, JSON-able identity of the pixels this produces (a cache key part; decoding included)."""
        return {**asdict(self), "decode": DECODE_VERSION}


class PresetTransform:
    """PIL RGB -> float [3, H, W] in [0, 1]: the preset's PIL steps, then ``ToTensor``. Picklable (workers)."""

    def __init__(self, preprocess: Preprocess) -> None:
        self.preprocess = preprocess
        self.pil = T.Compose(preprocess.pil_steps())
        self._to_tensor = T.ToTensor()

    def __call__(self, image: Image.Image) -> Any:
        return self._to_tensor(self.pil(image))

    def __repr__(self) -> str:
        return f"PresetTransform({self.preprocess.describe()})"


def _native_side(spec: DatasetSpec | None) -> int | None:
    return spec.native_size if spec is not None else None


def _reference_resize_crop(image_size: int) -> Preprocess:
    return Preprocess("resize_crop", image_size, round(image_size * 256 / 224), REFERENCE_INTERPOLATION)


def _reference_small(spec: DatasetSpec | None) -> bool:
    """Small fixed images in both reference codes: CIFAR/STL-10, and the offline sets with a native size."""
    return spec is not None and spec.native_size is not None and (spec.offline or spec.name in _REFERENCE_SMALL)


def _clip_preset(spec: DatasetSpec | None, image_size: int) -> Preprocess:
    if _native_side(spec) is not None:
        return Preprocess("native", native=_native_side(spec))
    return Preprocess("resize_crop", image_size, image_size, "bicubic")


def _tga_zsr_preset(spec: DatasetSpec | None, image_size: int) -> Preprocess:
    if _reference_small(spec):
        return Preprocess("resize_square", image_size, interpolation=REFERENCE_INTERPOLATION,
                          native=_native_side(spec))
    return _reference_resize_crop(image_size)


def _official_preset(spec: DatasetSpec | None, image_size: int) -> Preprocess:
    if _reference_small(spec):
        return Preprocess("native", native=_native_side(spec))
    return _reference_resize_crop(image_size)


def _agft_preset(spec: DatasetSpec | None, image_size: int) -> Preprocess:
    if _reference_small(spec):
        return Preprocess("native", native=_native_side(spec))
    return Preprocess("resize_crop", image_size, image_size, REFERENCE_INTERPOLATION)


def _ttc_preset(spec: DatasetSpec | None, image_size: int) -> Preprocess:
    return _reference_resize_crop(image_size)


def _train_preset(spec: DatasetSpec | None, image_size: int) -> Preprocess:
    if _native_side(spec) is not None:
        return Preprocess("native", native=_native_side(spec))
    return _reference_resize_crop(image_size)


def _train224_preset(spec: DatasetSpec | None, image_size: int) -> Preprocess:
    if _native_side(spec) is not None:
        return Preprocess("native", native=_native_side(spec))
    return Preprocess("resize_crop", image_size, image_size, REFERENCE_INTERPOLATION)


def _train_augment_preset(spec: DatasetSpec | None, image_size: int) -> Preprocess:
    return Preprocess("random_crop", _native_side(spec) or image_size, interpolation="bilinear",
                      native=_native_side(spec))


PRESETS: dict[str, Callable[[DatasetSpec | None, int], Preprocess]] = {
    "clip": _clip_preset,
    "tga-zsr": _tga_zsr_preset,
    "official": _official_preset,
    "agft": _agft_preset,
    "ttc": _ttc_preset,
    "train": _train_preset,
    "train_augment": _train_augment_preset,
    "train224": _train224_preset,
}


def preprocess_for(spec: DatasetSpec | None, preset: str = "clip", image_size: int = 224) -> Preprocess:
    """The :class:`Preprocess` of ``preset`` for ``spec`` (None: a folder of arbitrary images) at input size
    ``image_size`` (the model's resolution, ``LoadedCLIP.image_size``)."""
    return lookup(PRESETS, preset, "transform preset")(spec, image_size)


def make_transform(spec: DatasetSpec | None, preset: str = "clip", image_size: int = 224) -> PresetTransform:
    """The ``preset`` transform for ``spec`` at model input size ``image_size``: PIL RGB -> [3, H, W] in [0, 1]."""
    return preprocess_for(spec, preset, image_size).build()


def describe_transform(spec: DatasetSpec | None, preset: str = "clip", image_size: int = 224) -> str:
    """One line for a dry run, e.g. ``"Resize((224, 224), bilinear)"``."""
    return preprocess_for(spec, preset, image_size).describe()


def transform_identity(transform: Any) -> dict[str, Any] | None:
    """The identity of a preset-built transform (a cache key part); None for any other callable."""
    preprocess = getattr(transform, "preprocess", None)
    return preprocess.identity() if isinstance(preprocess, Preprocess) else None


def resolve_transform(spec: DatasetSpec | None, transform: Transform | str | None,
                      image_size: int = 224) -> Transform:
    """A callable as given; a preset name; None -> the ``"clip"`` preset."""
    if transform is None or isinstance(transform, str):
        return make_transform(spec, transform or "clip", image_size)
    return transform
