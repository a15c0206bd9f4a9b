"""Scores of an incrementally trained model on a labelled set, from prediction records.

One :class:`IncrementalScorer` accumulates, over a whole dataset, the confusion matrices behind:

* ``accuracy``: class-incremental mIoU over the classes that occur in the ground truth (classes
  not learned yet score 0). This is the model-eval metric of the Ianvs benchmarks, so
  R[i][j] = mIoU on task j's classes after stage i when the labels are task j's labels;
* ``mIoU_task{k}``: Klingner's task-restricted mIoU: argmax inside group k's channels, ground
  truth of other classes ignored (docs/methods.md §1.5);
* ``mIoU_task1+2+..+k``: the same restricted to the union of groups 1..k (the last one is the
  plain mIoU over all learned classes);
* ``mIoU_old`` / ``mIoU_new`` / ``mIoU_all`` / ``hIoU``: one confusion matrix over the learned
  classes (ground truth of classes not learned yet ignored), old = the first group.

Classes a record names ``unscored`` (ADE20K's "other") are left out of every score and their
ground-truth pixels are ignored, as the class-incremental ADE20K papers score only the 150 classes.
"""
from __future__ import annotations

import numpy as np

from llseg.data.predictions import Prediction
from llseg.metrics.confusion import confusion_stack, hiou, iou_per_class, mean_iou


def union_name(k: int) -> str:
    """Metric name of the union of groups 1..k, e.g. ``mIoU_task1+2+3``."""
    return "mIoU_task" + "+".join(str(i) for i in range(1, k + 1))


class IncrementalScorer:
    """Accumulate prediction records against train-id ground truth (H×W uint8, 255 = ignore)."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.groups: list[list[int]] | None = None
        self.full = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.learned = np.zeros_like(self.full)
        self.per_group: list[np.ndarray] = []
        self.per_prefix: list[np.ndarray] = []
        self.unscored: tuple[int, ...] = ()

    def update(self, prediction: Prediction, target: np.ndarray) -> None:
        if prediction.pred.shape != target.shape:
            raise ValueError(f"prediction is {prediction.pred.shape} but the label is {target.shape}")
        groups = prediction.groups
        if self.groups is None:
            self.groups = groups
            self.per_group = [np.zeros_like(self.full) for _ in groups]
            self.per_prefix = [np.zeros_like(self.full) for _ in groups]
            self.unscored = tuple(prediction.unscored)
        elif groups != self.groups:
            raise ValueError(f"prediction records mix models: class groups {groups} vs {self.groups}")
        if self.unscored:
            target = np.where(np.isin(target, self.unscored), np.uint8(255), target).astype(target.dtype)
        pred, group_pred, prefix_pred = prediction.pred, prediction.group_pred, prediction.prefix_pred
        outside = pred == 255  # outside the evaluation crop (``eval_crop``): not scored
        if outside.any():
            target = np.where(outside, np.uint8(255), target).astype(target.dtype)
            pred, group_pred, prefix_pred = (np.where(m == 255, np.uint8(0), m).astype(m.dtype)
                                             for m in (pred, group_pred, prefix_pred))
        maps = [pred[None], group_pred, prefix_pred]
        if any(m.shape[1:] != target.shape or len(m) != n for m, n in zip(maps, (1, len(groups), len(groups)))):
            raise ValueError(
                f"group_pred {group_pred.shape} / prefix_pred {prefix_pred.shape} do not "
                f"hold {len(groups)} maps of the label's shape {target.shape}"
            )
        # One pass over the image for all 2G+1 maps. Restricting the ground truth to some classes
        # (other pixels ignored) keeps exactly those classes' rows, so restriction is row selection.
        # The class-incremental map usually equals the last prefix map (argmax over every learned
        # class): then it is counted once.
        same = np.array_equal(pred, prefix_pred[-1])
        counts = confusion_stack([*(() if same else (pred,)), *group_pred, *prefix_pred],
                                 target, self.num_classes)
        if same:
            counts = np.concatenate([counts[-1:], counts])
        self.full += counts[0]
        union: list[int] = []
        for k, classes in enumerate(groups):
            union = union + classes
            self.per_group[k][classes] += counts[1 + k][classes]
            self.per_prefix[k][union] += counts[1 + len(groups) + k][union]
        self.learned[union] += counts[0][union]

    def accuracy(self) -> float:
        present = np.flatnonzero(self.full.sum(1)).tolist()
        if not present:
            raise ValueError("no labelled pixel in the evaluated data: every ground-truth pixel is 255 (ignore)")
        return mean_iou(self.full, classes=present)

    def class_iou(self) -> np.ndarray:
        """IoU per train id (``num_classes`` entries) of the class-incremental prediction.

        Labelled classes the model has not learned score 0; NaN: never labelled nor predicted.
        """
        return iou_per_class(self.full)

    def table(self) -> dict[str, float | None]:
        """All scores; a score with no labelled or predicted pixel of its classes is ``None``."""
        if self.groups is None:
            raise ValueError("nothing scored yet")

        def safe(conf: np.ndarray, classes: list[int]) -> float | None:
            try:
                return mean_iou(conf, classes=classes)
            except ValueError:
                return None

        scores: dict[str, float | None] = {"accuracy": self.accuracy()}
        groups = [[c for c in g if c not in self.unscored] for g in self.groups]
        union: list[int] = []
        for k, classes in enumerate(groups, start=1):
            union = union + classes
            scores[f"mIoU_task{k}"] = safe(self.per_group[k - 1], classes)
            if k > 1:
                scores[union_name(k)] = safe(self.per_prefix[k - 1], union)
        old = groups[0]
        new = [c for g in groups[1:] for c in g]
        old_score = safe(self.learned, old)
        new_score = safe(self.learned, new) if new else None
        scores["mIoU_old"], scores["mIoU_new"] = old_score, new_score
        scores["mIoU_all"] = safe(self.learned, old + new)
        scores["hIoU"] = hiou(old_score, new_score) if old_score is not None and new_score is not None else None
        return scores


def table_columns(table: dict[str, float | None]) -> list[str]:
    """Report columns in Klingner's order (Task 1, Task 2, Task 1∪2, Task 3, ...), then the rest."""
    columns: list[str] = []
    k = 1
    while f"mIoU_task{k}" in table:
        columns.append(f"mIoU_task{k}")
        if k > 1:
            columns.append(union_name(k))
        k += 1
    return columns + [c for c in ("accuracy", "mIoU_old", "mIoU_new", "mIoU_all", "hIoU") if c in table]


def _percent_cell(value: float | None) -> str:
    """A table cell: the score in percent with one decimal, or "–" when missing."""
    return "–" if value is None else f"{100 * value:.1f}"


def format_table(rows: dict[str, dict[str, float | None]]) -> str:
    """Markdown table of score dicts (one row per name), values in percent with one decimal."""
    columns = table_columns(max(rows.values(), key=len))  # the row with the most groups
    header = "| | " + " | ".join(c.replace("mIoU_", "") for c in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for name, table in rows.items():
        cells = [_percent_cell(table.get(c)) for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
