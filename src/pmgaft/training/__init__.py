"""Fine-tuning CLIP's image encoder: ``train(config) -> run directory``, ``RECIPES``, ``TrainConfig``.

The library entry (:func:`train`) is what ``pmgaft train``, the quickstart and ``pmgaft reproduce`` call.
"""
from pmgaft.training.checkpoint import BEST, CONFIG, LAST, LOG, STATE, read_metadata
from pmgaft.training.config import TrainConfig, resolve_config
from pmgaft.training.loop import train
from pmgaft.training.recipes import RECIPES

__all__ = ["BEST", "CONFIG", "LAST", "LOG", "RECIPES", "STATE", "TrainConfig", "read_metadata", "resolve_config",
           "train"]
