"""A small generated tree in the exact ADEChallengeData2016 layout (``llseg synth --kind ade20k``).

For tests and CPU demos of the ADE20K protocols, not a stand-in for the real data: every image
shows ``objects_per_image`` axis-aligned rectangles of distinct classes on an "other" (0)
background, one in each cell of a grid (so none is hidden); a rectangle is its class's palette
colour (:data:`llseg.data.labels.ADE20K`) plus noise, so classes are learnable from colour.
Classes are dealt round-robin from seeded permutations, so every one of the 150 classes appears
in at least ``train_images * objects_per_image // 150`` training images (2 with the defaults,
enough for every ``ade-*`` split, the 5-class steps of 100-5 included).

Files: ``<out>/images/{training,validation}/ADE_{train,val}_<8 digits>.jpg`` (JPEG quality 95) and
``<out>/annotations/.../*.png`` (mode L, ids 0..150), the layout of
:mod:`llseg.data.ade20k.layout`. The same arguments give the same files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from llseg.data.ade20k.layout import IMAGE_DIR, IMAGE_SUFFIX, LABEL_DIR
from llseg.data.checks import check_seed
from llseg.data.labels import ADE20K
from llseg.errors import ConfigError

DEFAULT_SIZE: tuple[int, int] = (48, 48)
_PALETTE = np.asarray(ADE20K.palette, dtype=np.float32)


def _class_deck(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` class ids 1..150, each seeded permutation of the 150 classes used in turn."""
    classes = np.arange(1, ADE20K.num_classes)
    decks = [rng.permutation(classes) for _ in range(-(-n // len(classes)))]
    return np.concatenate(decks)[:n]


def _render(rng: np.random.Generator, classes: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 H x W x 3 image, uint8 H x W label)`` with one rectangle per class of ``classes``,
    each inside its own cell of a grid of ``ceil(sqrt(n))`` columns."""
    label = np.zeros((h, w), dtype=np.uint8)
    cols = int(np.ceil(np.sqrt(len(classes))))
    rows = -(-len(classes) // cols)
    ch, cw = h // rows, w // cols
    for cell, k in zip(rng.permutation(rows * cols), classes):
        rh, rw = int(rng.integers(max(1, ch // 2), ch + 1)), int(rng.integers(max(1, cw // 2), cw + 1))
        y = (cell // cols) * ch + int(rng.integers(0, ch - rh + 1))
        x = (cell % cols) * cw + int(rng.integers(0, cw - rw + 1))
        label[y : y + rh, x : x + rw] = k
    base = np.where(label[..., None] > 0, _PALETTE[label], 110.0)
    image = np.clip(base + rng.normal(0.0, 12.0, size=(h, w, 3)), 0, 255).astype(np.uint8)
    return image, label


def generate_ade_tree(
    out: str | Path,
    *,
    seed: int = 0,
    size: tuple[int, int] | None = None,
    train_images: int = 60,
    val_images: int = 20,
    objects_per_image: int = 5,
) -> str:
    """Write the tree under ``out`` (created) and return a one-line summary.

    Raises:
        ConfigError: fewer than 2 images per class on the training side (``train_images *
            objects_per_image < 300``), a non-positive count or a side under 16 px.
    """
    seed = check_seed(seed)
    h, w = size or DEFAULT_SIZE
    if min(h, w) < 16 or min(train_images, val_images, objects_per_image) < 1:
        raise ConfigError(f"ADE20K tree: size {h}x{w} needs sides >= 16 px and positive image and object counts")
    if train_images * objects_per_image < 2 * (ADE20K.num_classes - 1):
        raise ConfigError(
            f"ADE20K tree: {train_images} training images x {objects_per_image} objects cannot show each of the 150 "
            "classes twice (every split needs 2 images per step); raise train_images or objects_per_image"
        )
    out = Path(out)
    for split, prefix, n in (("training", "ADE_train", train_images), ("validation", "ADE_val", val_images)):
        rng = np.random.default_rng([seed, len(split)])
        deck = _class_deck(rng, n * objects_per_image).reshape(n, objects_per_image)
        (out / IMAGE_DIR / split).mkdir(parents=True, exist_ok=True)
        (out / LABEL_DIR / split).mkdir(parents=True, exist_ok=True)
        for i, classes in enumerate(deck, start=1):
            image, label = _render(rng, classes, h, w)
            stem = f"{prefix}_{i:08d}"
            Image.fromarray(image).save(out / IMAGE_DIR / split / f"{stem}{IMAGE_SUFFIX}", quality=95)
            Image.fromarray(label, mode="L").save(out / LABEL_DIR / split / f"{stem}.png")
    return f"ADE20K layout at {out}: {train_images} training + {val_images} validation images of {h}x{w}"
