"""Pascal VOC 2012 reader (the real dataset and llseg's synthetic objects dataset).

Layout::

    <root>/JPEGImages/<id>.jpg                          RGB image
    <root>/SegmentationClass/<id>.png                   palette PNG, indices = class ids
    <root>/SegmentationClassAug/<id>.png                optional SBD-augmented labels (mode L or P)
    <root>/ImageSets/Segmentation/{train,val,trainval}.txt   one id per line

Label maps are ``uint8 H x W`` with ids ``0..20`` (0 = background, see
:data:`llseg.data.labels.VOC`) and 255 = void (object boundaries, ignored).

The SBD-augmented list (``train_aug.txt``, 10,582 ids) is read like any split: put it in
``ImageSets/Segmentation/`` and pass ``split="train_aug"``, or pass its path as ``list_file``.
A list line is either an id or ``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png`` (the
DeepLab format); the id is the stem of the line's first token. Labels come from ``labels_dir``
when given, else from ``SegmentationClass/`` when it holds every listed id, else from
``SegmentationClassAug/``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from llseg.data.checks import listing
from llseg.data.imageio import PathLike, read_label_png
from llseg.data.labels import IGNORE_INDEX, VOC
from llseg.errors import DataError

IMAGE_DIR = "JPEGImages"
IMAGE_SUFFIX = ".jpg"
LABEL_DIR = "SegmentationClass"
AUG_LABEL_DIR = "SegmentationClassAug"
LIST_DIR = "ImageSets/Segmentation"

_VALID_IDS = np.zeros(256, dtype=bool)
_VALID_IDS[sorted(VOC.valid_ids or ())] = True


@dataclass(frozen=True)
class VOCSample:
    """One image/label pair of a VOC split; ``id`` is the file stem, e.g. ``2007_000032``."""

    image: Path
    label: Path
    id: str



def read_id_list(path: PathLike) -> list[str]:
    """Ids of a VOC list file, in file order (blank lines skipped; see the module docstring).

    Raises:
        DataError: the file is missing, empty or repeats an id.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split list {path} not found; pass the VOC root that holds {LIST_DIR}/ or a list_file")
    ids = [PurePosixPath(line.split()[0]).stem for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not ids:
        raise DataError(f"split list {path} holds no ids; write one image id per line")
    if len(set(ids)) != len(ids):
        repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise DataError(f"split list {path} repeats ids {listing(repeated)}; remove the duplicate lines")
    return ids


def find_voc_samples(
    root: PathLike, split: str, *, list_file: PathLike | None = None, labels_dir: PathLike | None = None
) -> list[VOCSample]:
    """The samples of ``split`` in list-file order.

    Args:
        root: VOC root, the folder holding ``JPEGImages/`` (``.../VOC2012``).
        split: list name: ``<root>/ImageSets/Segmentation/<split>.txt`` is read.
        list_file: read this list instead (relative paths are relative to ``root``).
        labels_dir: label folder (relative paths are relative to ``root``); default: see the
            module docstring.

    Raises:
        DataError: the root, list, label folder, an image or a label is missing.
    """
    root = Path(root)
    if not (root / IMAGE_DIR).is_dir():
        raise DataError(
            f"VOC layout not found: {root / IMAGE_DIR} is missing; pass the folder that holds "
            f"{IMAGE_DIR}/, {LABEL_DIR}/ and {LIST_DIR}/ (e.g. VOCdevkit/VOC2012)"
        )
    list_path = root / LIST_DIR / f"{split}.txt" if list_file is None else root / Path(list_file)
    ids = read_id_list(list_path)
    if labels_dir is not None:
        label_root = root / Path(labels_dir)
        if not label_root.is_dir():
            raise DataError(f"label folder {label_root} not found; pass labels_dir relative to {root} or absolute")
    else:
        label_root = root / LABEL_DIR
        if (root / AUG_LABEL_DIR).is_dir() and not all((label_root / f"{i}.png").is_file() for i in ids):
            label_root = root / AUG_LABEL_DIR
    images = [root / IMAGE_DIR / f"{i}{IMAGE_SUFFIX}" for i in ids]
    labels = [label_root / f"{i}.png" for i in ids]
    for kind, paths, fix in (
        ("image", images, f"restore the images or remove their ids from {list_path}"),
        ("label", labels, f"restore the labels, pass labels_dir (e.g. {AUG_LABEL_DIR}) or remove the ids from {list_path}"),
    ):
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise DataError(f"{len(missing)} {kind}(s) listed in {list_path} are missing: {listing(missing)}; {fix}")
    return [VOCSample(image, label, i) for image, label, i in zip(images, labels, ids)]


def load_voc_label(path: PathLike) -> np.ndarray:
    """Read a VOC label PNG as ``uint8 H x W`` class ids (0..20, 255 = void).

    Raises:
        DataError: unreadable file, a colour (RGB) rendering instead of the palette PNG, or ids
            other than 0..20 and 255.
    """
    path = Path(path)
    if path.is_file():
        try:
            with Image.open(path) as img:
                mode = img.mode
        except (OSError, SyntaxError, ValueError):
            mode = ""  # read_label_png reports the unreadable file
        if mode.startswith("RGB"):
            raise DataError(
                f"{path}: mode {mode} is a colour rendering; VOC labels must be the palette (mode P) PNG whose "
                f"indices are class ids 0..20 and 255, as in {LABEL_DIR}/ (do not convert it to RGB)"
            )
    raw = read_label_png(path)
    present = np.bincount(raw.ravel(), minlength=256).astype(bool)
    bad = np.flatnonzero(present & ~_VALID_IDS)
    if bad.size:
        raise DataError(
            f"{path}: contains ids {bad.tolist()} that are not VOC class ids 0..20 or {IGNORE_INDEX} (void); "
            "check that it is a SegmentationClass(Aug) PNG, or re-download or regenerate it"
        )
    return raw
