"""ADE20K scene-parsing reader (ADEChallengeData2016, the 150-class benchmark).

Layout (the official zip, and llseg's generated trees)::

    <root>/images/training/ADE_train_<8 digits>.jpg        RGB image
    <root>/annotations/training/ADE_train_<8 digits>.png   mode L, ids 0..150 (0 = other)
    <root>/images/validation/ADE_val_<8 digits>.jpg
    <root>/annotations/validation/ADE_val_<8 digits>.png

``<root>`` is the ``ADEChallengeData2016`` folder. Label maps are ``uint8 H x W`` with the ids of
:data:`llseg.data.labels.ADE20K`: 1..150 are the classes, 0 is "other" (unlabelled or outside the
150 classes), the class-incremental papers' background channel, never scored.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llseg.data.checks import listing
from llseg.data.imageio import PathLike, image_size, read_label_png
from llseg.data.labels import ADE20K
from llseg.errors import DataError

SPLITS = ("training", "validation")
IMAGE_DIR = "images"
LABEL_DIR = "annotations"
IMAGE_SUFFIX = ".jpg"

_VALID_IDS = np.zeros(256, dtype=bool)
_VALID_IDS[sorted(ADE20K.valid_ids or ())] = True


@dataclass(frozen=True)
class ADESample:
    """One image/label pair; ``id`` is the file stem, e.g. ``ADE_train_00000001``."""

    image: Path
    label: Path
    id: str



def find_ade_samples(root: PathLike, split: str) -> list[ADESample]:
    """The samples of ``split`` (``training`` or ``validation``), sorted by id.

    Raises:
        DataError: the root or split folders are missing, an image has no annotation (or the
            reverse), or the split holds no image.
    """
    root = Path(root)
    if split not in SPLITS:
        raise DataError(f"ADE20K split {split!r}: expected one of {', '.join(SPLITS)}")
    img_dir, lab_dir = root / IMAGE_DIR / split, root / LABEL_DIR / split
    missing = [str(p) for p in (img_dir, lab_dir) if not p.is_dir()]
    if missing:
        raise DataError(
            f"ADE20K layout not found: missing {', '.join(missing)}; pass the ADEChallengeData2016 folder, which "
            f"holds {IMAGE_DIR}/{{training,validation}}/*{IMAGE_SUFFIX} and {LABEL_DIR}/{{training,validation}}/*.png"
        )
    images = {p.stem: p for p in img_dir.glob(f"*{IMAGE_SUFFIX}")}
    labels = {p.stem: p for p in lab_dir.glob("*.png")}
    for what, paths, other in (("image", images, labels), ("annotation", labels, images)):
        lonely = sorted(str(paths[k]) for k in paths.keys() - other.keys())
        if lonely:
            raise DataError(
                f"{len(lonely)} {what}(s) of {split} have no counterpart: {listing(lonely)}; every "
                f"{IMAGE_DIR}/{split}/<id>{IMAGE_SUFFIX} needs {LABEL_DIR}/{split}/<id>.png: restore or remove them"
            )
    if not images:
        raise DataError(f"no *{IMAGE_SUFFIX} images under {img_dir}")
    return [ADESample(images[k], labels[k], k) for k in sorted(images)]


def load_ade_label(path: PathLike, image: PathLike | None = None) -> np.ndarray:
    """Read an ADE20K annotation as ``uint8 H x W`` ids 0..150.

    Raises:
        DataError: unreadable file, ids above 150 (not a 150-class annotation, e.g. the full
            ADE20K index), or a size other than ``image``'s.
    """
    raw = read_label_png(path)
    present = np.bincount(raw.ravel(), minlength=256).astype(bool)
    bad = np.flatnonzero(present & ~_VALID_IDS)
    if bad.size:
        raise DataError(
            f"{path}: contains ids {bad.tolist()[:10]} outside 0..{ADE20K.num_classes - 1}; ADE20K annotations of "
            "ADEChallengeData2016 hold 0 (other) and the 150 class ids: check that it is one of its annotations/*.png"
        )
    if image is not None and image_size(image) != raw.shape:
        h, w = image_size(image)
        raise DataError(f"size mismatch: annotation {path} is {raw.shape[0]}x{raw.shape[1]} but image {image} is {h}x{w}")
    return raw
