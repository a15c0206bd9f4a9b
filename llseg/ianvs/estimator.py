"""Estimators with KubeEdge Sedna's contract (docs/ianvs-sedna.md §4.5), usable with or without Sedna.

Sedna keeps ONE estimator instance for every round of a test case and swaps models in through
:meth:`load`; every :meth:`train` call is one continual-learning stage on top of whatever model
the instance holds (the freshly loaded one, or the one it trained last), so Ianvs rounds become
class-incremental stages without extra configuration.

Data rows are llseg index tokens: ``x[i] = [image, full_label]`` and ``y[i] = train_label``
(see ``llseg.data.indexfile``). Predictions are paths of prediction records (``.npz``, see
``llseg.data.predictions``) written under the output folder Ianvs sets (``INFERENCE_RESULT_DIR``
or ``OUTPUT_URL``) or the ``output_dir`` hyperparameter, never elsewhere.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llseg.atomic import remove_leftovers
from llseg.data.predictions import save_prediction
from llseg.ianvs.registry import GENERAL, register
from llseg.methods.checkpoint import read_checkpoint
from llseg.methods.config import resolve_config
from llseg.methods.learner import ContinualLearner
from llseg.runtime import ensure_log_handler

log = logging.getLogger("llseg.estimator")
ensure_log_handler()  # llseg's progress under ianvs -f, whose loggers do not propagate (docs/ianvs-sedna.md)
RESUME_FILE = "resume.pt"  # training checkpoints of the running round, in its OUTPUT_URL folder

def _rows(data: Any) -> np.ndarray:
    """x rows (n, k) of str from a Sedna data source, an ndarray or a list of rows."""
    x = getattr(data, "x", data)
    rows = np.asarray(x, dtype=object)
    if rows.ndim == 1:
        rows = rows.reshape(-1, 1)
    if rows.ndim != 2 or rows.shape[1] < 1:
        raise ValueError(f"expected rows of index tokens [image, full_label], got an array of shape {rows.shape}")
    return rows


class SegmentationEstimator:
    """Sedna estimator over a :class:`ContinualLearner`; subclasses name their model family.

    The hyperparameters resolve exactly as ``llseg train --print-config`` resolves them
    (:func:`llseg.methods.config.resolve_config`); the resolved config is logged.

    Attributes:
        architectures: model registry names the estimator accepts (``model`` hyperparameter);
            the first is the default.
    """

    architectures: tuple[str, ...] = ()

    def __init__(self, **hyperparameters: Any) -> None:
        hps = dict(hyperparameters)
        self.output_dir: str | None = hps.pop("output_dir", None)
        hps.setdefault("model", self.architectures[0])
        self.config = resolve_config(hps, source=f"{type(self).__name__} hyperparameters")
        if self.config.model not in self.architectures:
            raise ValueError(
                f"{type(self).__name__} builds {', '.join(self.architectures)}, not model: {self.config.model}"
            )
        log.info("%s resolved hyperparameters: %s", type(self).__name__, self.config.to_dict())
        self.learner = ContinualLearner(self.config)
        self._resume_file: Path | None = None

    # ---------------------------------------------------------------- Sedna API
    def train(self, train_data: Any, valid_data: Any = None, **kwargs: Any) -> dict[str, Any]:
        """One stage on ``train_data`` (x rows [image, full_label], y = train label paths); with the
        ``devices`` hyperparameter N > 1, on N local data-parallel workers (``llseg.methods.launch``)."""
        rows = _rows(train_data)
        if rows.shape[1] < 2 or getattr(train_data, "y", None) is None:
            raise ValueError("training data needs x rows [image, full_label] and y = train labels; "
                             "write index files with 'llseg prepare'")
        images, full = [str(v) for v in rows[:, 0]], [str(v) for v in rows[:, 1]]
        train = [str(v) for v in np.asarray(train_data.y).reshape(-1)]
        if self.config.devices > 1:
            from llseg.methods.launch import learn_on_devices

            return learn_on_devices(self.learner, images, full, train)
        # Ianvs and llseg bench set OUTPUT_URL to the round's folder: an interrupted round resumes there
        output = os.environ.get("OUTPUT_URL")
        self._resume_file = Path(output) / RESUME_FILE if output else None
        return self.learner.learn(images, full, train, checkpoints=self._resume_file)

    def predict(self, data: Any, **kwargs: Any) -> list[str]:
        """Write one prediction record per distinct image and return the records' paths in row
        order (a repeated row, e.g. a padded index line, reuses its image's record)."""
        images = [str(v) for v in _rows(data)[:, 0]]
        out = self._prediction_dir()
        written: dict[str, str] = {}
        distinct = list(dict.fromkeys(images))
        for image, prediction in zip(distinct, self.learner.predict(distinct)):
            digest = hashlib.sha1(image.encode()).hexdigest()[:10]
            path = out / f"{Path(image).stem}-{digest}.npz"
            save_prediction(
                path,
                pred=prediction.pred,
                group_pred=prediction.group_pred,
                prefix_pred=prediction.prefix_pred,
                classes=prediction.classes.tolist(),
                group_sizes=prediction.group_sizes.tolist(),
                num_classes=prediction.num_classes,
                unscored=prediction.unscored,
            )
            written[image] = str(path)
        return [written[image] for image in images]

    def evaluate(self, data: Any, **kwargs: Any) -> dict[str, Any]:
        """Scores on rows with labels (y = label paths), computed in memory: nothing is written."""
        if getattr(data, "y", None) is None:
            raise ValueError("evaluate needs labelled data (y = label paths)")
        images = [str(v) for v in _rows(data)[:, 0]]
        return self.learner.evaluate(images, [str(v) for v in np.asarray(data.y).reshape(-1)])

    def save(self, model_path: str) -> str:
        """Write the self-describing checkpoint exactly at ``model_path`` (atomically); the training
        checkpoints of the stage just trained are deleted."""
        self.learner.save(model_path)
        resume = self._resume_file
        if resume is not None:
            remove_leftovers(resume)
            resume.unlink(missing_ok=True)
            self._resume_file = None
        return str(model_path)

    def load(self, model_url: str) -> None:
        """Restore model, classes and state from a checkpoint (any device, ``map_location``)."""
        self.learner.load_state_dict(read_checkpoint(model_url), source=str(model_url))

    def get_weights(self) -> dict[str, np.ndarray]:
        """Model parameters and buffers as numpy arrays."""
        if self.learner.model is None:
            raise RuntimeError("no model yet: train or load first")
        return {k: v.detach().cpu().numpy() for k, v in self.learner.model.state_dict().items()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Load parameters given by :meth:`get_weights` (same architecture and classes)."""
        if self.learner.model is None:
            raise RuntimeError("no model yet: train or load first, so the classes are known")
        self.learner.model.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()})

    # ----------------------------------------------------------------- helpers
    def _prediction_dir(self) -> Path:
        base = os.environ.get("INFERENCE_RESULT_DIR") or os.environ.get("OUTPUT_URL") or self.output_dir
        if not base:
            raise RuntimeError(
                "no output folder for predictions: set the output_dir hyperparameter "
                "(Ianvs and 'llseg bench' set OUTPUT_URL themselves)"
            )
        return Path(base) / "predictions"


@register(GENERAL, "llseg_erfnet")
class ERFNetEstimator(SegmentationEstimator):
    """ERFNet (Romera et al. 2018) trained with any registered recipe that runs on it (``recipe``;
    the default is ``TrainConfig``'s)."""

    architectures = ("erfnet",)


@register(GENERAL, "llseg_deeplabv3")
class DeepLabV3Estimator(SegmentationEstimator):
    """DeepLabV3 (``model``: deeplabv3_resnet101, deeplabv3_resnet50 or deeplabv3_mobilenet_v3_large)
    with any registered recipe (``recipe``). Unset options take the model's training defaults and
    then the recipe's published values (docs/methods.md)."""

    architectures = ("deeplabv3_resnet101", "deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large")
