"""Cityscapes-layout reader: pairs images with fine labels and converts labels to train ids.

Layout (real Cityscapes and llseg's synthetic dataset)::

    <root>/leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<stem>_gtFine_labelIds.png        (raw ids 0..33)
                                  <stem>_gtFine_labelTrainIds.png   (train ids 0..18, 255)

Train-id maps are ``uint8 H x W`` with ids ``0..18`` (0 = road, no background) and 255 = ignore.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from llseg.data.checks import listing
from llseg.data.imageio import PathLike, image_size, read_label_png
from llseg.data.labels import CITYSCAPES, IGNORE_INDEX
from llseg.errors import ConfigError, DataError

LabelKind = Literal["labelIds", "labelTrainIds"]
LABEL_KINDS: tuple[LabelKind, ...] = ("labelIds", "labelTrainIds")  # preference order
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIXES: dict[LabelKind, str] = {kind: f"_gtFine_{kind}.png" for kind in LABEL_KINDS}

_ID_TO_TRAIN_ID: np.ndarray = CITYSCAPES.id_to_train_id  # type: ignore[assignment]  # set for Cityscapes
_VALID_IDS = np.zeros(256, dtype=bool)
_VALID_IDS[sorted(CITYSCAPES.valid_ids or ())] = True
_VALID_TRAIN_IDS = np.zeros(256, dtype=bool)
_VALID_TRAIN_IDS[: CITYSCAPES.num_classes] = True
_VALID_TRAIN_IDS[IGNORE_INDEX] = True


@dataclass(frozen=True)
class CityscapesSample:
    """One image/label pair. ``kind`` says whether ``label`` holds raw label ids or train ids."""

    image: Path
    label: Path
    split: str
    city: str
    stem: str
    kind: LabelKind = "labelIds"



def _subdirs(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


def find_samples(root: PathLike, split: str, cities: Sequence[str] | None = None) -> list[CityscapesSample]:
    """All image/label pairs of ``split`` (optionally only ``cities``), sorted by (city, stem).

    ``*_gtFine_labelIds.png`` is preferred over ``*_gtFine_labelTrainIds.png`` when both exist.

    Raises:
        DataError: the root or split folders are missing, a requested city is absent, an image
            has no label or a label has no image, or the split holds no images.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root {root} does not exist; pass the folder that holds leftImg8bit/ and gtFine/")
    img_split, lab_split = root / "leftImg8bit" / split, root / "gtFine" / split
    missing = [str(p) for p in (img_split, lab_split) if not p.is_dir()]
    if missing:
        available = _subdirs(root / "leftImg8bit")
        raise DataError(
            f"Cityscapes layout not found: missing {', '.join(missing)}; expected "
            f"{root}/leftImg8bit/{split}/<city>/<stem>{IMAGE_SUFFIX} and "
            f"{root}/gtFine/{split}/<city>/<stem>{LABEL_SUFFIXES['labelIds']}"
            + (f"; splits present: {', '.join(available)}" if available else "")
        )
    available = sorted(set(_subdirs(img_split)) | set(_subdirs(lab_split)))
    if cities is None:
        wanted = available
    else:
        unknown = [c for c in cities if c not in available]
        if unknown:
            raise DataError(
                f"cities {', '.join(unknown)} not found under {img_split}; available: {', '.join(available) or 'none'}"
            )
        wanted = sorted(set(cities))

    samples: list[CityscapesSample] = []
    no_label: list[str] = []
    no_image: list[str] = []
    for city in wanted:
        img_dir, lab_dir = img_split / city, lab_split / city
        images = {p.name[: -len(IMAGE_SUFFIX)]: p for p in img_dir.glob(f"*{IMAGE_SUFFIX}")} if img_dir.is_dir() else {}
        labels: dict[str, tuple[Path, LabelKind]] = {}
        for kind in reversed(LABEL_KINDS):  # the preferred kind is written last and wins
            suffix = LABEL_SUFFIXES[kind]
            for p in lab_dir.glob(f"*{suffix}") if lab_dir.is_dir() else ():
                labels[p.name[: -len(suffix)]] = (p, kind)
        no_label += [str(images[s]) for s in sorted(images.keys() - labels.keys())]
        no_image += [str(labels[s][0]) for s in sorted(labels.keys() - images.keys())]
        for stem in sorted(images.keys() & labels.keys()):
            label, kind = labels[stem]
            samples.append(CityscapesSample(images[stem], label, split, city, stem, kind))
    if no_label:
        raise DataError(
            f"{len(no_label)} image(s) have no label: {listing(no_label)}; expected "
            f"<stem>{LABEL_SUFFIXES['labelIds']} in the matching gtFine folder; restore the labels "
            "or remove the images"
        )
    if no_image:
        raise DataError(
            f"{len(no_image)} label(s) have no image: {listing(no_image)}; expected <stem>{IMAGE_SUFFIX} "
            "in the matching leftImg8bit folder; restore the images or remove the labels"
        )
    if not samples:
        raise DataError(f"no *{IMAGE_SUFFIX} files under {img_split} (cities: {', '.join(wanted) or 'none'})")
    return samples


def load_train_ids(
    source: CityscapesSample | PathLike, kind: LabelKind | None = None
) -> np.ndarray:
    """Read a fine label file as a ``uint8 H x W`` train-id map (0..18, 255 = ignore).

    ``source`` is a sample (its ``kind`` is used and the label size is checked against the
    image) or a label path, in which case ``kind`` must be given.

    Raises:
        DataError: unreadable file, ids that are not Cityscapes ids (labelIds) or not 0..18/255
            (labelTrainIds), or label and image sizes differ.
    """
    if isinstance(source, CityscapesSample):
        path, kind = source.label, kind or source.kind
    else:
        path = Path(source)
        if kind is None:
            raise ConfigError(f"load_train_ids({path}): pass kind= one of {', '.join(LABEL_KINDS)}")
    if kind not in LABEL_KINDS:
        raise ConfigError(f"label kind must be one of {', '.join(LABEL_KINDS)}, got {kind!r}")
    raw = read_label_png(path)
    valid = _VALID_IDS if kind == "labelIds" else _VALID_TRAIN_IDS
    present = np.bincount(raw.ravel(), minlength=256).astype(bool)
    bad = np.flatnonzero(present & ~valid)
    if bad.size:
        expected = "Cityscapes label ids 0..33" if kind == "labelIds" else "train ids 0..18 and 255"
        raise DataError(
            f"{path}: contains ids {bad.tolist()} that are not {expected}; "
            f"check that it is a *_{kind}.png map, or re-download or regenerate it"
        )
    if isinstance(source, CityscapesSample):
        img_hw = image_size(source.image)
        if img_hw != raw.shape:
            raise DataError(
                f"size mismatch: label {path} is {raw.shape[0]}x{raw.shape[1]} but image {source.image} is "
                f"{img_hw[0]}x{img_hw[1]} (HxW); re-download or regenerate the pair"
            )
    if kind == "labelTrainIds":
        return raw
    return _ID_TO_TRAIN_ID[raw]
