"""The Sedna compatibility layer: pure helpers always; with KubeEdge Sedna, a full lifelong job in a
temporary workspace; with Ianvs, the real ``ianvs -f`` CLI on the repository's YAML files."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import llseg.ianvs.modules  # noqa: F401  (registers the modules and applies the layer)
from llseg.ianvs import registry, sedna_compat
from tests.ianvs.sedna_env import REPO, needs_sedna

IANVS = shutil.which("ianvs", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
needs_ianvs = pytest.mark.skipif(IANVS is None, reason="the Ianvs CLI 'ianvs' is not installed next to this Python")


# ------------------------------------------------------------------------------ always (no Sedna)
def test_edge_kb_goes_below_the_test_case_output_folder(tmp_path: Path) -> None:
    case = tmp_path / "ws" / "bench" / "alg" / "uuid"
    for step in ("train/0", "eval/3", "inference/results/test"):
        assert sedna_compat.edge_kb_dir(str(case / "output" / step)) == str(case / "output" / "edge_kb")
    assert sedna_compat.edge_kb_dir(str(tmp_path / "elsewhere")) == str(tmp_path / "elsewhere" / "edge_kb")


def test_only_an_existing_index_other_than_ianvs_placeholder_is_a_knowledge_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = tmp_path / "index.pkl"
    assert not sedna_compat.is_knowledge_base(None)
    assert not sedna_compat.is_knowledge_base(str(index))
    index.write_bytes(b"kb")
    assert sedna_compat.is_knowledge_base(str(index))
    monkeypatch.setattr(sedna_compat, "IANVS_PLACEHOLDER_INDEX", str(index))
    assert not sedna_compat.is_knowledge_base(str(index))  # a foreign KB at Ianvs' hard-coded path


class _Job:
    """Records what Sedna's train() would see."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.seen: dict[str, str | None] = {}
        self.cloud_knowledge_management = type("CKM", (), {"task_index": "/ws/output/train/0/index.pkl"})()


def _fake_train(job: _Job, train_data: Any, valid_data: Any = None, post_process: Any = None, **kwargs: Any) -> Any:
    job.seen = {k: os.environ.get(k) for k in ("HAS_COMPLETED_INITIAL_TRAINING", "CLOUD_KB_INDEX")}
    return job.result


def test_train_with_ianvs_placeholder_index_is_initial_training_and_returns_the_index_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HAS_COMPLETED_INITIAL_TRAINING", "True")  # Ianvs' default mode, round 1
    monkeypatch.setenv("CLOUD_KB_INDEX", sedna_compat.IANVS_PLACEHOLDER_INDEX)
    job = _Job(result={"global": {}})  # Sedna 0.6 initial training returns its feedback dict
    assert sedna_compat._wrap_train(_fake_train)(job, "data") == "/ws/output/train/0/index.pkl"
    assert job.seen["HAS_COMPLETED_INITIAL_TRAINING"] == "False"
    assert os.environ["HAS_COMPLETED_INITIAL_TRAINING"] == "True"  # restored


def test_train_with_a_real_index_updates_from_its_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "index.pkl").write_bytes(b"kb")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HAS_COMPLETED_INITIAL_TRAINING", "True")
    monkeypatch.setenv("CLOUD_KB_INDEX", "index.pkl")
    job = _Job(result="/ws/output/train/1/index.pkl")
    assert sedna_compat._wrap_train(_fake_train)(job, "data") == "/ws/output/train/1/index.pkl"
    assert job.seen == {"HAS_COMPLETED_INITIAL_TRAINING": "True", "CLOUD_KB_INDEX": str(tmp_path / "index.pkl")}
    assert os.environ["CLOUD_KB_INDEX"] == "index.pkl"


def test_server_calls_are_answered_locally_unless_the_server_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    call = sedna_compat._unless_env("LLSEG_TEST_SERVER", lambda x: f"remote {x}", lambda x: f"local {x}")
    monkeypatch.delenv("LLSEG_TEST_SERVER", raising=False)
    assert call("a") == "local a"
    monkeypatch.setenv("LLSEG_TEST_SERVER", "http://kb:9000")
    assert call("a") == "remote a"


def test_apply_does_nothing_without_sedna(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "sedna_class_factory", lambda: None)
    assert sedna_compat.sedna_flavour() is None
    assert sedna_compat.apply() is None


# --------------------------------------------------------------------------- with KubeEdge Sedna
class MajorityEstimator:
    """A tiny Sedna estimator: predicts the most frequent training label; saves JSON."""

    def __init__(self) -> None:
        self.label = ""
        self.trained: list[int] = []

    def train(self, train_data: Any, **kwargs: Any) -> dict[str, int]:
        labels, counts = np.unique(train_data.y, return_counts=True)
        self.label = str(labels[np.argmax(counts)])
        self.trained.append(len(train_data.y))
        return {"n": len(train_data.y)}

    def save(self, model_path: str) -> None:
        Path(model_path).write_text(json.dumps({"label": self.label}))

    def load(self, model_url: str) -> None:
        self.label = json.loads(Path(model_url).read_text())["label"]

    def predict(self, data: Any, **kwargs: Any) -> list[str]:
        return [self.label] * len(data)


def accuracy(y_true: Any, y_pred: Any, **kwargs: Any) -> float:
    return float(np.mean(np.asarray(y_true).reshape(-1) == np.asarray(y_pred).reshape(-1)))


def _source(n: int, label: str, data_type: str = "train") -> Any:
    from sedna.datasources import BaseDataSource

    data = BaseDataSource(data_type=data_type)
    data.x = np.array([[f"img{i}.png"] for i in range(n)])
    data.y = np.array([label] * n)
    return data


def _job(estimator: MajorityEstimator) -> Any:
    from sedna.core.lifelong_learning.lifelong_learning import LifelongLearning

    key = "seen_estimator" if sedna_compat.sedna_flavour() == sedna_compat.UPSTREAM else "estimator"
    return LifelongLearning(
        **{key: estimator},
        task_definition={"method": "LLSegTaskDefinition"},
        task_allocation={"method": "LLSegTaskAllocation"},
        task_update_decision={"method": "LLSegTaskUpdateDecision"},
        unseen_sample_recognition={"method": "LLSegUnseenSampleRecognition"},
        unseen_sample_re_recognition={"method": "LLSegUnseenSampleReRecognition"},
    )


@pytest.mark.ianvs
@needs_sedna
def test_apply_is_idempotent_and_adds_what_ianvs_calls() -> None:
    from sedna.core.lifelong_learning.lifelong_learning import LifelongLearning

    flavour = sedna_compat.apply()
    train = LifelongLearning.train
    assert sedna_compat.apply() == flavour in (sedna_compat.UPSTREAM, sedna_compat.FORK)
    assert LifelongLearning.train is train  # not wrapped twice
    for name in ("my_evaluate", "my_inference", "inference_2"):
        assert callable(getattr(LifelongLearning, name))
    assert os.environ["BACKEND_TYPE"] not in ("", "TENSORFLOW", "KERAS", "TORCH")


@pytest.mark.ianvs
@needs_sedna
def test_kb_and_lc_clients_answer_locally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sedna.service.client import KBClient, LCClient

    monkeypatch.delenv("KB_SERVER", raising=False)
    monkeypatch.delenv("LC_SERVER", raising=False)
    model = tmp_path / "global.model"
    model.write_text("m")
    kb = KBClient(kbserver=None)
    assert kb.upload_file(str(model)) == str(model) and model.exists()
    assert kb.update_db(str(model)) == str(model)
    assert kb.update_task_status("global", new_status=0) is None
    assert LCClient.send("http://127.0.0.1:9100", "worker", {"status": "ok"}) is None


@pytest.mark.ianvs
@needs_sedna
def test_lifelong_job_rounds_stay_in_the_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ianvs' call sequence (default-mode start, evaluation, update, inference) on a dummy estimator."""
    cwd, case = tmp_path / "cwd", tmp_path / "ws" / "case"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for key in ("EDGE_OUTPUT_URL", "MODEL_URLS", "KB_SERVER", "LC_SERVER"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("LOCAL_TEST", "TRUE")  # set by Ianvs
    monkeypatch.setenv("model_threshold", "0")
    monkeypatch.setenv("operator", "<")
    estimator = MajorityEstimator()

    # Round 0: Ianvs' default mode asks for an update of its placeholder index.
    monkeypatch.setenv("OUTPUT_URL", str(case / "output/train/0"))
    monkeypatch.setenv("CLOUD_KB_INDEX", sedna_compat.IANVS_PLACEHOLDER_INDEX)
    monkeypatch.setenv("HAS_COMPLETED_INITIAL_TRAINING", "True")
    index0 = _job(estimator).train(_source(1, "a"))  # 1 sample: Sedna's rare-task path (global.model)
    assert index0 == str(case / "output/train/0/index.pkl") and Path(index0).is_file()
    assert (case / "output/train/0/seen_task/global.model").is_file()
    assert "EDGE_OUTPUT_URL" not in os.environ

    monkeypatch.setenv("OUTPUT_URL", str(case / "output/eval/0"))
    monkeypatch.setenv("MODEL_URLS", index0)
    edge, tasks, res = _job(estimator).my_evaluate(_source(4, "a", "eval"), metrics=accuracy)
    assert edge == str(case / "output/eval/0/index.pkl") and Path(edge).is_file()
    assert [t.entry for t in tasks] == ["global"]
    assert res == {"accuracy": 1.0} and tasks[0].scores == {"accuracy": 1.0}

    # Round 1: an update with 12 samples (Sedna's normal path, also named global.model).
    monkeypatch.setenv("OUTPUT_URL", str(case / "output/train/1"))
    monkeypatch.setenv("CLOUD_KB_INDEX", index0)
    index1 = _job(estimator).train(_source(12, "b"))
    assert index1 == str(case / "output/train/1/index.pkl")
    assert estimator.trained == [1, 12]
    assert (case / "output/train/1/seen_task/global.model").is_file()
    assert json.loads((case / "output/train/0/seen_task/global.model").read_text()) == {"label": "a"}  # kept

    monkeypatch.setenv("OUTPUT_URL", str(case / "output/eval/1"))
    monkeypatch.setenv("MODEL_URLS", index1)
    edge, tasks, res = _job(estimator).my_evaluate(_source(4, "a", "eval"), metrics=accuracy)
    assert res == {"accuracy": 0.0} and [t.entry for t in tasks] == ["global"]
    assert list(_job(estimator).my_inference(_source(3, "b", "test"))) == ["b", "b", "b"]
    # Ianvs' default mode uses evaluate()'s return value as the next MODEL_URLS.
    assert _job(estimator).evaluate(_source(2, "b", "eval"), metrics=accuracy) == str(case / "output/eval/1/index.pkl")

    if sedna_compat.sedna_flavour() == sedna_compat.UPSTREAM:  # the fork's inference_2 needs predict_score
        monkeypatch.setenv("OUTPUT_URL", str(case / "output/inference/results/2"))
        pred, is_unseen, tasks = _job(estimator).inference_2(_source(1, "b", "test"))
        assert list(pred) == ["b"] and is_unseen is False and [t.entry for t in tasks] == ["global"]
        assert (case / "output/edge_kb").is_dir()
    assert list(cwd.iterdir()) == []  # no ./index.pkl in the working directory


# ------------------------------------------------------------------------------ the real Ianvs CLI
def _tiny_copy_of_the_repository_benchmark(root: Path) -> dict[str, Any]:
    """Copy benchmarkingjob.yaml, testenv/ and testalgorithms/ to ``root``: first algorithm, 1 epoch."""
    for folder in ("testenv", "testalgorithms"):
        shutil.copytree(REPO / folder, root / folder)
    job = yaml.safe_load((REPO / "benchmarkingjob.yaml").read_text())
    first = job["benchmarkingjob"]["test_object"]["algorithms"][:1]
    job["benchmarkingjob"]["test_object"]["algorithms"] = first
    (root / "benchmarkingjob.yaml").write_text(yaml.safe_dump(job))
    algorithm_file = root / first[0]["url"]
    algorithm = yaml.safe_load(algorithm_file.read_text())
    for module in algorithm["algorithm"]["modules"]:
        if module["type"] == "basemodel":
            for entry in module["hyperparameters"]:
                for name in entry:
                    if name in ("epochs", "batch_size"):
                        entry[name] = {"values": [1 if name == "epochs" else 2]}
                    if name == "device":
                        entry[name] = {"values": ["cpu"]}
    algorithm_file.write_text(yaml.safe_dump(algorithm))
    return job["benchmarkingjob"]


@pytest.mark.ianvs
@needs_sedna
@needs_ianvs
def test_ianvs_cli_runs_the_repository_benchmark_end_to_end(tmp_path: Path) -> None:
    job = _tiny_copy_of_the_repository_benchmark(tmp_path)
    testenv = yaml.safe_load((tmp_path / job["testenv"]).read_text())["testenv"]
    prepared = Path(testenv["dataset"]["train_index"]).parent  # e.g. data/synthetic-city-cil3
    llseg = [sys.executable, "-m", "llseg"]
    subprocess.run([*llseg, "synth", "--out", "raw", "--size", "64x128", "--images-per-city", "2"], cwd=tmp_path, check=True)
    subprocess.run(
        [*llseg, "prepare", "--dataset", "cityscapes", "--root", "raw", "--split", "cil-3", "--out", str(prepared)],
        cwd=tmp_path,
        check=True,
    )
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = subprocess.run(
        [str(IANVS), "-f", "benchmarkingjob.yaml"],
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(scratch)},
        capture_output=True,
        text=True,
        timeout=1200,  # the process must exit by itself
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rank = tmp_path / job["workspace"] / job["name"] / "rank"
    assert (rank / "all_rank.csv").is_file() and (rank / "selected_rank.csv").is_file()
    assert not (tmp_path / "index.pkl").exists()
    # Only Ianvs' own rewritten index copies may appear in TMPDIR; nothing from Sedna.
    assert not [p for p in scratch.rglob("*") if p.suffix in (".pkl", ".model", ".sample")]
