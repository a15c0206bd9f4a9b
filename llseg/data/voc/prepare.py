"""``llseg prepare --dataset voc``: a class-incremental Pascal VOC 2012 split for Ianvs.

Reads the real dataset or llseg's synthetic objects dataset (same layout, see
:mod:`llseg.data.voc.layout`). Splits are the ``voc-*`` presets of :mod:`llseg.data.splits`:
``voc-15-1`` (overlapped) or ``voc-15-1-disjoint``, and likewise 15-5, 10-1, 5-3 and 19-1. A
task takes the train-list images with >= 1 pixel of its classes; the disjoint variant also
leaves out images that hold a future class. Task k's training labels keep its classes, turn old
and future classes into background 0 and keep 255 (ignore); test labels are the full labels
(the metrics ignore classes not learned yet).

Output folder layout (paths in index files are relative to ``<out>``)::

    labels/full/<id>.png      label maps with all 21 classes (uint8, 0 = background, 255 = ignore)
    labels/task<k>/<id>.png   task k's training labels
    train_index.txt   <image> <full_label> <task_label>; one chunk of ``chunk_size`` lines per task
    val_index.txt     <image> <full_label> <full_label>; the eval-side images, for checkpoint choice
    test_index.txt    <image> <full_label> <full_label>; the test list (VOC val)
    manifest.json     what was written and why (see :class:`~llseg.data.manifest.Manifest`)
    .llseg/           scan cache and label-writing state, reused by later runs

Index scheme: :mod:`llseg.data.chunks` (shared with ISPRS). Every train-list image is on the train
or the eval side in every task it belongs to, tasks are padded to equal chunks with repeated
lines (one Ianvs chunk per task), and the first line is the task-1 train image that shows the
most task-1 classes. ``val_index.txt`` lists every eval-side image once.
"""
from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np

from llseg.data.checks import check_seed, check_train_ratio
from llseg.data.chunks import prepare_padded
from llseg.data.imageio import PathLike
from llseg.data.labels import VOC
from llseg.data.labelwriter import IDENTITY_LUT, STATE_DIR
from llseg.data.manifest import Manifest
from llseg.data.scan import scan_class_counts
from llseg.data.splits import ClassIncrementalSpec, dataset_preset, membership
from llseg.data.voc.layout import VOCSample, find_voc_samples, load_voc_label
from llseg.errors import ConfigError


def voc_spec(split: str) -> ClassIncrementalSpec:
    """The VOC split preset ``split`` (21 classes, background 0); ``ConfigError`` lists the valid ones."""
    return cast(ClassIncrementalSpec, dataset_preset(split, VOC.name))


def _label_rel(kind: str, sample: VOCSample) -> str:
    return f"labels/{kind}/{sample.id}.png"


def _check_task_sizes(spec: ClassIncrementalSpec, member: np.ndarray, split: str, train_list: str) -> None:
    """``ConfigError`` naming every task of ``member`` (``bool (n_images, n_tasks)``) with fewer than 2 images."""
    sizes = member.sum(axis=0)
    small = [t for t, n in enumerate(sizes) if n < 2]
    if small:
        which = "with its classes" + (" and no future class" if spec.mode != "overlap" else "")
        detail = "; ".join(
            f"task {t + 1} ({', '.join(VOC.class_names[k] for k in spec.tasks[t])}): {sizes[t]} image(s) {which}"
            for t in small
        )
        raise ConfigError(
            f"split {split} needs at least 2 images per task in the {train_list} list (one for the train part and "
            f"one for the eval part of its chunk), got {detail} (all tasks: {', '.join(map(str, sizes))}); "
            "use a larger train list (e.g. --train-list train_aug) or another split"
        )


def prepare_voc(
    *,
    root: PathLike,
    split: str,
    out: PathLike,
    seed: int = 0,
    train_ratio: float = 0.8,
    train_list: str = "train",
    test_list: str = "val",
    all_train: bool = False,
) -> Manifest:
    """Build the VOC split ``split`` of the dataset at ``root`` (the folder holding
    ``JPEGImages/``) into ``out``, with the padded index scheme of
    :mod:`llseg.data.chunks`.

    ``all_train``: every image trains (see :func:`llseg.data.chunks.padded_chunks`).
    ``train_list`` / ``test_list`` name lists in ``<root>/ImageSets/Segmentation/`` (SBD:
    ``train_aug``). Re-runs reuse the class scan and rewrite only changed label files.

    Raises:
        ConfigError: unknown split, bad ``seed`` or ``train_ratio``, lists sharing ids, or a task
            with fewer than 2 images.
        DataError: missing root, list, image or label, or a bad label file (see :mod:`llseg.data.voc.layout`).
    """
    spec = voc_spec(split)
    check_train_ratio(train_ratio)
    seed = check_seed(seed)
    root, out = Path(root), Path(out)
    train_samples = find_voc_samples(root, train_list)
    test_samples = find_voc_samples(root, test_list)
    shared = sorted({s.id for s in train_samples} & {s.id for s in test_samples})
    if shared:
        raise ConfigError(
            f"{len(shared)} ids are in both the {train_list} and the {test_list} list of {root} (e.g. "
            f"{', '.join(shared[:3])}); test images must never be trained on: pick disjoint lists (VOC: train or "
            "train_aug with val)"
        )
    counts = scan_class_counts(
        [s.label for s in train_samples], load_voc_label, VOC.num_classes, out / STATE_DIR / "scan_cache.json"
    )
    member = membership(spec, counts)
    _check_task_sizes(spec, member, split, train_list)
    return prepare_padded(
        out=out, root=root, info=VOC, split=split, spec=spec, member=member, counts=counts, samples=train_samples,
        test_samples=test_samples, label_rel=_label_rel, read_label=load_voc_label, full_lut=IDENTITY_LUT, seed=seed,
        train_ratio=train_ratio, all_train=all_train, train_list=train_list, test_list=test_list,
    )
