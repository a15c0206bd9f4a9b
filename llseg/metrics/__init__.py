"""Segmentation and continual-learning metrics (pure numpy/torch functions).

``confusion``: confusion matrices (rows = ground truth), IoU/mIoU, accuracies, task-restricted
prediction, old/new/all and hIoU. ``continual``: GEM ACC/BWT/FWT, Chaudhry forgetting, average
incremental mIoU and Ianvs' own BWT/FWT/MATRIX on a results matrix ``R[step, task]``.
"""
from llseg.metrics.confusion import (
    ConfusionMatrix,
    class_accuracy,
    confusion_matrix,
    hiou,
    iou_per_class,
    mean_iou,
    old_new_all,
    pixel_accuracy,
    restrict_target,
    restricted_argmax,
)
from llseg.metrics.continual import (
    average_incremental,
    forgetting,
    forgetting_per_step,
    gem_acc,
    gem_bwt,
    gem_fwt,
    ianvs_bwt,
    ianvs_fwt,
    ianvs_matrix,
    summarize,
)

__all__ = [
    "ConfusionMatrix",
    "average_incremental",
    "class_accuracy",
    "confusion_matrix",
    "forgetting",
    "forgetting_per_step",
    "gem_acc",
    "gem_bwt",
    "gem_fwt",
    "hiou",
    "ianvs_bwt",
    "ianvs_fwt",
    "ianvs_matrix",
    "iou_per_class",
    "mean_iou",
    "old_new_all",
    "pixel_accuracy",
    "restrict_target",
    "restricted_argmax",
    "summarize",
]
