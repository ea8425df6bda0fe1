"""Evaluation: the model x dataset x attack x eps grid, result cards and reports.

Library entry points (the CLI modules ``cli`` and ``report`` wrap them; ``pmgaft reproduce`` calls them too)::

    from pmgaft.evaluation import PROTOCOLS, GridConfig, model_specs, run_grid
    cards = run_grid(model_specs("ViT-B-32", "openai", []), GridConfig(PROTOCOLS["paper"], out=Path("results")))
"""
from pmgaft.evaluation.grid import GridConfig, cells_for, run_grid
from pmgaft.evaluation.models import ModelSpec, model_specs, parse_checkpoint
from pmgaft.evaluation.protocols import PROTOCOLS, Protocol
from pmgaft.evaluation.results import SCHEMA, Cell, load_results

__all__ = ["PROTOCOLS", "SCHEMA", "Cell", "GridConfig", "ModelSpec", "Protocol", "cells_for", "load_results",
           "model_specs", "parse_checkpoint", "run_grid"]
