"""``llseg bench`` survives SIGKILL (``--resume`` gives the uninterrupted leaderboard numbers, CPU fp32),
coordinates processes on one workspace (one lock per case, ``--case``, ``--rank-only``) and refuses
to resume on changed data."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import JOB, JOB_NAME, copy_repo, rank_rows, tiny_city_repo
from tests.interrupt import env, llseg, stop_when


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default job with two algorithms (klingner, finetune), 2 epochs, fp32, tiny data."""
    root = tmp_path_factory.mktemp("bench-resume")
    tiny_city_repo(root)
    job = yaml.safe_load((root / JOB).read_text())
    job["benchmarkingjob"]["test_object"]["algorithms"] = job["benchmarkingjob"]["test_object"]["algorithms"][:2]
    (root / JOB).write_text(yaml.safe_dump(job, sort_keys=False))
    for path in (root / "testalgorithms").glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        data["algorithm"]["modules"][0]["hyperparameters"] += [{"epochs": {"values": [2]}}, {"precision": {"values": ["fp32"]}}]
        data["algorithm"]["modules"][0]["hyperparameters"] = [h for h in data["algorithm"]["modules"][0]["hyperparameters"]
                                                             if "epochs" not in h or h["epochs"]["values"] == [2]]
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return root


def test_killed_bench_resumes_to_the_uninterrupted_numbers(repo: Path, tmp_path: Path) -> None:
    reference = copy_repo(repo, tmp_path, "straight")
    assert llseg(["bench", "-f", JOB], reference).returncode == 0

    root = copy_repo(repo, tmp_path, "killed")
    job_dir = root / "workspace" / JOB_NAME
    # SIGKILL while klingner trains round 2 (after an epoch checkpoint), then while finetune trains round 1
    stop_when(["bench", "-f", JOB], root, lambda: any(job_dir.glob("erfnet_klingner/*/output/train/2/resume.pt")))
    assert not (job_dir / "rank").exists()
    stop_when(["bench", "-f", JOB, "--resume"], root, lambda: any(job_dir.glob("erfnet_finetune/*/output/train/1/resume.pt")))
    assert list(rank_rows(root)) == ["erfnet_klingner"]  # written when that case finished, before the kill
    finished = llseg(["bench", "-f", JOB, "--resume"], root)
    assert finished.returncode == 0, finished.stderr
    assert rank_rows(root) == rank_rows(reference)
    assert [len(list(job_dir.glob(f"{alg}/*/case.json"))) for alg in ("erfnet_klingner", "erfnet_finetune")] == [1, 1]
    assert not list(job_dir.glob("*/*/output/train/*/resume.pt"))

    # killed after the last round of klingner, during its test prediction: every round is kept, the test reruns
    (job_dir / "rank").joinpath("all_rank.csv").unlink()
    (row_file,) = job_dir.glob("erfnet_klingner/*/rank_row.json")
    row_file.unlink()
    models = {p: p.stat().st_mtime_ns for p in job_dir.glob("erfnet_klingner/*/output/train/*/seen_task/*.model")}
    again = llseg(["bench", "-f", JOB, "--resume"], root)
    assert again.returncode == 0, again.stderr
    assert rank_rows(root) == rank_rows(reference)
    assert len(models) == 4 and all(p.stat().st_mtime_ns == t for p, t in models.items())  # no round retrained

    # the index changed: resuming would mix data, so it is refused before any work
    index = root / "data" / "synthetic-city-cil3" / "test_index.txt"
    index.write_text("".join(index.read_text().splitlines(keepends=True)[:-1]))
    refused = llseg(["bench", "-f", JOB, "--resume"], root)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "run on other data or settings (the index files, incremental_rounds, train_ratio or threshold" in refused.stderr


def test_one_writer_per_case_and_rank_only(repo: Path, tmp_path: Path) -> None:
    root = copy_repo(repo, tmp_path, "shared")
    job_dir = root / "workspace" / JOB_NAME
    lock = job_dir / ".locks"
    first = ["bench", "-f", JOB, "--case", "erfnet_klingner"]
    held = lambda: any(lock.glob("erfnet_klingner-*.lock")) and any(job_dir.glob("erfnet_klingner/*/output/train/1"))  # noqa: E731

    # a second process on the same case refuses and names the holder; another case runs beside it
    proc = subprocess.Popen([sys.executable, "-m", "llseg", *first], cwd=root, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while not held():
            assert proc.poll() is None
        proc.send_signal(signal.SIGSTOP)  # alive and holding its lock for as long as this test needs
        second = llseg(first, root)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert f"is being run by pid {proc.pid} on " in second.stderr
        other = llseg(["bench", "-f", JOB, "--case", "erfnet_finetune"], root)
        assert other.returncode == 0, other.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert list(rank_rows(root)) == ["erfnet_finetune"]
    # the killed holder's lock is stale: a resume takes it over and finishes the case
    assert any(lock.glob("erfnet_klingner-*.lock"))
    resumed = llseg([*first, "--resume"], root)
    assert resumed.returncode == 0, resumed.stderr
    assert "taking over the stale lock of test case erfnet_klingner-" in resumed.stderr
    assert not any(lock.glob("*.lock"))

    (job_dir / "rank" / "all_rank.csv").unlink()
    rank_only = llseg(["bench", "-f", JOB, "--rank-only"], root)
    assert rank_only.returncode == 0, rank_only.stderr
    assert sorted(rank_rows(root)) == ["erfnet_finetune", "erfnet_klingner"]
    assert (job_dir / "rank" / "report.html").is_file()
