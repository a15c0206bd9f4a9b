"""The no-inference round loop: Sedna's call sequence, Ianvs' MATRIX rows and system metrics."""
from __future__ import annotations

import os

import pytest

from llseg.runner.config import load_job
from llseg.runner.dataset import final_metric_y, process_index
from llseg.runner.job import compute_metrics, resolve_job
from llseg.runner.paradigm import LifelongResult, model_path, run_no_inference
from llseg.runner.splitting import fwt_splitting
from tests.runner import doubles
from tests.runner.conftest import Repo


def _run(repo: Repo, forget: bool) -> tuple[doubles.DummyEstimator, LifelongResult, str]:
    case = os.path.abspath("case")
    pairs = fwt_splitting(process_index("data/train_index.txt"), 0.8, 3, os.path.join(case, "dataset"))
    estimator = doubles.DummyEstimator(forget=forget)
    result = run_no_inference(estimator, pairs, "data/test_index.txt", doubles.accuracy, case, 0.0, "<")
    return estimator, result, case


def test_call_sequence(repo: Repo) -> None:
    for var in ("OUTPUT_URL", "HAS_COMPLETED_INITIAL_TRAINING", "LOCAL_TEST", "model_threshold", "operator"):
        os.environ.pop(var, None)
    estimator, _, case = _run(repo, forget=False)
    models = [model_path(case, r) for r in range(4)]
    evals = [os.path.join(case, "output", "eval", str(r)) for r in range(4)]
    expected: list[tuple[str, object]] = []
    for r in range(4):
        if r:
            expected.append(("load", models[r - 1]))  # Sedna's update path: load the previous model, then train
        expected.append(
            ("train", (1 if r == 0 else 8, "False" if r == 0 else "True", os.path.join(case, "output", "train", str(r))))
        )
        expected.append(("save", models[r]))
        for _ in range(3):  # eval sets 1..3
            expected += [("load", models[r]), ("predict", (2, evals[r]))]
    expected += [("load", models[3]), ("predict", (6, evals[3]))] * 2  # test eval (task_avg_acc), then test_res
    assert estimator.calls == expected
    assert all(os.path.isfile(m) for m in models)
    assert os.environ["LOCAL_TEST"] == "TRUE" and os.environ["model_threshold"] == "0.0" and os.environ["operator"] == "<"


def test_matrix_rows_hold_ianvs_scores(repo: Repo) -> None:
    _, result, _ = _run(repo, forget=True)
    acc = [[s["accuracy"] for s in row] for row in result.matrix["all"]]
    assert acc == [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    assert set(result.matrix) == {"all", "global", "task_avg"}
    assert result.matrix["global"] == result.matrix["all"] == result.matrix["task_avg"]
    assert result.task_avg_acc == {"accuracy": pytest.approx(2 / 6)}
    assert len(result.test_res) == 6 and result.test_res.dtype.kind == "U"


def test_missing_save_is_an_error(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doubles.DummyEstimator, "save", lambda self, path: None)
    with pytest.raises(RuntimeError, match="wrote no file"):
        _run(repo, forget=False)


def test_system_metrics_use_ianvs_formulas(repo: Repo) -> None:
    """The docs' recorded run: BWT = 1.625/9, FWT = 0.875/3 (docs/ianvs-sedna.md §5.2)."""
    job = load_job(repo.standard())
    resolved = resolve_job(job)
    rows = [[0.125, 0, 0.375], [0.75, 0.75, 0.625], [0.625, 0.75, 0.5], [0.75, 0.75, 0.625]]
    matrix = {key: [[{"accuracy": v} for v in row] for row in rows] for key in ("all", "global", "task_avg")}
    _, real, _ = _run(repo, forget=False)
    result = LifelongResult(matrix, {"accuracy": 0.56666}, real.test_res)
    values = compute_metrics(job, resolved, result, final_metric_y("data/test_index.txt"))
    assert list(values) == ["runner_hits", "BWT", "FWT", "task_avg_acc", "samples_transfer_ratio", "MATRIX"]
    assert values["BWT"] == pytest.approx(1.625 / 9) and values["FWT"] == pytest.approx(0.875 / 3)
    assert values["task_avg_acc"] == 0.567 and values["samples_transfer_ratio"] == 0.0
    assert values["MATRIX"]["all"] == rows[1:] and set(values["MATRIX"]) == {"all", "global", "task_avg"}
    assert values["runner_hits"] == 6.0  # second token (full label) of every test line, all classes learned
