"""``pmgaft reproduce``: train the paper's methods, evaluate them under a protocol, write the table.

An orchestrator, like :mod:`pmgaft.quickstart`: it sits above the library and calls its entry points
(:func:`pmgaft.training.train`, :func:`pmgaft.evaluation.run_grid`, :func:`pmgaft.bench.per_image_costs`), so
that evaluation never imports training or bench.
"""
from pmgaft.reproduce.command import Plan, add_arguments, build_plan, estimate, execute, run

__all__ = ["Plan", "add_arguments", "build_plan", "estimate", "execute", "run"]
