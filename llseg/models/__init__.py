"""Segmentation models behind one registry: ``create_model(name, num_classes=...)``.

Importing this package registers every model (``list_models()`` names them). Each model returns
logits N×C×H×W at the input size and grows its classifier with ``add_classes(num_new)``.
"""
from . import deeplabv3 as _deeplabv3  # noqa: F401  (registers "deeplabv3_*")
from . import erfnet as _erfnet  # noqa: F401  (registers "erfnet")
from .deeplabv3 import DeepLabV3, ExpandingClassifier, PerStepHeads
from .erfnet import ERFNet
from .registry import (
    ExpandingClassifierModel,
    FeatureModel,
    SegmentationModel,
    StepHeadsModel,
    create_model,
    grow_classifier,
    list_models,
    load_weights,
    model_accepts,
    model_train_defaults,
    models_accepting,
    register_model,
)

__all__ = [
    "DeepLabV3",
    "ERFNet",
    "ExpandingClassifier",
    "ExpandingClassifierModel",
    "FeatureModel",
    "PerStepHeads",
    "SegmentationModel",
    "StepHeadsModel",
    "create_model",
    "grow_classifier",
    "list_models",
    "load_weights",
    "model_accepts",
    "model_train_defaults",
    "models_accepting",
    "register_model",
]
