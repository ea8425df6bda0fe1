"""Export a pmgaft run or checkpoint as open_clip's hub folder, with a model card and robustness.json, and
upload it to the Hugging Face hub (``pmgaft export``)."""
from pmgaft.export.facts import ModelFacts, Source, find_source
from pmgaft.export.folder import FILES, Export, export_folder
from pmgaft.export.push import push_folder
from pmgaft.export.robustness import Measured, measured, robustness_doc

__all__ = ["FILES", "Export", "Measured", "ModelFacts", "Source", "export_folder", "find_source", "measured",
           "push_folder", "robustness_doc"]
