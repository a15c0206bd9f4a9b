"""``llseg prepare --dataset ade20k``: a class-incremental ADE20K split for Ianvs.

Reads ADEChallengeData2016 (or a generated tree in its layout, :mod:`llseg.data.ade20k.synthetic`).
Splits are the ``ade-*`` presets of :mod:`llseg.data.splits`: ``ade-100-50``, ``ade-50-50`` (three
steps), ``ade-100-10`` and ``ade-100-5``, overlapped as in MiB, PLOP and SSUL: a step takes the
training images with >= 1 pixel of its classes. Step k's training labels keep its classes and turn
every other class into 0 ("other", the background channel); test labels are the annotations as
they are, and the scores ignore 0 (:attr:`llseg.data.labels.DatasetInfo.unscored`).

Output folder layout (paths in index files are relative to ``<out>``)::

    labels/full/<id>.png      the annotations (uint8 0..150)
    labels/task<k>/<id>.png   step k's training labels
    train_index.txt   <image> <full_label> <task_label>; one chunk of ``chunk_size`` lines per step
    val_index.txt     <image> <full_label> <full_label>; the eval-side images, for checkpoint choice
    test_index.txt    <image> <full_label> <full_label>; the validation split (2,000 images)
    manifest.json     what was written and why (see :class:`~llseg.data.manifest.Manifest`)

Index scheme for the unequal steps (step 0 of 100-5 has thousands of images, a 5-class step a few
hundred): :mod:`llseg.data.chunks`, shared with VOC and ISPRS. Every training image is on the train
or the eval side in all its steps, steps are padded to equal chunks with repeated lines (one Ianvs
chunk per step; training and scoring use a repeated line once).
"""
from __future__ import annotations

from pathlib import Path
from typing import cast

from llseg.data.ade20k.layout import ADESample, find_ade_samples, load_ade_label
from llseg.data.checks import check_seed, check_train_ratio
from llseg.data.chunks import prepare_padded
from llseg.data.imageio import PathLike
from llseg.data.labels import ADE20K
from llseg.data.labelwriter import IDENTITY_LUT, STATE_DIR
from llseg.data.manifest import Manifest
from llseg.data.scan import scan_class_counts
from llseg.data.splits import ClassIncrementalSpec, dataset_preset, membership
from llseg.errors import ConfigError

TRAIN_SPLIT, TEST_SPLIT = "training", "validation"


def ade_spec(split: str) -> ClassIncrementalSpec:
    """The ADE20K split preset ``split``; ``ConfigError`` lists the valid ones."""
    return cast(ClassIncrementalSpec, dataset_preset(split, ADE20K.name))


def _label_rel(kind: str, sample: ADESample) -> str:
    return f"labels/{kind}/{sample.id}.png"


def prepare_ade20k(
    *, root: PathLike, split: str, out: PathLike, seed: int = 0, train_ratio: float = 0.8, all_train: bool = False
) -> Manifest:
    """Build the ADE20K split ``split`` of the ADEChallengeData2016 folder ``root`` into ``out``;
    ``all_train``: every image trains (see :func:`llseg.data.chunks.padded_chunks`).

    Raises:
        ConfigError: unknown split, bad ``seed`` or ``train_ratio``, or a step with fewer than 2
            images (names the step and its classes).
        DataError: missing folders, images or annotations, or a bad annotation (see
            :mod:`llseg.data.ade20k.layout`).
    """
    spec = ade_spec(split)
    check_train_ratio(train_ratio)
    seed = check_seed(seed)
    root, out = Path(root), Path(out)
    train_samples = find_ade_samples(root, TRAIN_SPLIT)
    test_samples = find_ade_samples(root, TEST_SPLIT)
    counts = scan_class_counts(
        [s.label for s in train_samples], load_ade_label, ADE20K.num_classes, out / STATE_DIR / "scan_cache.json"
    )
    member = membership(spec, counts)
    small = [t for t, n in enumerate(member.sum(axis=0)) if n < 2]
    if small:
        detail = "; ".join(
            f"step {t + 1} (classes {spec.tasks[t][0]}..{spec.tasks[t][-1]}): {int(member[:, t].sum())} image(s)"
            for t in small
        )
        raise ConfigError(
            f"split {split} needs at least 2 training images per step (one for the train and one for the eval part of "
            f"its chunk), got {detail}; check that {root}/annotations/{TRAIN_SPLIT} holds the full training set"
        )
    return prepare_padded(
        out=out, root=root, info=ADE20K, split=split, spec=spec, member=member, counts=counts, samples=train_samples,
        test_samples=test_samples, label_rel=_label_rel, read_label=load_ade_label, full_lut=IDENTITY_LUT, seed=seed,
        train_ratio=train_ratio, all_train=all_train, train_list=TRAIN_SPLIT, test_list=TEST_SPLIT,
    )
