"""The shipped ISPRS jobs (examples/isprs/lifelong_learning_bench), run by the built-in runner with the real
DeepLabV3 estimator on tiny synthetic aerial tiles: three rounds, per-domain scores on the leaderboard."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from llseg.data.isprs.synthetic import generate_aerial_dataset
from llseg.data.prepare import prepare
from llseg.ianvs.estimator import DeepLabV3Estimator
from llseg.methods.checkpoint import read_checkpoint
from llseg.runner.job import run_job
from llseg.runner.paradigm import model_path
from tests.runner.conftest import write_job_backbones

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = "examples/isprs/lifelong_learning_bench"
ALGORITHMS = ["deeplabv3_ssul", "deeplabv3_finetune", "deeplabv3_joint", "deeplabv3_mib", "deeplabv3_plop", "deeplabv3_lag"]
# The synthetic job test runs these (every file is still parsed and built): all six take twice as long (about 65 s on
# one thread instead of 32), and MiB and PLOP run end to end in the synthetic VOC job test.
RUN = ["deeplabv3_ssul", "deeplabv3_finetune", "deeplabv3_joint", "deeplabv3_lag"]
# The real files: epochs, batch, lr, backbone_lr (None: every parameter at lr), lr_incremental, crop. IDEC's published
# ISPRS command for ssul/finetune/joint/lag (docs/methods.md §3.1, §4.1), MiB's and PLOP's own settings (§5, §6).
PAPER = {"ssul": (30, 12, 0.01, 0.001, None, "513x513"), "mib": (30, 24, 0.01, None, 0.001, "512x512")}
PAPER.update(finetune=PAPER["ssul"], joint=PAPER["ssul"], lag=PAPER["ssul"], plop=PAPER["mib"])
COLUMNS = ["mIoU_old", "mIoU_new", "mIoU_all", "hIoU", "mIoU_all_potsdam", "mIoU_all_vaihingen", "BWT", "FWT", "task_avg_acc"]
DOMAIN_METRICS = [f"mIoU_{k}_{d}" for d in ("potsdam", "vaihingen") for k in ("old", "new", "all")]
GROUPS = {0: [[0, 1]], 1: [[0, 1]], 2: [[0, 1], [2, 3]], 3: [[0, 1], [2, 3], [4]]}  # per round: 2-2-1 class groups



def _copy_repo(root: Path) -> None:
    for folder in ("testenv", "testalgorithms", EXAMPLE):
        shutil.copytree(ROOT / folder, root / folder)


def _set(path: Path, values: dict[str, Any]) -> dict[str, Any]:
    """Overwrite hyperparameters of an algorithm file; returns the shipped values."""
    data = yaml.safe_load(path.read_text())
    hps = data["algorithm"]["modules"][0]["hyperparameters"]
    shipped = {name: spec["values"][0] for item in hps for name, spec in item.items()}
    for item in hps:
        ((name, spec),) = item.items()
        if name in values:
            spec["values"] = [values[name]]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return shipped


def _rows(job: str, name: str) -> list[dict[str, Any]]:
    with open(f"workspace/{job}/rank/{name}", newline="") as handle:
        return list(csv.DictReader(handle))


def _keep_algorithms(job_file: Path, files: str, keep: list[str]) -> None:
    """Check that ``job_file`` lists ALGORITHMS, one per testalgorithms file matching ``files``; then keep ``keep``."""
    spec = yaml.safe_load(job_file.read_text())
    algorithms = spec["benchmarkingjob"]["test_object"]["algorithms"]
    assert [a["name"] for a in algorithms] == ALGORITHMS
    assert sorted(p.name.split("_")[1] for p in (job_file.parent / "testalgorithms").glob(files)) == sorted(
        a["name"][len("deeplabv3_"):] for a in algorithms)
    spec["benchmarkingjob"]["test_object"]["algorithms"] = [a for a in algorithms if a["name"] in keep]
    job_file.write_text(yaml.safe_dump(spec, sort_keys=False))


def test_synthetic_aerial_job_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    monkeypatch.chdir(tmp_path)
    _copy_repo(tmp_path)
    testenv = yaml.safe_load((tmp_path / EXAMPLE / "testenv_isprs-2-2-1_synthetic-aerial.yaml").read_text())["testenv"]
    assert [m["name"] for m in testenv["metrics"]][:10] == ["mIoU_old", "mIoU_new", "mIoU_all", "hIoU", *DOMAIN_METRICS]
    # the data commands of the testenv's comments, on 128 x 128 tiles cut into 64 px patches
    generate_aerial_dataset("data/synthetic-aerial", seed=0, size=(128, 128))
    prepare("isprs", root="data/synthetic-aerial", split="isprs-2-2-1", out="data/synthetic-aerial-isprs-2-2-1",
            isprs_options={"patch_size": 64})
    assert write_job_backbones(sorted((tmp_path / EXAMPLE / "testalgorithms").glob("*synthetic-aerial.yaml")))
    for path in (tmp_path / EXAMPLE / "testalgorithms").glob("*synthetic-aerial.yaml"):
        shipped = _set(path, {"epochs": 1, "batch_size": 4, "device": "cpu"})
        assert (shipped["split"], shipped["dataset"], shipped["model"]) == (
            "isprs-2-2-1", "isprs", "deeplabv3_mobilenet_v3_large"
        )
        DeepLabV3Estimator(**shipped)  # every shipped value is valid

    _keep_algorithms(tmp_path / EXAMPLE / "benchmarkingjob_synthetic-aerial.yaml", "*synthetic-aerial.yaml", RUN)

    result = run_job(f"{EXAMPLE}/benchmarkingjob_synthetic-aerial.yaml")
    assert not result.failed and [c.algorithm for c in result.cases] == RUN
    for case in result.cases:
        case_dir = Path(case.case_dir)
        report = json.loads((case_dir / "results.json").read_text())
        assert len(report["matrix"]["values"]) == 3 and all(len(row) == 3 for row in report["matrix"]["values"])
        for name in ("mIoU_old", "mIoU_new", "mIoU_all", "hIoU", *DOMAIN_METRICS):
            assert 0.0 <= report["metrics"][name] <= 1.0, (case.algorithm, name)
        for r, groups in GROUPS.items():
            assert read_checkpoint(model_path(str(case_dir), r))["groups"] == groups, (case.algorithm, r)
    job = "deeplabv3-mobilenetv3_isprs-2-2-1_synthetic-aerial"
    rows = _rows(job, "all_rank.csv")
    assert sorted(r["algorithm"] for r in rows) == sorted(RUN)
    assert all(column in rows[0] for column in [*COLUMNS, *DOMAIN_METRICS, "MATRIX"])
    assert all(column in _rows(job, "selected_rank.csv")[0] for column in COLUMNS)


def test_real_isprs_job_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    """The real-data files carry their papers' settings (IDEC's ISPRS command; MiB's and PLOP's own) and build
    their estimators as shipped; with a CPU-sized model and budget the ssul case runs its three rounds on tiny
    synthetic tiles."""
    monkeypatch.chdir(tmp_path)
    _copy_repo(tmp_path)
    fast = {"model": "deeplabv3_mobilenet_v3_large", "model_kwargs": {"output_stride": 16, "bn_momentum": 0.1},
            "epochs": 1, "batch_size": 4, "crop_size": "32x32", "num_workers": 0, "device": "cpu",
            "mode": "corrected"}  # PLOP's released mode needs a ResNet
    for path in sorted((tmp_path / EXAMPLE / "testalgorithms").glob("*_isprs.yaml")):
        shipped = _set(path, fast)
        cfg = DeepLabV3Estimator(**shipped).config  # checks every value; the weights load at the first train
        assert (cfg.model, cfg.split, cfg.dataset) == ("deeplabv3_resnet101", "isprs-2-2-1", "isprs"), path.name
        crop = "x".join(map(str, cfg.crop_size))
        assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.backbone_lr, cfg.lr_incremental, crop) == PAPER[cfg.recipe], path.name
        assert cfg.scale == (0.5, 2.0) and shipped["model_kwargs"]["backbone_weights"], path.name
        if cfg.recipe in ("ssul", "lag"):
            assert (cfg.options.pseudo_thresh, cfg.options.unknown, cfg.options.freeze, cfg.options.mem_size) == (
                0.7, True, True, 0
            ), path.name
        if cfg.recipe == "plop":
            assert cfg.options.mode == "released", path.name
        if cfg.recipe == "lag":
            assert (cfg.options.rho, cfg.options.lambda_nsc, cfg.options.kd_on_frozen, cfg.options.feature_decoupling) == (
                0.5, 0.1, False, True
            )
    # ssul only: the files are checked above
    _keep_algorithms(tmp_path / EXAMPLE / "benchmarkingjob.yaml", "*_isprs.yaml", ALGORITHMS[:1])
    generate_aerial_dataset("data/aerial", seed=0, size=(128, 128))
    prepare("isprs", root="data/aerial", split="isprs-2-2-1", out="data/isprs-2-2-1", isprs_options={"patch_size": 64})

    result = run_job(f"{EXAMPLE}/benchmarkingjob.yaml")
    assert not result.failed and [c.algorithm for c in result.cases] == ["deeplabv3_ssul"]
    case_dir = Path(result.cases[0].case_dir)
    for r, groups in GROUPS.items():
        assert read_checkpoint(model_path(str(case_dir), r))["groups"] == groups, r
    rows = _rows("deeplabv3_isprs-2-2-1_isprs", "selected_rank.csv")
    assert len(rows) == 1 and all(column in rows[0] for column in COLUMNS)
