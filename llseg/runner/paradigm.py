"""The lifelong paradigm's ``no-inference`` round loop, as Ianvs + Sedna run it (docs/ianvs-sedna.md §2.3, §4).

The llseg task definition puts every sample into one task with entry ``"global"``, so Sedna's
flow reduces to: round 0 trains a fresh estimator, later rounds ``load`` the previous round's
model and ``train`` on the round's data (Sedna's update path); every model is saved as
``<case>/output/train/<r>/seen_task/global.model``. After each round the model is evaluated on
the eval files 1..R; the scores fill Ianvs' MATRIX dict under ``"all"``, ``"global"`` and
``"task_avg"``. Given ``samples`` (a few test rows for the report), the model of each round 1..R
also predicts them with ``OUTPUT_URL`` = :func:`report_url`, an llseg addition Ianvs does not
make. The runner writes no Sedna knowledge base (``index.pkl``), so ``CLOUD_KB_INDEX`` and
``MODEL_URLS`` are not set; model files are kept for every round.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from llseg.atomic import write_text
from llseg.runner.dataset import DataSource, load_data

log = logging.getLogger("llseg.runner")

ENTRY = "global"
Scores = dict[str, float]


@dataclass(frozen=True)
class LifelongResult:
    """What the paradigm hands to metric computation (Ianvs' ``system_metric_info`` + ``test_res``).

    ``sample_res`` holds the predictions of the report samples after rounds 1..R (empty without samples).
    """

    matrix: dict[str, list[list[Scores]]]
    task_avg_acc: Scores
    test_res: np.ndarray
    sample_res: tuple[list[str], ...] = ()


def model_path(case_dir: str, r: int) -> str:
    """Where round ``r``'s model is saved."""
    return os.path.join(case_dir, "output", "train", str(r), "seen_task", f"{ENTRY}.model")


def round_path(case_dir: str, r: int) -> str:
    """Round ``r``'s scores and report-sample predictions, written when the round is complete."""
    return os.path.join(case_dir, "output", "train", str(r), "round.json")


def _finished_round(case_dir: str, r: int) -> dict[str, Any] | None:
    """What round ``r`` of an earlier, interrupted run of this case produced, if it completed."""
    if not os.path.isfile(model_path(case_dir, r)):
        return None
    try:
        with open(round_path(case_dir, r), encoding="utf-8") as handle:
            return dict(json.load(handle))
    except (OSError, ValueError):
        return None


def eval_url(case_dir: str, r: int) -> str:
    """``OUTPUT_URL`` while round ``r``'s model is evaluated (and, after the last round, tested)."""
    return os.path.join(case_dir, "output", "eval", str(r))


def report_url(case_dir: str, r: int) -> str:
    """``OUTPUT_URL`` while round ``r``'s model predicts the report samples."""
    return os.path.join(case_dir, "output", "report", str(r))


def _score(metric: Callable[..., Any], value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"model-eval metric '{metric.__name__}' returned {value!r}; Sedna needs a float-convertible score"
        ) from None


def _evaluate(estimator: Any, model_url: str, data: DataSource, metric: Callable[..., Any], source: str) -> tuple[Scores, Scores]:
    """Sedna's evaluate for one task: ``(overall res, task scores)``, both ``{metric.__name__: score}``."""
    estimator.load(model_url=model_url)
    pred = estimator.predict(data.x)
    if len(pred) != len(data):
        raise ValueError(f"estimator.predict returned {len(pred)} predictions for the {len(data)} samples of {source}")
    task = {metric.__name__: _score(metric, metric(y_true=data.y, y_pred=pred))}
    overall = {metric.__name__: _score(metric, metric(data.y, np.array(pred)))}
    return overall, task


def run_no_inference(
    estimator: Any,
    pairs: list[tuple[str, str]],
    test_index: str,
    metric: Callable[..., Any],
    case_dir: str,
    threshold: float,
    operator: str,
    samples: DataSource | None = None,
) -> LifelongResult:
    """Run rounds 0..R on the ``fwt_splitting`` pairs, then evaluate and predict the test index.

    Sets the environment variables Ianvs sets (``OUTPUT_URL``, ``HAS_COMPLETED_INITIAL_TRAINING``,
    ``LOCAL_TEST``, ``model_threshold``, ``operator``); the caller restores ``os.environ``.
    """
    rounds = len(pairs) - 1
    case_dir = os.path.abspath(case_dir)
    matrix: dict[str, list[list[Scores]]] = {"all": [], ENTRY: [], "task_avg": []}
    os.environ["LOCAL_TEST"] = "TRUE"
    model_url = ""
    sample_res: list[list[str]] = []
    for r in range(rounds + 1):
        done = _finished_round(case_dir, r)
        if done is not None:  # kept from an interrupted run of this case (llseg bench --resume)
            model_url = model_path(case_dir, r)
            for key, row in done["rows"].items():
                matrix[key].append(row)
            if samples is not None and r >= 1:
                sample_res.append(done["samples"])
            log.info("  round %d/%d: finished by an earlier run, kept", r, rounds)
            continue
        start = time.perf_counter()
        os.environ["OUTPUT_URL"] = os.path.join(case_dir, "output", "train", str(r))
        os.environ["HAS_COMPLETED_INITIAL_TRAINING"] = "False" if r < 1 else "True"
        train = load_data(pairs[r][0], "train")
        if r >= 1:
            estimator.load(model_url=model_url)
        estimator.train(train_data=train)
        model_url = model_path(case_dir, r)
        os.makedirs(os.path.dirname(model_url), exist_ok=True)
        estimator.save(model_url)
        if not os.path.isfile(model_url):
            raise RuntimeError(f"estimator.save({model_url!r}) wrote no file; Sedna's knowledge base copies exactly that path")
        trained = time.perf_counter() - start

        os.environ.update(OUTPUT_URL=eval_url(case_dir, r), model_threshold=str(threshold), operator=operator)
        rows: dict[str, list[Scores]] = {key: [] for key in matrix}
        for j in range(1, rounds + 1):
            overall, task = _evaluate(estimator, model_url, load_data(pairs[j][1], "eval"), metric, pairs[j][1])
            rows["all"].append(overall)
            rows[ENTRY].append(task)
            rows["task_avg"].append({"accuracy": task["accuracy"]})  # mean over the one task
        for key, row in rows.items():
            matrix[key].append(row)
        if samples is not None and r >= 1:  # the estimator holds this round's model (loaded by _evaluate)
            os.environ["OUTPUT_URL"] = report_url(case_dir, r)
            preds = [str(p) for p in estimator.predict(samples.x)]
            if len(preds) != len(samples):
                raise ValueError(f"estimator.predict returned {len(preds)} predictions for the {len(samples)} report samples")
            sample_res.append(preds)
            os.environ["OUTPUT_URL"] = eval_url(case_dir, r)
        write_text(round_path(case_dir, r), json.dumps({"rows": rows, "samples": sample_res[-1] if r >= 1 and samples is not None
                                                        else None}) + "\n")
        scores = ", ".join(f"{s['accuracy']:.4f}" for s in rows["all"])
        log.info(
            "  round %d/%d: trained on %d samples in %.1fs; accuracy on eval sets 1..%d: %s (%.1fs)",
            r, rounds, len(train), trained, rounds, scores, time.perf_counter() - start,
        )

    # where the last round's evaluation left OUTPUT_URL (also when every round was kept by --resume)
    os.environ.update(OUTPUT_URL=eval_url(case_dir, rounds), model_threshold=str(threshold), operator=operator)
    test = load_data(test_index, "eval")
    _, task = _evaluate(estimator, model_url, test, metric, test_index)
    estimator.load(model_url=model_url)
    test_res = np.array(estimator.predict(test.x))
    if len(test_res) != len(test):
        raise ValueError(f"estimator.predict returned {len(test_res)} predictions for the {len(test)} samples of {test_index}")
    return LifelongResult(matrix, {"accuracy": task["accuracy"]}, test_res, tuple(sample_res))
