"""Helpers that write tiny Cityscapes-layout trees into tmp_path for the data tests."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

LabelFn = Callable[[str, str, int], np.ndarray | None]


def write_pair(root: Path, split: str, city: str, stem: str, label: np.ndarray, kind: str = "labelIds") -> tuple[Path, Path]:
    """Write ``<stem>_leftImg8bit.png`` (random RGB of the label's size) and its label PNG."""
    img_dir, lab_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
    img_dir.mkdir(parents=True, exist_ok=True)
    lab_dir.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(len(stem)).integers(0, 256, (*label.shape, 3), dtype=np.uint8)
    image, lab = img_dir / f"{stem}_leftImg8bit.png", lab_dir / f"{stem}_gtFine_{kind}.png"
    Image.fromarray(rgb).save(image)
    Image.fromarray(label.astype(np.uint8)).save(lab)
    return image, lab


def make_tree(root: Path, cities: dict[str, list[str]], per_city: int, label_fn: LabelFn) -> None:
    """``cities``: split -> city names; ``label_fn(split, city, j)`` gives image j's labelIds map
    (``None`` ends that city early)."""
    for split, names in cities.items():
        for city in names:
            for j in range(per_city):
                label = label_fn(split, city, j)
                if label is None:
                    break
                write_pair(root, split, city, f"{city}_{j:06d}_000019", label)

