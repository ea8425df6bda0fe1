"""torchvision compatibility shim.

PyPI's torchvision wheels are CUDA builds. Next to a CPU-only torch their C++ extension cannot load, and then
``import torchvision`` dies in ``torchvision/_meta_registrations.py`` with ``operator torchvision::nms does not
exist`` -- which also breaks open_clip and timm, which import torchvision.

:func:`apply` imports torchvision once; only if that fails for exactly this reason does it register the schemas
of the two operators the meta registrations need (``torchvision::nms`` and ``torchvision::qnms``) and import
again. Where torchvision's own extension loads nothing is registered and nothing changes. The detection ops
(``nms``, ``roi_align`` ...) stay unusable in the shimmed case; pmgaft never calls them.
"""
from __future__ import annotations

import sys

_MISSING_OP = "torchvision::nms does not exist"
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor qdets, Tensor qscores, float iou_threshold) -> Tensor",
)
_library = None  # keeps the torch.library.Library alive (dropping it would unregister the schemas)
applied = False  # True when the shim had to register the schemas


def _forget_torchvision() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def apply() -> bool:
    """Make ``import torchvision`` work. Returns True if the shim had to register the operator schemas."""
    global _library, applied
    if applied or "torchvision" in sys.modules:
        return applied
    try:
        import torchvision  # noqa: F401
        return False
    except RuntimeError as err:
        if _MISSING_OP not in str(err):
            raise
    import torch

    _forget_torchvision()  # the failed import left half-initialised modules behind
    _library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        _library.define(schema)
    applied = True
    import torchvision  # noqa: F401,F811

    return True
