"""Prediction records: what estimators write per image and what metrics read back.

One compressed ``.npz`` per image, so results survive Sedna's integration step (a list of paths,
never ragged arrays) and task-restricted scores can be computed later without logits.

Keys (all maps H×W at the label resolution, values are dataset train ids; 255 only outside the
evaluation crop of ``eval_crop``, where a pixel is not scored):

* ``pred``: argmax over every learned class (class-incremental prediction);
* ``group_pred``: G×H×W, argmax restricted to the classes of group g (Klingner's "Task g");
* ``prefix_pred``: G×H×W, argmax restricted to groups 0..g (Klingner's "Task 1∪..∪g");
* ``classes``: learned train ids in channel order; ``group_sizes``: classes per group, in order;
* ``num_classes``: number of classes of the dataset (so metrics can size confusion matrices);
* ``unscored``: classes left out of every score, their ground-truth pixels ignored (ADE20K's
  "other", :attr:`llseg.data.labels.DatasetInfo.unscored`); absent in older records (none).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from llseg.errors import DataError


@dataclass(frozen=True)
class Prediction:
    pred: np.ndarray
    group_pred: np.ndarray
    prefix_pred: np.ndarray
    classes: np.ndarray
    group_sizes: np.ndarray
    num_classes: int
    unscored: tuple[int, ...] = ()

    @property
    def groups(self) -> list[list[int]]:
        """Learned classes (train ids) per group, in learning order."""
        bounds = np.cumsum(self.group_sizes)[:-1]
        return [part.tolist() for part in np.split(self.classes, bounds)]


def predictions_from_logits(logits: torch.Tensor, classes: list[int], group_sizes: list[int]) -> tuple[torch.Tensor, ...]:
    """Class-incremental and restricted argmax maps from logits.

    Every channel is read once: each group's maximum and its class, then the prefixes by comparing
    group maxima. Ties go to the lower channel, as with ``argmax``. Channels-last logits (ERFNet's)
    are reduced with ``max`` over dim 1; contiguous NCHW logits (DeepLabV3's) with one element-wise
    pass per channel, because CPU reductions over a strided dim 1 are slow (VOC 15-1 at 512x512:
    188 -> 12 ms per image with the upsampling).

    Args:
        logits: N×K×H×W, channel k scores class ``classes[k]``.
        classes: train id of each channel (K entries).
        group_sizes: sizes of the channel blocks, summing to K.

    Returns:
        ``(pred N×H×W, group_pred N×G×H×W, prefix_pred N×G×H×W)`` as uint8 train ids.
    """
    if sum(group_sizes) != logits.shape[1] or len(classes) != logits.shape[1]:
        raise ValueError(f"{logits.shape[1]} channels but classes={len(classes)}, group sizes sum to {sum(group_sizes)}")
    lut = torch.as_tensor(classes, dtype=torch.uint8, device=logits.device)
    channels_last = logits.stride(1) == 1 and logits.shape[1] > 1
    group_maps: list[torch.Tensor] = []
    prefix_maps: list[torch.Tensor] = []
    prefix_best: torch.Tensor | None = None  # running maximum over the groups so far; its map is prefix_maps[-1]
    start = 0
    for size in group_sizes:
        if channels_last:
            best, index = logits[:, start : start + size].max(1)
            ids = lut[start + index]
        else:
            best = logits[:, start].clone()
            ids = torch.full(best.shape, classes[start], dtype=torch.uint8, device=logits.device)
            for k in range(start + 1, start + size):
                channel = logits[:, k]
                ids.masked_fill_(channel > best, classes[k])
                torch.maximum(best, channel, out=best)
        group_maps.append(ids)
        if prefix_best is None:
            prefix_best, prefix_map = best, ids
        else:
            prefix_map = torch.where(best > prefix_best, ids, prefix_maps[-1])
            prefix_best = torch.maximum(prefix_best, best)
        prefix_maps.append(prefix_map)
        start += size
    return prefix_maps[-1], torch.stack(group_maps, 1), torch.stack(prefix_maps, 1)


def save_prediction(
    path: Path,
    *,
    pred: np.ndarray,
    group_pred: np.ndarray,
    prefix_pred: np.ndarray,
    classes: list[int],
    group_sizes: list[int],
    num_classes: int,
    unscored: tuple[int, ...] = (),
) -> None:
    """Write one prediction record (see the module docstring) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.savez_compressed(
            handle,
            pred=pred.astype(np.uint8),
            group_pred=group_pred.astype(np.uint8),
            prefix_pred=prefix_pred.astype(np.uint8),
            classes=np.asarray(classes, dtype=np.int64),
            group_sizes=np.asarray(group_sizes, dtype=np.int64),
            num_classes=np.int64(num_classes),
            unscored=np.asarray(unscored, dtype=np.int64),
        )


def load_prediction(path: str | Path) -> Prediction:
    """Read a prediction record; ``DataError`` names the file if it is missing or not a record."""
    path = Path(path)
    try:
        with np.load(path) as data:
            return Prediction(
                pred=data["pred"],
                group_pred=data["group_pred"],
                prefix_pred=data["prefix_pred"],
                classes=data["classes"],
                group_sizes=data["group_sizes"],
                num_classes=int(data["num_classes"]),
                unscored=tuple(int(k) for k in data["unscored"]) if "unscored" in data else (),
            )
    except FileNotFoundError:
        raise DataError(f"prediction record {path} does not exist; rerun the prediction step") from None
    except (KeyError, ValueError, OSError) as exc:
        raise DataError(f"{path} is not an llseg prediction record ({exc}); rerun the prediction step") from None
