"""Helpers that write tiny ISPRS-layout trees (colour-coded TIFF labels) into tmp_path for the data tests."""
from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from llseg.data.isprs.layout import tile_files
from llseg.data.labels import IGNORE_INDEX, ISPRS_SOURCE_CLASSES

IMPERVIOUS, BUILDING, LOW_VEGETATION, TREE, CAR, CLUTTER = range(6)
COLOURS = np.zeros((256, 3), dtype=np.uint8)
COLOURS[: len(ISPRS_SOURCE_CLASSES)] = [colour for _, colour in ISPRS_SOURCE_CLASSES]
COLOURS[IGNORE_INDEX] = (0, 0, 0)  # the boundary colour of the eroded labels


def quadrants(parts: Sequence[Sequence[int]], size: int = 16) -> np.ndarray:
    """``uint8 (2 size, 2 size)`` source ids: quadrant q (top-left, top-right, bottom-left,
    bottom-right) holds the classes ``parts[q]`` as equal horizontal bands."""
    label = np.zeros((2 * size, 2 * size), dtype=np.uint8)
    for q, classes in enumerate(parts):
        y, x = divmod(q, 2)
        for j, c in enumerate(classes):
            rows = slice(y * size + j * size // len(classes), y * size + (j + 1) * size // len(classes))
            label[rows, x * size : (x + 1) * size] = c
    return label


def write_tile(
    root: Path, domain: str, key: str, ids: np.ndarray, *, label_rel: str | None = None, compression: str | None = None
) -> tuple[Path, Path]:
    """Write a tile (random 3-band image of the label's size) and its colour-coded label TIFF.

    ``label_rel``: the label's path relative to the domain folder (default: the first layout).
    """
    image_rel, default_label = tile_files(domain, key)
    image, label = root / domain / image_rel, root / domain / (label_rel or default_label)
    for path in (image, label):
        path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(zlib.crc32(f"{domain} {key}".encode())).integers(0, 256, (*ids.shape, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(image, format="TIFF", compression=compression)
    Image.fromarray(COLOURS[ids]).save(label, format="TIFF", compression=compression)
    return image, label
