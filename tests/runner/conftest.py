"""A throw-away repository root (the CWD) with index files, plugin files and the three YAML kinds."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

PLUGIN = "import tests.runner.doubles  # noqa: F401  (registers the test doubles)\n"
ROUNDS = 3


def train_lines() -> list[str]:
    """30 lines: 10 per class c1, c2, c3 (in that order), tokens relative to data/."""
    return [f"img/c{k}_{i:02d}.png lab/c{k}_{i:02d}_full.png lab/c{k}_{i:02d}_train.png" for k in (1, 2, 3) for i in range(10)]


def holdout_lines() -> list[str]:
    return [f"img/c{k}_t{i}.png lab/c{k}_t{i}_full.png lab/c{k}_t{i}_full.png" for k in (1, 2, 3) for i in range(2)]


def env_yaml(**overrides: Any) -> dict[str, Any]:
    env = {
        "dataset": {"train_index": "data/train_index.txt", "test_index": "data/test_index.txt"},
        "model_eval": {
            "model_metric": {"name": "runner_accuracy", "url": "testenv/runner_dummy_metrics.py", "mode": "no-inference"},
            "threshold": 0,
            "operator": "<",
        },
        "metrics": [
            {"name": "runner_hits", "url": "testenv/runner_dummy_metrics.py"},
            {"name": "BWT"},
            {"name": "FWT"},
            {"name": "task_avg_acc"},
            {"name": "samples_transfer_ratio"},
            {"name": "MATRIX"},
        ],
        "incremental_rounds": ROUNDS,
    }
    env.update(overrides)
    return {"testenv": env}


def algorithm_yaml(hyperparameters: list[dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
    basemodel: dict[str, Any] = {"type": "basemodel", "name": "runner_dummy", "url": "testalgorithms/runner_dummy_basemodel.py"}
    if hyperparameters is not None:
        basemodel["hyperparameters"] = hyperparameters
    alg = {
        "paradigm_type": "lifelonglearning",
        "lifelong_learning_data_setting": {"train_ratio": 0.8, "splitting_method": "fwt_splitting"},
        "initial_model_url": "",
        "modules": [basemodel, {"type": "task_definition", "name": "RunnerTaskDefinition"}],
    }
    alg.update(overrides)
    return {"algorithm": alg}


def job_yaml(algorithms: list[tuple[str, str]], **overrides: Any) -> dict[str, Any]:
    data = {
        "name": "bench",
        "workspace": "./workspace",
        "testenv": "testenv/testenv.yaml",
        "test_object": {"type": "algorithms", "algorithms": [{"name": n, "url": u} for n, u in algorithms]},
        "rank": {
            "sort_by": [{"runner_hits": "descend"}, {"BWT": "descend"}],
            "visualization": {"mode": "selected_only", "method": "print_table"},
            "selected_dataitem": {
                "paradigms": ["all"],
                "modules": ["all"],
                "hyperparameters": ["all"],
                "metrics": ["runner_hits", "BWT", "FWT", "task_avg_acc"],
            },
            "save_mode": "selected_and_all",
        },
    }
    data.update(overrides)
    return {"benchmarkingjob": data}


class Repo:
    """The temporary repository root; ``write`` puts YAML (dict) or text at a relative path."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, rel: str, content: Any) -> str:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
        return rel

    def standard(self) -> str:
        """Two algorithms, 'keep' (remembers classes) and 'forget' (keeps the last round's); returns the job file."""
        self.write("testalgorithms/keep.yaml", algorithm_yaml([{"forget": {"values": [False]}}]))
        self.write("testalgorithms/forget.yaml", algorithm_yaml([{"forget": {"values": [True]}}]))
        return self.write(
            "benchmarkingjob.yaml", job_yaml([("keep", "testalgorithms/keep.yaml"), ("forget", "testalgorithms/forget.yaml")])
        )


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    """The paradigm sets Ianvs' environment variables; undo them after each test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.chdir(tmp_path)
    r = Repo(tmp_path)
    r.write("testalgorithms/runner_dummy_basemodel.py", PLUGIN)
    r.write("testenv/runner_dummy_metrics.py", PLUGIN)
    r.write("data/train_index.txt", "\n".join(train_lines()) + "\n")
    r.write("data/test_index.txt", "\n".join(holdout_lines()) + "\n")
    r.write("testenv/testenv.yaml", env_yaml())
    return r


def write_job_backbones(algorithm_files: Iterator[Path] | list[Path]) -> list[str]:
    """Write, at each ``backbone_weights`` path that the algorithm files name (relative to the CWD), the
    backbone of an untrained DeepLabV3-MobileNetV3 in ``llseg pretrain``'s format: the pipeline under test
    needs the file, not its training (tests/methods/test_pretrain.py trains one)."""
    import torch

    from llseg.models import DeepLabV3, create_model

    written: list[str] = []
    for path in algorithm_files:
        hps = yaml.safe_load(Path(path).read_text())["algorithm"]["modules"][0]["hyperparameters"]
        for item in hps:
            for kwargs in item.get("model_kwargs", {}).get("values", []):
                target = kwargs.get("backbone_weights")
                if target and target not in written:
                    model = create_model("deeplabv3_mobilenet_v3_large", num_classes=2)
                    assert isinstance(model, DeepLabV3)
                    Path(target).parent.mkdir(parents=True, exist_ok=True)
                    torch.save(model.backbone_checkpoint(), target)
                    written.append(target)
    return written
