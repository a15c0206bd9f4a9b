"""``llseg bench --jobs N``: the algorithms run in worker processes, longest first, and the leaderboard
equals the one-process run's (one thread per process in both, CPU fp32)."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llseg.runner import parallel
from tests.helpers import JOB, JOB_NAME, copy_repo, rank_rows, tiny_city_repo
from tests.interrupt import env, llseg, stop_when


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default job (klingner, finetune, joint), 1 epoch, fp32, tiny data."""
    root = tmp_path_factory.mktemp("bench-jobs")
    tiny_city_repo(root)
    for path in (root / "testalgorithms").glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        data["algorithm"]["modules"][0]["hyperparameters"] += [{"precision": {"values": ["fp32"]}}]
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return root


def _bench(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``llseg bench -f JOB args`` with its INFO log (one thread, as :func:`tests.interrupt.llseg`)."""
    return subprocess.run([sys.executable, "-m", "llseg", "bench", "-f", JOB, *args], cwd=root,
                          env={**env(), "LLSEG_LOGLEVEL": "INFO"}, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def sequential(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """The leaderboard of the one-process run (one thread)."""
    root = copy_repo(repo, tmp_path_factory.mktemp("bench-jobs-sequential"), "sequential")
    assert llseg(["bench", "-f", JOB], root).returncode == 0
    return rank_rows(root)


def test_parallel_run_gives_the_sequential_leaderboard(repo: Path, sequential: dict[str, dict[str, str]],
                                                       tmp_path: Path) -> None:
    root = copy_repo(repo, tmp_path, "parallel")
    done = _bench(root, "--jobs", "2")
    assert done.returncode == 0, done.stderr
    assert rank_rows(root) == sequential
    # joint (fresh model on all data so far at every round) has the most work: it starts first
    assert "started erfnet_joint" in done.stderr.split("started erfnet_klingner")[0]
    logs = root / "workspace" / JOB_NAME / "logs"
    assert sorted(p.name for p in logs.iterdir()) == [f"erfnet_{a}.log" for a in ("finetune", "joint", "klingner")]
    assert "rank written" in (logs / "erfnet_joint.log").read_text()
    assert (root / "workspace" / JOB_NAME / "rank" / "report.html").is_file()
    # a rerun with --resume keeps every finished case and starts no worker
    again = _bench(root, "--jobs", "2", "--resume")
    assert again.returncode == 0 and "started" not in again.stderr and rank_rows(root) == sequential


def test_sigterm_stops_the_workers_and_resume_finishes(repo: Path, sequential: dict[str, dict[str, str]],
                                                      tmp_path: Path) -> None:
    root = copy_repo(repo, tmp_path, "stopped")
    job_dir = root / "workspace" / JOB_NAME
    code, err = stop_when(["bench", "-f", JOB, "--jobs", "2"], root,
                          lambda: any(job_dir.glob("erfnet_joint/*/output/train/1")), sig=signal.SIGTERM)
    assert code == 143 and "stopped erfnet_joint" in err
    assert not any((job_dir / ".locks").glob("*.lock"))  # every worker ended and released its case
    assert not (job_dir / "rank" / "all_rank.csv").exists() or "erfnet_joint" not in rank_rows(root)
    done = _bench(root, "--jobs", "2", "--resume")
    assert done.returncode == 0, done.stderr
    assert rank_rows(root) == sequential


def test_a_failing_worker_is_reported_and_the_others_rank(repo: Path, tmp_path: Path) -> None:
    root = copy_repo(repo, tmp_path, "failing")
    bad = root / "testalgorithms" / "erfnet_finetune_cil-3_synthetic-city.yaml"
    data = yaml.safe_load(bad.read_text())
    # valid settings, but the encoder file is missing: the case fails when its round 0 builds the model
    data["algorithm"]["modules"][0]["hyperparameters"] += [{"model_kwargs": {"values": [{"encoder_weights": "missing.pth"}]}}]
    bad.write_text(yaml.safe_dump(data, sort_keys=False))
    job = yaml.safe_load((root / JOB).read_text())
    job["benchmarkingjob"]["test_object"]["algorithms"] = job["benchmarkingjob"]["test_object"]["algorithms"][:2]
    (root / JOB).write_text(yaml.safe_dump(job, sort_keys=False))
    done = _bench(root, "--jobs", "2")
    assert done.returncode == 1
    assert "FAILED erfnet_finetune" in done.stderr and "worker exit code" in done.stderr
    assert list(rank_rows(root)) == ["erfnet_klingner"]


def test_worker_threads_share_this_process_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel.torch, "get_num_threads", lambda: 8)
    assert [parallel.worker_threads(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_jobs_must_be_a_positive_number(value: str, tmp_path: Path) -> None:
    done = llseg(["bench", "-f", JOB, "--jobs", value], tmp_path)
    assert done.returncode == 2 and "--jobs: must be a whole number >= 1" in done.stderr
