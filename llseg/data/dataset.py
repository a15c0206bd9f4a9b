"""Torch datasets over (image, train-id label) file pairs, as listed by index files.

Labels on disk are train-id maps (0..C-1, 255 = ignore). A dataset maps them to *channel*
indices of the model being trained through a ``uint8[256]`` lookup table, so class order in the
model (order of arrival) is independent of dataset train ids.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from llseg.data.imageio import read_label_png, read_rgb
from llseg.data.labels import IGNORE_INDEX
from llseg.data.transforms import TrainAugment, normalize, resize_pair, to_unit_float
from llseg.errors import DataError


class DecodedCache:
    """In-memory cache of decoded images/labels, bounded by ``max_bytes`` (first come, first kept)."""

    def __init__(self, max_bytes: int = 2 << 30) -> None:
        self.max_bytes = max_bytes
        self._items: dict[tuple[str, str], np.ndarray] = {}
        self._bytes = 0

    def get(self, kind: str, path: Path) -> np.ndarray:
        key = (kind, str(path))
        hit = self._items.get(key)
        if hit is not None:
            return hit
        array = read_rgb(path) if kind == "rgb" else read_label_png(path)
        if not array.flags.writeable:  # torch.from_numpy needs writable memory
            array = array.copy()
        if self._bytes + array.nbytes <= self.max_bytes:
            self._items[key] = array
            self._bytes += array.nbytes
        return array


def label_counts(label: np.ndarray, num_classes: int, path: Path) -> np.ndarray:
    """Pixel count per train id (length ``num_classes``); ``DataError`` for ids outside 0..C-1 and 255."""
    counts = np.bincount(label.ravel(), minlength=256)
    bad = np.flatnonzero(counts[num_classes:IGNORE_INDEX])
    if bad.size:
        raise DataError(
            f"label map {path} contains ids {(bad + num_classes).tolist()} outside the {num_classes} train ids "
            f"and {IGNORE_INDEX} (ignore); regenerate it with 'llseg prepare' or map it to train ids"
        )
    return counts[:num_classes]


def channel_lut(classes: Sequence[int]) -> np.ndarray:
    """``uint8[256]`` table: train id -> channel index of ``classes``; every other id -> 255."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lut[np.asarray(classes, dtype=np.int64)] = np.arange(len(classes), dtype=np.uint8)
    return lut


class SegmentationPairs(Dataset):
    """(image, label) pairs -> (normalised float 3×H×W, int64 H×W channel labels).

    Args:
        images, labels: equally long lists of file paths (RGB images; train-id label PNGs).
        lut: train id -> channel lookup (see :func:`channel_lut`).
        augment: training augmentation, or ``None`` for none.
        size: (H, W) to resize to when ``augment`` is ``None`` (evaluation input size).
        seed: base seed; sample ``i`` of epoch ``e`` uses seed ``(seed, e, i)`` so runs repeat exactly.
        saliency: optional saliency map per image (grey PNG, > 0 = salient, same size as the
            label); pixels of train id ``relabel[0]`` that are not salient get channel
            ``relabel[1]`` (SSUL's unknown labelling: salient background stays unknown).
    """

    def __init__(
        self,
        images: Sequence[Path],
        labels: Sequence[Path],
        *,
        lut: np.ndarray,
        augment: Optional[TrainAugment] = None,
        size: Optional[tuple[int, int]] = None,
        seed: int = 0,
        cache: Optional[DecodedCache] = None,
        saliency: Optional[Sequence[Path]] = None,
        relabel: tuple[int, int] = (0, 1),
    ) -> None:
        if len(images) != len(labels) or (saliency is not None and len(saliency) != len(images)):
            raise ValueError(f"{len(images)} images but {len(labels)} labels"
                             + ("" if saliency is None else f" and {len(saliency)} saliency maps"))
        self.images, self.labels = list(images), list(labels)
        lut = np.asarray(lut)
        if lut.shape != (256,) or not np.issubdtype(lut.dtype, np.integer) or lut.min() < 0 or lut.max() > 255:
            raise ValueError(f"lut must map the 256 train ids to channels 0..255 (see channel_lut), got "
                             f"{lut.dtype} {lut.shape} values")
        self.lut = lut.astype(np.uint8)
        self.augment, self.size, self.seed = augment, size, seed
        self.cache = cache or DecodedCache()
        self.saliency, self.relabel = (None if saliency is None else list(saliency)), relabel
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rgb = self.cache.get("rgb", self.images[index])
        raw = self.cache.get("label", self.labels[index])
        if rgb.shape[:2] != raw.shape:
            raise DataError(f"image {self.images[index]} is {rgb.shape[:2]} but label {self.labels[index]} is {raw.shape}")
        image = torch.from_numpy(rgb).permute(2, 0, 1)  # uint8 until after the flip
        label = torch.from_numpy(np.take(self.lut, raw))  # uint8 until the end: cheaper flips and resizes
        if self.saliency is not None:
            salient = self.cache.get("label", self.saliency[index])
            if salient.shape != raw.shape:
                raise DataError(f"saliency map {self.saliency[index]} is {salient.shape} but label {self.labels[index]} is {raw.shape}")
            plain = torch.from_numpy((raw == self.relabel[0]) & (salient == 0))
            label = torch.where(plain, self.relabel[1], label)
        if self.augment is not None:
            gen = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFFFFFF)
            image, label = self.augment(image, label, gen)
        elif self.size is not None:
            image, label = resize_pair(to_unit_float(image), label, self.size)
        return normalize(to_unit_float(image)), label.long()
