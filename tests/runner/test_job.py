"""Whole jobs with the test doubles: outputs, rerun dedupe, failure isolation, the CLI."""
from __future__ import annotations

import csv
import json
import os

import pytest

from llseg.cli import main
from llseg.runner.job import ERROR_LOG, run_job
from tests.runner.conftest import Repo, algorithm_yaml, job_yaml


def _rank(path: str = "workspace/bench/rank/all_rank.csv") -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_job_outputs(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_job(repo.standard())
    assert not result.failed and [c.algorithm for c in result.cases] == ["keep", "forget"]
    keep = result.cases[0].case_dir
    assert keep.startswith("./workspace/bench/keep/")
    assert sorted(os.listdir(os.path.join(keep, "dataset"))) == [
        f"model_{k}-{i}.txt" for k in ("eval", "train") for i in range(4)
    ]
    report = json.load(open(os.path.join(keep, "results.json")))
    assert list(report) == [
        "benchmark", "algorithm", "test_case", "url", "paradigm", "modules", "hyperparameters", "seed", "dataset",
        "incremental_rounds", "matrix", "gem", "ianvs", "task_avg_acc", "metrics", "class_iou", "test_predictions",
        "wall_time_s", "finished", "versions",
    ]
    assert report["matrix"]["round0"] == [1.0, 0.0, 0.0]
    assert report["matrix"]["values"] == [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
    assert report["gem"] == {"ACC": 1.0, "BWT": 0.0, "forgetting": 0.0, "forgetting_per_step": [0.0, 0.0]}
    assert report["ianvs"] == {"BWT": pytest.approx(2 / 9), "FWT": 0.0}
    assert report["metrics"]["runner_hits"] == 6.0 and report["metrics"]["MATRIX"]["all"] == report["matrix"]["values"]
    assert report["hyperparameters"] == {"basemodel": {"forget": False}}
    assert [os.path.basename(p) for p in report["test_predictions"]] == [f"c{k}_t{i}.png.txt" for k in (1, 2, 3) for i in (0, 1)]
    assert "| 3 | 1.0000 | 1.0000 | 1.0000 |" in open(os.path.join(keep, "results.md")).read()
    forget = json.load(open(os.path.join(result.cases[1].case_dir, "results.json")))
    assert forget["gem"]["forgetting"] == 1.0 and forget["gem"]["BWT"] == -1.0 and forget["ianvs"]["BWT"] == 0.0

    rows = _rank()
    assert [(r["rank"], r["algorithm"], r["runner_hits"], r["basemodel-forget"]) for r in rows] == [
        ("1", "keep", "6.0", "False"),
        ("2", "forget", "2.0", "True"),
    ]
    assert rows[0]["url"] == keep and rows[0]["task_definition"] == "RunnerTaskDefinition"
    out = capsys.readouterr().out
    assert "| rank | algorithm | runner_hits | BWT" in out and "| 1    | keep " in out


def test_rerun_does_not_duplicate_rows(repo: Repo) -> None:
    path = repo.standard()
    run_job(path)
    first = _rank()
    run_job(path)
    second = _rank()
    assert [r["algorithm"] for r in second] == ["keep", "forget"]
    assert [r["url"] for r in second] != [r["url"] for r in first]  # replaced by the new test cases
    assert [r["runner_hits"] for r in second] == [r["runner_hits"] for r in first]
    assert len(_rank("workspace/bench/rank/selected_rank.csv")) == 2


def test_failing_case_keeps_the_others(repo: Repo) -> None:
    repo.standard()
    repo.write("testalgorithms/broken.yaml", algorithm_yaml([{"fail_round": {"values": [2]}}]))
    path = repo.write(
        "benchmarkingjob.yaml",
        job_yaml(
            [
                ("keep", "testalgorithms/keep.yaml"),
                ("broken", "testalgorithms/broken.yaml"),
                ("forget", "testalgorithms/forget.yaml"),
            ]
        ),
    )
    result = run_job(path)
    assert [c.algorithm for c in result.failed] == ["broken"]
    assert result.failed[0].error == "RuntimeError: dummy failure in round 2"
    log = open(os.path.join(result.failed[0].case_dir, ERROR_LOG)).read()
    assert "Traceback" in log and "dummy failure in round 2" in log
    assert [r["algorithm"] for r in _rank()] == ["keep", "forget"]
    assert all(os.path.isfile(os.path.join(c.case_dir, "results.json")) for c in result.cases if c.error is None)
    assert main(["bench", "-f", path]) == 1


def test_environment_is_restored(repo: Repo) -> None:
    os.environ.pop("OUTPUT_URL", None)
    run_job(repo.standard())
    assert "OUTPUT_URL" not in os.environ and "HAS_COMPLETED_INITIAL_TRAINING" not in os.environ


def test_cli_exit_codes(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    path = repo.standard()
    assert main(["bench", "-f", path]) == 0
    data = job_yaml([("keep", "testalgorithms/keep.yaml")])
    data["benchmarkingjob"]["rank"]["sort_by"] = [{"runner_hit": "descend"}]
    repo.write(path, data)
    assert main(["bench", "-f", path]) == 2
    assert "did you mean 'runner_hits'" in capsys.readouterr().err
