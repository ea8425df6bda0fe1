"""Every stored image as 8-bit RGB with its true range, and decode errors that name the file.

Pillow's ``convert("RGB")`` clips wide images: a 16-bit PNG (mode ``I;16``) becomes 255 wherever its value is
above 255, i.e. almost everywhere. :func:`to_rgb` scales instead:

* ``I;16``, ``I;16B``, ``I;16L``, ``I;16N`` and ``I`` (32-bit integer, accepted when its values lie in 0..65535,
  the range Pillow gives 16-bit files in that mode) -> ``round(v * 255 / 65535)``, computed exactly in integers
  as ``(v + 128) // 257``. An 8-bit image stored as 16 bits (``v = 257 k``) comes back as exactly ``k``; a true
  16-bit image loses its low bits: the error is at most 0.5/255 (0.2 % of the range). Keeping 8 bits is what
  lets every transform preset (PIL resizing) and the uint8 decoded cache work on it unchanged.
* ``F`` (32-bit float) -> ``round(v * 255)`` when every value is in [0, 1]; any other range is refused (its
  meaning is unknown), never clipped.
* ``P`` with transparency goes through ``RGBA``; alpha (``LA``, ``RGBA``, ``PA``...) is dropped, keeping the
  stored colours -- what torchvision's ``pil_loader``, and so every reference code, does. ``1``, ``L``,
  ``CMYK``, ``YCbCr`` and the rest use Pillow's own conversion (exact for these modes).

Only the first frame of a multi-frame file (GIF, TIFF) is used, as Pillow opens it.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# bump when decoding changes what a file becomes: part of every decoded-cache key
DECODE_VERSION = "rgb8-v1"

# what a damaged, truncated or exotic file raises inside Pillow (SyntaxError: broken PNG chunks)
DECODE_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, SyntaxError, EOFError, struct.error,
                                                  zlib.error, Image.DecompressionBombError)
_WIDE_INTEGER = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_WITH_ALPHA = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})


def load_image(path: str | Path) -> Image.Image:
    """The image at ``path``, fully read (the file is closed again), in its stored mode."""
    with open(path, "rb") as f:
        image = Image.open(f)
        image.load()
    return image


def _gray8(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(values, dtype=np.uint8), "L").convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB with its true range (see the module docstring); ValueError for unknown ranges."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _WIDE_INTEGER:
        v = np.asarray(image).astype(np.int64)
        if v.size and (v.min() < 0 or v.max() > 65535):
            raise ValueError(f"integer image (mode {mode}) with values in [{v.min()}, {v.max()}]: only 16-bit "
                             f"ranges (0..65535) have a known meaning; save it as an 8- or 16-bit PNG")
        return _gray8((v + 128) // 257)
    if mode == "F":
        v = np.asarray(image, dtype=np.float64)
        if v.size and not (np.isfinite(v).all() and v.min() >= 0.0 and v.max() <= 1.0):
            raise ValueError(f"float image (mode F) with values in [{np.nanmin(v)}, {np.nanmax(v)}]: only [0, 1] "
                             f"has a known meaning; rescale it or save it as an 8- or 16-bit PNG")
        return _gray8(np.round(v * 255))
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _WITH_ALPHA:
        image = image.convert("RGBA") if image.mode != "RGBA" else image
        return image.convert("RGB")  # alpha dropped, stored colours kept (torchvision's pil_loader does the same)
    return image.convert("RGB")
