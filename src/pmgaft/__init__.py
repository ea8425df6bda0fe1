"""pmgaft: zero-shot adversarial robustness of CLIP.

PMG-AFT (Wang et al., CVPR 2024), its baselines (CLIP, FT-clean, TeCoA, FARE, TGA-ZSR) and the 16-dataset
zero-shot robustness evaluation. Images are in [0, 1] outside the model; every model callable maps
``x [B, 3, H, W] in [0, 1] -> logits [B, C]``.
"""
from pmgaft import _compat

_compat.apply()  # before anything imports torchvision / open_clip / timm

__version__ = "0.1.0"

__all__ = ["__version__"]
