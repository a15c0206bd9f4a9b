"""Segmentation models behind one registry: ``create_model(name, num_classes=...)``.

Importing this package registers every model (``list_models()`` names them). Each model returns
logits N×C×H×W at the input size and grows its classifier with ``add_classes(num_new)``.
"""
from . import erfnet as _erfnet  # noqa: F401  (registers "erfnet")
from .erfnet import ERFNet
from .registry import (
    SegmentationModel,
    create_model,
    grow_classifier,
    list_models,
    load_weights,
    register_model,
)

__all__ = [
    "ERFNet",
    "SegmentationModel",
    "create_model",
    "grow_classifier",
    "list_models",
    "load_weights",
    "register_model",
]
