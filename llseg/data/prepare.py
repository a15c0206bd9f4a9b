"""``llseg prepare``: turn a dataset into an incremental split for Ianvs.

:func:`prepare` only dispatches; each dataset's builder lives in its sub-package:
:mod:`llseg.data.cityscapes.prepare`, :mod:`llseg.data.voc.prepare` (Pascal VOC and the synthetic
objects dataset), :mod:`llseg.data.isprs.prepare` (ISPRS Potsdam -> Vaihingen and the synthetic
aerial dataset) and :mod:`llseg.data.ade20k.prepare` (ADEChallengeData2016). All write the same
kinds of files: label maps (``uint8``, 255 = ignore), the index files train_index.txt,
val_index.txt and test_index.txt, and manifest.json (:class:`~llseg.data.manifest.Manifest`).

Every task fills one equal chunk of train_index.txt, so Ianvs' line-order splitting
(``default``/``fwt_splitting`` with ``incremental_rounds`` = number of tasks, ``step = int(N / R)``)
gives exactly one task per round.
"""
from __future__ import annotations

from typing import Any

from llseg.data.ade20k.prepare import prepare_ade20k
from llseg.data.cityscapes.prepare import TEST_SPLIT, prepare_cityscapes
from llseg.data.imageio import PathLike
from llseg.data.isprs.prepare import prepare_isprs
from llseg.data.manifest import Manifest
from llseg.data.voc.prepare import prepare_voc
from llseg.errors import ConfigError

DATASETS = ("cityscapes", "voc", "isprs", "ade20k")


def prepare(
    dataset: str,
    *,
    root: PathLike,
    split: str,
    out: PathLike,
    seed: int = 0,
    train_ratio: float = 0.8,
    train_list: str | None = None,
    test_list: str | None = None,
    isprs_options: dict[str, Any] | None = None,
    all_train: bool = False,
) -> Manifest:
    """Build the incremental split ``split`` of the ``dataset`` at ``root`` into ``out``.

    ``dataset`` is ``"cityscapes"`` (see :func:`llseg.data.cityscapes.prepare.prepare_cityscapes`),
    ``"voc"`` (see :func:`llseg.data.voc.prepare.prepare_voc`; ``train_list`` / ``test_list`` name
    its lists, default ``train`` / ``val``) or ``"isprs"`` (see :func:`llseg.data.isprs.prepare.prepare_isprs`;
    ``isprs_options`` are its keyword arguments ``patch_size``, ``background``, ``clutter``,
    ``eroded`` and ``colour_tolerance``) or ``"ade20k"`` (see :func:`llseg.data.ade20k.prepare.prepare_ade20k`).

    ``all_train``: every training image of a step is trained on (the papers' protocol; padded index
    scheme only: voc, isprs, ade20k and the cityscapes-domain splits), see
    :func:`llseg.data.chunks.padded_chunks`.

    Raises:
        ConfigError: unknown dataset, or list names or ISPRS options given for another dataset;
            see the builders.
        DataError: see the builders.
    """
    if isprs_options and dataset != "isprs":
        raise ConfigError(
            f"{', '.join(isprs_options)} (--{' --'.join(k.replace('_', '-') for k in isprs_options)}) apply to "
            f"dataset isprs only; drop them for {dataset}"
        )
    if dataset == "isprs":
        if train_list is not None or test_list is not None:
            raise ConfigError(
                "train_list and test_list (--train-list, --test-list) apply to dataset voc only; isprs takes its "
                "train and test tiles from the standard ISPRS lists: drop them"
            )
        return prepare_isprs(root=root, split=split, out=out, seed=seed, train_ratio=train_ratio, all_train=all_train,
                             **(isprs_options or {}))
    if dataset == "ade20k":
        if train_list is not None or test_list is not None:
            raise ConfigError(
                "train_list and test_list (--train-list, --test-list) apply to dataset voc only; ade20k reads "
                "images/training and images/validation: drop them"
            )
        return prepare_ade20k(root=root, split=split, out=out, seed=seed, train_ratio=train_ratio, all_train=all_train)
    if dataset == "voc":
        return prepare_voc(
            root=root, split=split, out=out, seed=seed, train_ratio=train_ratio, all_train=all_train,
            train_list="train" if train_list is None else train_list,
            test_list="val" if test_list is None else test_list,
        )
    if dataset != "cityscapes":
        raise ConfigError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")
    if train_list is not None or test_list is not None:
        raise ConfigError(
            "train_list and test_list (--train-list, --test-list) apply to dataset voc only; "
            f"cityscapes always reads its train split and its {TEST_SPLIT} split as test set: drop them"
        )
    return prepare_cityscapes(root=root, split=split, out=out, seed=seed, train_ratio=train_ratio, all_train=all_train)
