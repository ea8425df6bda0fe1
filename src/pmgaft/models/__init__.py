"""CLIP models: loading (open_clip tags, local checkpoints of every common layout, hub folders, tiny configs),
pmgaft's weights format, the catalogue of public robust models, and the zero-shot classifier."""
from pmgaft.models.catalogue import CatalogueEntry, catalogue, find_entry
from pmgaft.models.checkpoint import (ModelRecord, all_finite, checkpoint_record, model_record, read_metadata,
                                      save_weights, weights_metadata)
from pmgaft.models.fast import stock_kernels, use_fast_kernels
from pmgaft.models.files import WeightsFile, read_weights
from pmgaft.models.hub_folder import HubModel, hub_base_arch, hub_label, hub_name, hub_record, resolve_hub
from pmgaft.models.loading import (NORMALIZATIONS, LoadedClip, list_models, load_clip, model_config,
                                   register_model_configs)
from pmgaft.models.recompute import recomputed_logits
from pmgaft.models.zeroshot import (ZeroShotClassifier, build_text_embeddings, preprocess_images,
                                    text_tower_hash)

__all__ = ["NORMALIZATIONS", "CatalogueEntry", "HubModel", "LoadedClip", "ModelRecord", "WeightsFile",
           "ZeroShotClassifier", "all_finite", "build_text_embeddings", "catalogue", "checkpoint_record",
           "find_entry", "hub_base_arch", "hub_label", "hub_name", "hub_record", "list_models", "load_clip", "model_config",
           "model_record", "preprocess_images", "read_metadata", "read_weights", "recomputed_logits",
           "register_model_configs", "resolve_hub", "save_weights", "stock_kernels", "text_tower_hash",
           "use_fast_kernels", "weights_metadata"]
