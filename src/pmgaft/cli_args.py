"""Argument types shared by the ``pmgaft`` sub-commands (train, eval, quickstart): one parser per kind of value."""
from __future__ import annotations

import argparse


def parse_logit_scale(text: str) -> str | float:
    """``--logit-scale``: 'model' (CLIP's learned scale) or a positive number (1 = raw cosine logits)."""
    if text == "model":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--logit-scale takes 'model' or a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"--logit-scale must be a positive finite number, got {value}")
    return value
