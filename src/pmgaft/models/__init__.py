"""CLIP models: loading (open_clip tags, local checkpoints of every common layout, tiny configs), pmgaft's
weights format, and the zero-shot classifier."""
from pmgaft.models.checkpoint import (ModelRecord, all_finite, checkpoint_record, model_record, read_metadata,
                                      save_weights, weights_metadata)
from pmgaft.models.fast import stock_kernels, use_fast_kernels
from pmgaft.models.files import WeightsFile, read_weights
from pmgaft.models.loading import NORMALIZATIONS, LoadedClip, list_models, load_clip, register_model_configs
from pmgaft.models.recompute import recomputed_logits
from pmgaft.models.zeroshot import (ZeroShotClassifier, build_text_embeddings, preprocess_images,
                                    text_tower_hash)

__all__ = ["NORMALIZATIONS", "LoadedClip", "ModelRecord", "WeightsFile", "ZeroShotClassifier", "all_finite",
           "build_text_embeddings", "checkpoint_record", "list_models", "load_clip", "model_record",
           "preprocess_images", "read_metadata", "read_weights", "recomputed_logits", "register_model_configs",
           "save_weights", "stock_kernels", "text_tower_hash", "use_fast_kernels", "weights_metadata"]
