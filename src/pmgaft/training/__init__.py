"""Fine-tuning CLIP's image encoder: ``train(config) -> run directory``, ``RECIPES``, ``TrainConfig``.

The library entry (:func:`train`) is what ``pmgaft train``, the quickstart and ``pmgaft reproduce`` call. A run
stopped by SIGTERM/SIGINT raises :class:`TrainingStopped`, a numerical fault :class:`NonFiniteError`; both leave
a run that ``--resume`` continues (see :mod:`pmgaft.training.checkpoint` for the run directory's layout).
"""
from pmgaft.training.checkpoint import BEST, CHECKPOINTS, CONFIG, LAST, LOG, latest_checkpoint, read_metadata
from pmgaft.training.config import TrainConfig, resolve_config
from pmgaft.training.loop import NonFiniteError, train
from pmgaft.training.recipes import RECIPES
from pmgaft.training.resume import resume_config
from pmgaft.training.signals import TrainingStopped

__all__ = ["BEST", "CHECKPOINTS", "CONFIG", "LAST", "LOG", "NonFiniteError", "RECIPES", "TrainConfig",
           "TrainingStopped", "latest_checkpoint", "read_metadata", "resolve_config", "resume_config", "train"]
