"""Test doubles for the runner: a tiny deterministic estimator and metrics, registered on import.

Samples are named ``c<k>_<i>``: class ``c<k>`` is the text before the first ``_`` of a token's
file name. The estimator "learns" the classes of its training labels (``forget=True`` keeps only
the last round's) and predicts a sample's class if learned, else ``none``; each prediction is a
small text file under ``$OUTPUT_URL/pred/`` whose path is returned, like llseg's records.
"""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from llseg.ianvs.registry import GENERAL, STP, register

INSTANCES: list[DummyEstimator] = []


def cls(token: str) -> str:
    return os.path.basename(str(token)).split("_")[0]


@register(GENERAL, "runner_dummy")
class DummyEstimator:
    """Records every call in ``self.calls`` as (method, detail)."""

    def __init__(self, forget: bool = False, fail_round: int = -1, tag: str = "") -> None:
        self.forget, self.fail_round, self.tag = forget, fail_round, tag
        self.learned: list[str] = []
        self.trains = 0
        self.calls: list[tuple[str, Any]] = []
        INSTANCES.append(self)

    def train(self, train_data: Any, valid_data: Any = None, **kwargs: Any) -> dict[str, int]:
        assert train_data.x.ndim == 2 and train_data.y.shape == (len(train_data),)
        env = os.environ
        self.calls.append(("train", (len(train_data), env["HAS_COMPLETED_INITIAL_TRAINING"], env["OUTPUT_URL"])))
        if self.trains == self.fail_round:
            raise RuntimeError(f"dummy failure in round {self.trains}")
        self.trains += 1
        seen = sorted({cls(y) for y in train_data.y})
        self.learned = seen if self.forget else sorted(set(self.learned) | set(seen))
        return {"n": len(train_data)}

    def predict(self, data: Any, **kwargs: Any) -> list[str]:
        out = os.path.join(os.environ["OUTPUT_URL"], "pred")
        os.makedirs(out, exist_ok=True)
        self.calls.append(("predict", (len(data), os.environ["OUTPUT_URL"])))
        paths = []
        for row in np.asarray(data):
            path = os.path.join(out, os.path.basename(row[0]) + ".txt")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(cls(row[0]) if cls(row[0]) in self.learned else "none")
            paths.append(path)
        return paths

    def save(self, model_path: str) -> None:
        self.calls.append(("save", model_path))
        with open(model_path, "w", encoding="utf-8") as handle:
            json.dump({"learned": self.learned, "trains": self.trains}, handle)

    def load(self, model_url: str) -> None:
        self.calls.append(("load", model_url))
        with open(model_url, encoding="utf-8") as handle:
            state = json.load(handle)
        self.learned, self.trains = state["learned"], state["trains"]


def _hits(y_true: Any, y_pred: Any) -> list[bool]:
    hits = []
    for label, pred in zip(np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)):
        with open(str(pred), encoding="utf-8") as handle:
            hits.append(handle.read() == cls(label))
    return hits


@register(GENERAL, "runner_accuracy")
def accuracy(y_true: Any, y_pred: Any, **kwargs: Any) -> float:
    """Fraction of predictions naming the label's class."""
    return float(np.mean(_hits(y_true, y_pred)))


@register(GENERAL, "runner_hits")
def hits(y_true: Any, y_pred: Any) -> float:
    """Number of correct predictions (a testenv metric, called with the second index token)."""
    return float(sum(_hits(y_true, y_pred)))


@register(GENERAL, "runner_badname")
def not_accuracy(y_true: Any, y_pred: Any) -> float:
    """A model-eval metric with the wrong __name__."""
    return 0.0


@register(STP, "RunnerTaskDefinition")
class RunnerTaskDefinition:
    """Registered only so YAML files can declare a task_definition module."""
