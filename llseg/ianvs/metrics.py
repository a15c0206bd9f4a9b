"""Ianvs metric functions: ``f(y_true, y_pred) -> float`` over label paths and prediction records.

Ianvs and Sedna call them with ``y_true`` = label paths (numpy array of str) and ``y_pred`` = what
the estimator's ``predict`` returned: an array of record paths, or (default/HEM modes) a list of
one-element arrays. The function for the model-eval metric must be named ``accuracy``: Sedna keys
scores by ``__name__`` and Ianvs reads ``scores["accuracy"]`` (docs/ianvs-sedna.md §4.7, P12).

All functions share one cached scoring pass per (labels, predictions) set, so a testenv listing
ten metrics reads every file once.

Per-domain scores (``mIoU_all_potsdam``, ``mIoU_old_vaihingen``, ...) are the same scores over the
samples of one domain. A sample's domain is the name of the folder holding its label file:
``llseg prepare --dataset isprs`` writes ``labels/<kind>/<domain>/<patch>.png`` (docs/metrics.md), and
the Cityscapes domain splits ``labels/full/<split>/<city>/<stem>.png`` (``mIoU_all_<city>``).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from llseg.data.imageio import read_label_png
from llseg.data.labels import ISPRS_DOMAINS
from llseg.data.predictions import load_prediction
from llseg.data.splits import CITYSCAPES_DOMAIN_ORDER
from llseg.ianvs.registry import GENERAL, register
from llseg.metrics.incremental import IncrementalScorer, union_name

MAX_TASKS = 12  # VOC 10-1 has 11 steps
DOMAIN_SCORES = ("mIoU_old", "mIoU_new", "mIoU_all", "hIoU")  # registered per domain as <score>_<domain>


def _paths(values: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in np.asarray(values, dtype=object).reshape(-1))


def _stamp(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def scores(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """Every llseg score of predictions ``y_pred`` against labels ``y_true`` (see IncrementalScorer)."""
    labels, preds = _paths(y_true), _paths(y_pred)
    if len(labels) != len(preds):
        raise ValueError(f"{len(labels)} labels but {len(preds)} predictions")
    if not labels:
        raise ValueError("no samples to score")
    # Prepared VOC indexes pad small steps with repeated lines (llseg.data.chunks): score each
    # (label, prediction) pair once, so padding does not weight some images twice.
    pairs = list(dict.fromkeys(zip(labels, preds)))
    labels, preds = tuple(lab for lab, _ in pairs), tuple(p for _, p in pairs)
    key = tuple((p, _stamp(p)) for p in labels + preds)
    return dict(_scores(len(labels), key))


@lru_cache(maxsize=8)
def _scores(n: int, key: tuple[tuple[str, int], ...]) -> tuple[tuple[str, Any], ...]:
    labels, preds = [p for p, _ in key[:n]], [p for p, _ in key[n:]]
    scorer: IncrementalScorer | None = None
    for label, pred in zip(labels, preds):
        record = load_prediction(pred)
        scorer = scorer or IncrementalScorer(record.num_classes)
        scorer.update(record, read_label_png(Path(label)))
    assert scorer is not None
    return tuple(scorer.table().items())


def label_domain(path: str) -> str:
    """The domain of a sample: the name of the folder that holds its label file."""
    return os.path.basename(os.path.dirname(path))


def domain_scores(y_true: Any, y_pred: Any, domain: str) -> dict[str, Any] | None:
    """:func:`scores` over the samples whose label lies in a folder named ``domain``; None if there are none."""
    labels, preds = _paths(y_true), _paths(y_pred)
    if len(labels) != len(preds):
        raise ValueError(f"{len(labels)} labels but {len(preds)} predictions")
    keep = [(label, pred) for label, pred in zip(labels, preds) if label_domain(label) == domain]
    if not keep:
        return None
    return scores([label for label, _ in keep], [pred for _, pred in keep])


@register(GENERAL, "accuracy")
def accuracy(y_true: Any, y_pred: Any, **kwargs: Any) -> float:
    """Class-incremental mIoU over the classes present in the labels (the model-eval metric)."""
    return float(scores(y_true, y_pred)["accuracy"])


def _metric(name: str) -> Callable[..., float]:
    def metric(y_true: Any, y_pred: Any, **kwargs: Any) -> float:
        value = scores(y_true, y_pred).get(name)
        return float("nan") if value is None else float(value)

    metric.__name__ = metric.__qualname__ = name.replace("+", "_")
    metric.__doc__ = f"llseg score {name!r} (see llseg.metrics.incremental)."
    return register(GENERAL, name)(metric)


def _domain_metric(name: str, domain: str) -> Callable[..., float]:
    def metric(y_true: Any, y_pred: Any, **kwargs: Any) -> float:
        table = domain_scores(y_true, y_pred, domain)
        value = None if table is None else table.get(name)
        return float("nan") if value is None else float(value)

    metric.__name__ = metric.__qualname__ = f"{name}_{domain}"
    metric.__doc__ = f"llseg score {name!r} over the {domain} samples only (NaN without any)."
    return register(GENERAL, f"{name}_{domain}")(metric)


METRICS: dict[str, Callable[..., float]] = {"accuracy": accuracy}
for _name in ("mIoU_old", "mIoU_new", "mIoU_all", "hIoU"):
    METRICS[_name] = _metric(_name)
for _k in range(1, MAX_TASKS + 1):
    METRICS[f"mIoU_task{_k}"] = _metric(f"mIoU_task{_k}")
    if _k > 1:
        METRICS[union_name(_k)] = _metric(union_name(_k))
for _domain in ISPRS_DOMAINS:
    for _name in DOMAIN_SCORES:
        METRICS[f"{_name}_{_domain}"] = _domain_metric(_name, _domain)
# Cityscapes domain-incremental (cityscapes-domain-*): every class in every step, so mIoU_all per city.
for _domain in CITYSCAPES_DOMAIN_ORDER:
    METRICS[f"mIoU_all_{_domain}"] = _domain_metric("mIoU_all", _domain)
