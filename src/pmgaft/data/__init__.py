"""Datasets: a registry of the paper's 16 sets plus offline ones, one loader, stratified subsets, decode-once.

Every dataset yields ``(image [3, H, W] float in [0, 1], int label)`` -- never normalized, normalization lives
inside the model -- and exposes ``.classes`` (raw class names in label order) and ``.targets`` (cheap labels).
A registered set is read from its torchvision layout under a data root or from its Hugging Face hub copy
(``load_dataset(..., source="hub")``, :mod:`pmgaft.data.hub`). Images are decoded to 8-bit RGB with their true
range (:mod:`pmgaft.data.decode`); :func:`build_decoded` decodes and preprocesses a subset once for a whole
evaluation grid (:mod:`pmgaft.data.cache`).
"""
from pmgaft.data.base import ImageDataset
from pmgaft.data.cache import build_decoded
from pmgaft.data.decoded import DecodedImages
from pmgaft.data.hub_sources import HUB_SOURCES
from pmgaft.data.reference import describe_data, reference_split
from pmgaft.data.registry import DATASETS, PAPER_DATASETS, ZERO_SHOT_DATASETS, load_dataset
from pmgaft.data.scan import CorruptReport, scan_images
from pmgaft.data.sources import SOURCES
from pmgaft.data.spec import DatasetSpec
from pmgaft.data.subset import stratified_subset
from pmgaft.data.transforms import PRESETS as TRANSFORM_PRESETS
from pmgaft.data.transforms import Preprocess, describe_transform, make_transform, preprocess_for

__all__ = ["DATASETS", "CorruptReport", "DatasetSpec", "DecodedImages", "HUB_SOURCES", "ImageDataset",
           "PAPER_DATASETS", "Preprocess", "SOURCES", "TRANSFORM_PRESETS", "ZERO_SHOT_DATASETS", "build_decoded",
           "describe_data",
           "describe_transform", "load_dataset", "make_transform", "preprocess_for", "reference_split",
           "scan_images", "stratified_subset"]
