"""The shipped benchmark YAML files, run by the built-in runner with the real ERFNet estimator on tiny data."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest

from llseg.data.imageio import read_label_png
from llseg.data.predictions import load_prediction
from llseg.metrics.incremental import IncrementalScorer
from llseg.runner.dataset import final_metric_y
from llseg.runner.job import run_job
from tests.helpers import JOB, tiny_city_repo


def _recompute(predictions: list[str], test_index: str) -> dict[str, float | None]:
    labels = final_metric_y(test_index)
    scorer: IncrementalScorer | None = None
    for label, pred in zip(labels, predictions):
        record = load_prediction(pred)
        scorer = scorer or IncrementalScorer(record.num_classes)
        scorer.update(record, read_label_png(Path(label)))
    assert scorer is not None
    return scorer.table()


def _rows(name: str) -> list[dict[str, Any]]:
    with open(f"workspace/erfnet_cil-3_synthetic-city/rank/{name}", newline="") as handle:
        return list(csv.DictReader(handle))


def test_default_job_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    monkeypatch.chdir(tmp_path)
    tiny_city_repo(tmp_path)
    result = run_job(JOB)
    assert not result.failed
    assert [c.algorithm for c in result.cases] == ["erfnet_klingner", "erfnet_finetune", "erfnet_joint"]

    for case in result.cases:
        report = json.loads((Path(case.case_dir) / "results.json").read_text())
        assert report["seed"] == 1234 and report["hyperparameters"]["basemodel"]["recipe"] == case.algorithm[len("erfnet_"):]
        assert len(report["matrix"]["values"]) == 3 and all(len(row) == 3 for row in report["matrix"]["values"])
        table = _recompute(report["test_predictions"], "data/synthetic-city-cil3/test_index.txt")
        for name, value in report["metrics"].items():
            if name.startswith("mIoU_"):
                assert value == (None if table[name] is None else pytest.approx(table[name], abs=1e-12)), name
        assert report["metrics"]["MATRIX"]["all"] == report["matrix"]["values"]

    rows = _rows("all_rank.csv")
    assert sorted(r["algorithm"] for r in rows) == ["erfnet_finetune", "erfnet_joint", "erfnet_klingner"]
    scores = [float(r["mIoU_task1+2+3"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and not any(math.isnan(s) for s in scores)
    assert [r["algorithm"] for r in _rows("selected_rank.csv")] == [r["algorithm"] for r in rows]

    # Same seed, same numbers; the rerun replaces the rows instead of adding new ones.
    assert not run_job(JOB).failed
    again = _rows("all_rank.csv")
    assert len(again) == 3
    strip = lambda r: {k: v for k, v in r.items() if k not in ("time", "url")}  # noqa: E731
    assert sorted(map(str, map(strip, again))) == sorted(map(str, map(strip, rows)))
