"""Builders that several test modules share: a tiny two-stage checkpoint and a tiny copy of the default job."""
from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from llseg.data.cityscapes.synthetic import generate_city_dataset
from llseg.data.prepare import prepare
from llseg.methods.config import TrainConfig
from llseg.methods.learner import ContinualLearner
from tests.conftest import Rows

ROOT = Path(__file__).resolve().parents[1]
JOB = "benchmarkingjob.yaml"
CITY_FAST = {"epochs": 1, "batch_size": 4, "input_size": [32, 64], "device": "cpu"}
JOB_NAME = "erfnet_cil-3_synthetic-city"
RANK_METRICS = ["mIoU_task1", "mIoU_task2", "mIoU_task1+2", "mIoU_task3", "mIoU_task1+2+3", "BWT", "FWT", "task_avg_acc",
                "MATRIX"]
CHECKPOINT_FAST = {"epochs": 1, "batch_size": 2, "seed": 3, "jitter": 0.0, "device": "cpu", "precision": "fp32"}


def two_stage_checkpoint(make_rows: Callable[..., Rows], path: Path) -> tuple[Path, Rows]:
    """ERFNet klingner checkpoint at ``path`` with groups [0, 10] then [13] (1 epoch per stage, 32x64
    band scenes, CPU fp32); returns it and the stage-2 rows."""
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="klingner", **CHECKPOINT_FAST)))
    first = make_rows("a", 2, [10, 0, 13], keep={0, 10})
    second = make_rows("b", 2, [10, 0, 13], keep={13})
    for rows in (first, second):
        learner.learn(list(rows.x[:, 0]), list(rows.x[:, 1]), list(rows.y))
    learner.save(path)
    return path, second


def set_hyperparameters(algorithm_files: Iterable[Path], values: dict[str, Any]) -> None:
    """Give each hyperparameter named in ``values`` that one value in every algorithm YAML file
    (the first module's list); the others stay as they are."""
    for path in algorithm_files:
        data = yaml.safe_load(path.read_text())
        for item in data["algorithm"]["modules"][0]["hyperparameters"]:
            ((name, spec),) = item.items()
            if name in values:
                spec["values"] = [values[name]]
        path.write_text(yaml.safe_dump(data, sort_keys=False))


def tiny_city_repo(root: Path) -> None:
    """Copy the repository's YAML and plugin files into ``root``, with tiny synthetic CIL-3 data
    (32x64, 2 images per city; paths relative to ``root``) and 1-epoch CPU hyperparameters."""
    shutil.copytree(ROOT / "testenv", root / "testenv")
    shutil.copytree(ROOT / "testalgorithms", root / "testalgorithms")
    shutil.copy(ROOT / JOB, root / JOB)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        generate_city_dataset("data/synthetic-city", seed=0, size=(32, 64), images_per_city=2)
        prepare("cityscapes", root="data/synthetic-city", split="cil-3", out="data/synthetic-city-cil3")
    finally:
        os.chdir(cwd)
    set_hyperparameters((root / "testalgorithms").glob("*.yaml"), CITY_FAST)


def rank_rows(root: Path) -> dict[str, dict[str, str]]:
    """The default job's ``all_rank.csv`` under ``root``: algorithm -> its :data:`RANK_METRICS` cells."""
    with open(root / "workspace" / JOB_NAME / "rank" / "all_rank.csv", newline="") as handle:
        return {row["algorithm"]: {m: row[m] for m in RANK_METRICS} for row in csv.DictReader(handle)}


def copy_repo(repo: Path, tmp_path: Path, name: str) -> Path:
    """A copy of ``repo`` at ``tmp_path/name`` without its workspace."""
    root = tmp_path / name
    shutil.copytree(repo, root, ignore=shutil.ignore_patterns("workspace"))
    return root
