"""CLIP models: loading (open_clip tags, local checkpoints, tiny configs) and the zero-shot classifier."""
from pmgaft.models.loading import (NORMALIZATIONS, LoadedClip, list_models, load_checkpoint_into, load_clip,
                                   read_state_dict, register_model_configs)
from pmgaft.models.zeroshot import (ZeroShotClassifier, build_text_embeddings, preprocess_images,
                                    text_tower_hash)

__all__ = ["NORMALIZATIONS", "LoadedClip", "ZeroShotClassifier", "build_text_embeddings", "list_models",
           "load_checkpoint_into", "load_clip", "preprocess_images", "read_state_dict", "register_model_configs", "text_tower_hash"]
