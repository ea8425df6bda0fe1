"""Datasets: a registry of the paper's 16 sets plus offline ones, one loader, stratified subsets.

Every dataset yields ``(image [3, H, W] float in [0, 1], int label)`` -- never normalized, normalization lives
inside the model -- and exposes ``.classes`` (raw class names in label order) and ``.targets`` (cheap labels).
"""
from pmgaft.data.base import ImageDataset
from pmgaft.data.registry import DATASETS, PAPER_DATASETS, ZERO_SHOT_DATASETS, load_dataset
from pmgaft.data.spec import DatasetSpec
from pmgaft.data.subset import stratified_subset
from pmgaft.data.transforms import PRESETS as TRANSFORM_PRESETS
from pmgaft.data.transforms import Preprocess, describe_transform, make_transform, preprocess_for

__all__ = ["DATASETS", "DatasetSpec", "ImageDataset", "PAPER_DATASETS", "Preprocess", "TRANSFORM_PRESETS",
           "ZERO_SHOT_DATASETS", "describe_transform", "load_dataset", "make_transform", "preprocess_for",
           "stratified_subset"]
