"""What ``llseg bench`` stores in a test-case folder so the report can be rebuilt from the workspace.

``<case>/report/`` holds, for a few fixed test images (:data:`SAMPLE_COUNT`, evenly spaced in the
test index): a small copy of the input (``sample<i>_input.png``, RGB), of its ground truth and of
the prediction after each round 1..R (``sample<i>_label.png``, ``sample<i>_round<r>.png``: train
ids, 255 = ignore), all at one display size, and ``report.json`` naming them. The per-round
prediction records themselves are written by the estimator (``runner.paradigm.report_url``).
Anything that cannot be stored (e.g. an estimator whose predictions are not llseg prediction
records) is listed in ``report.json``'s ``notes``; the test case still counts as finished.
"""
from __future__ import annotations

import importlib.metadata
import json
import logging
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from llseg import __version__
from llseg.atomic import write_text
from llseg.data.imageio import read_label_png, read_rgb, write_label_png
from llseg.data.labels import DatasetInfo, get_dataset_info
from llseg.data.predictions import load_prediction
from llseg.metrics.incremental import IncrementalScorer

log = logging.getLogger("llseg.runner")

SAMPLE_COUNT = 3
MAX_WIDTH = 512  # display width of the stored sample images
CASE_DIR = "report"
MANIFEST = "report.json"
MANIFEST_FORMAT = "llseg-case-report/1"


@dataclass(frozen=True)
class CaseExtras:
    """What ``results.json`` gets from the capture: dataset name and per-class IoU of the test predictions."""

    dataset: str | None
    class_iou: dict[str, float | None] | None


def sample_rows(n: int, count: int = SAMPLE_COUNT) -> list[int]:
    """``count`` evenly spaced row numbers out of ``n`` (first and last included; all if ``n <= count``)."""
    if n <= count:
        return list(range(n))
    return sorted({int(v) for v in np.linspace(0, n - 1, count).round()})


def dataset_of(estimator: Any) -> DatasetInfo | None:
    """Dataset metadata named by the estimator's config (llseg estimators), else ``None``."""
    name = getattr(getattr(estimator, "config", None), "dataset", None)
    if not isinstance(name, str):
        return None
    try:
        return get_dataset_info(name)
    except KeyError:
        return None


def class_names(info: DatasetInfo | None, num_classes: int) -> list[str]:
    """Names of train ids ``0..num_classes-1``: the dataset's when it matches, else ``class <k>``."""
    if info is not None and info.num_classes == num_classes:
        return list(info.class_names)
    return [f"class {k}" for k in range(num_classes)]


def versions() -> dict[str, str]:
    """Versions of llseg, Python, torch and numpy in this process."""
    out = {"llseg": __version__, "python": platform.python_version()}
    for dist in ("torch", "numpy"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def class_iou(labels: Sequence[str], predictions: Sequence[str], info: DatasetInfo | None) -> dict[str, float | None]:
    """IoU per class name of prediction records against train-id label maps (``None``: never labelled nor predicted)."""
    scorer: IncrementalScorer | None = None
    for label, pred in zip(labels, predictions):
        record = load_prediction(pred)
        scorer = scorer or IncrementalScorer(record.num_classes)
        scorer.update(record, read_label_png(Path(label)))
    if scorer is None:
        raise ValueError("no test prediction to score")
    ious = scorer.class_iou()
    return {name: None if np.isnan(v) else float(v) for name, v in zip(class_names(info, len(ious)), ious)}


def display_size(height: int, width: int, max_width: int = MAX_WIDTH) -> tuple[int, int]:
    """(H, W) scaled down to at most ``max_width`` columns, aspect ratio kept."""
    if width <= max_width:
        return height, width
    return max(1, round(height * max_width / width)), max_width


def resized(array: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """``array`` (H×W or H×W×3 uint8) at ``size`` = (H, W)."""
    if array.shape[:2] == size:
        return array
    return np.asarray(Image.fromarray(array).resize((size[1], size[0]), resample))


def store_samples(
    case_dir: str, samples: Any, round_predictions: Sequence[Sequence[str]], info: DatasetInfo | None
) -> dict[str, Any]:
    """Write the sample PNGs into ``<case>/report/`` and return the manifest (not yet written).

    ``samples`` is a data source with ``x`` rows ``[image, label, ...]`` and ``y``.
    """
    folder = Path(case_dir) / CASE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    notes: dict[str, str] = {}  # first problem per kind
    entries = []
    for i, row in enumerate(samples.x):
        image = str(row[0])
        label = str(row[1]) if len(row) > 1 else str(samples.y[i])  # the final metric's y: the second token
        entry: dict[str, Any] = {"image": image, "label_source": label, "input": None, "label": None, "rounds": []}
        size: tuple[int, int] | None = None
        try:
            rgb = read_rgb(image)
            size = display_size(*rgb.shape[:2])
            Image.fromarray(resized(rgb, size, Image.Resampling.BILINEAR)).save(folder / f"sample{i}_input.png")
            entry["input"] = f"sample{i}_input.png"
        except ValueError as exc:
            notes.setdefault("input", f"input images not stored: {exc}")
        try:
            gt = read_label_png(label)
            size = size or display_size(*gt.shape)
            write_label_png(folder / f"sample{i}_label.png", resized(gt, size, Image.Resampling.NEAREST))
            entry["label"] = f"sample{i}_label.png"
        except ValueError as exc:
            notes.setdefault("label", f"ground truths not stored: {exc}")
        for r, preds in enumerate(round_predictions, 1):
            name = None
            try:
                pred = load_prediction(preds[i]).pred
                size = size or display_size(*pred.shape)
                name = f"sample{i}_round{r}.png"
                write_label_png(folder / name, resized(pred, size, Image.Resampling.NEAREST))
            except ValueError as exc:
                notes.setdefault("prediction", f"per-round predictions not stored: {exc}")
            entry["rounds"].append(name)
        entries.append(entry)
    return {
        "format": MANIFEST_FORMAT,
        "dataset": None if info is None else info.name,
        "rounds": list(range(1, len(round_predictions) + 1)),
        "samples": entries,
        "notes": list(notes.values()),
    }


def capture_case(
    case_dir: str,
    estimator: Any,
    samples: Any,
    round_predictions: Sequence[Sequence[str]],
    test_labels: Sequence[str],
    test_predictions: Sequence[str],
) -> CaseExtras:
    """Store the report material of a finished test case; problems are logged and noted, never raised."""
    info = dataset_of(estimator)
    manifest = store_samples(case_dir, samples, round_predictions, info)
    try:
        ious: dict[str, float | None] | None = class_iou(test_labels, test_predictions, info)
    except ValueError as exc:
        ious = None
        manifest["notes"].append(f"per-class IoU not computed: {exc}")
    path = Path(case_dir) / CASE_DIR / MANIFEST
    write_text(path, json.dumps(manifest, indent=2) + "\n")
    for note in manifest["notes"]:
        log.warning("  report material incomplete: %s", note)
    return CaseExtras(manifest["dataset"], ious)
