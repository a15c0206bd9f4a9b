"""Rehearsal of a Sedna LifelongLearningJob on this machine, as Sedna's local controller runs it.

Each worker is a separate process (``python -m llseg.sedna <role>``) started with only the
environment Sedna sets for it (docs/sedna.md), on synthetic CIL-3 data: train round 1 on task 1,
eval and infer with the model train wrote, a simulated annotator labels the unseen samples the edge
saved with their task-2 labels, and train round 2 updates the knowledge base with them. No KB or
local-controller server runs (``KB_SERVER``/``LC_SERVER`` unset: llseg.ianvs.sedna_compat answers
those calls locally); with ``KB_SERVER`` pointing nowhere the worker stops before training.
``test_with_sedna_kb_server`` runs train, eval and the update round against Sedna's own
knowledge-base server on 127.0.0.1 (skipped when that server cannot start: it needs Sedna's server
dependencies, SQLAlchemy < 2, FastAPI 0.68 and aiofiles).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ianvs.sedna_env import REPO, needs_sedna

pytestmark = [pytest.mark.sedna, needs_sedna]
HPS = json.dumps({"epochs": 1, "batch_size": 4, "device": "cpu", "precision": "fp32", "input_size": [64, 128]})


def worker(role: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LLSEG_CACHE_DIR") if k in os.environ}
    base.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", NAMESPACE="default", JOB_NAME="cil3", WORKER_NAME=f"{role}-worker")
    return subprocess.run([sys.executable, "-m", "llseg.sedna", role], env={**base, **env}, capture_output=True, text=True,
                          timeout=900, cwd=str(REPO))


def llseg(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "llseg", *args], check=True, capture_output=True, env=env)


def test_train_eval_infer_and_second_round(tmp_path: Path) -> None:
    data = tmp_path / "data"
    llseg("synth", "--out", str(data / "city"), "--size", "64x128", "--images-per-city", "3")
    llseg("prepare", "--dataset", "cityscapes", "--root", str(data / "city"), "--split", "cil-3", "--out", str(data / "cil3"))
    index = data / "cil3" / "train_index.txt"
    lines = index.read_text().splitlines()
    (data / "cil3" / "round1.txt").write_text("".join(f"{line}\n" for line in lines if "labels/task1/" in line))
    out = tmp_path / "job"

    # a knowledge base that does not answer: the train worker stops before training, nothing written
    port = free_port()
    train_env = {"TRAIN_DATASET_URL": str(data / "cil3" / "round1.txt"), "ORIGINAL_DATASET_URL": str(index),
                 "OUTPUT_URL": str(out / "train" / "1"), "HAS_COMPLETED_INITIAL_TRAINING": "false", "HYPERPARAMETERS": HPS}
    done = worker("train", {**train_env, "KB_SERVER": f"http://127.0.0.1:{port}"})
    assert done.returncode == 2 and f"KB_SERVER=http://127.0.0.1:{port} is unreachable" in done.stderr
    assert not out.exists()

    done = worker("train", train_env)
    assert done.returncode == 0, done.stderr[-3000:]
    first = json.loads((out / "train" / "1" / "train_result.json").read_text())
    assert first["model"] == str(out / "train" / "1" / "seen_task" / "global.model") and first["samples"] == 12
    assert not first["update"] and (out / "train" / "1" / "index.pkl").is_file()

    test_index = str(data / "cil3" / "test_index.txt")
    done = worker("eval", {"TEST_DATASET_URL": test_index, "ORIGINAL_DATASET_URL": test_index,
                           "MODEL_URLS": str(out / "train" / "1" / "index.pkl"), "OUTPUT_URL": str(out / "eval" / "1")})
    assert done.returncode == 0, done.stderr[-3000:]
    evaluation = json.loads((out / "eval" / "1" / "eval_result.json").read_text())
    assert evaluation["model"] == first["model"] and evaluation["samples"] == 9
    assert 0.0 <= evaluation["scores"]["accuracy"] <= 1.0 and evaluation["scores"]["mIoU_new"] is None  # one step: no new classes

    # the edge: task-2 images arrive; the deployed index is the one eval wrote (Sedna copies it to deploy/index.pkl)
    edge = tmp_path / "edge"
    incoming = edge / "incoming"
    incoming.mkdir(parents=True)
    task2 = [line.split() for line in lines if "labels/task2/" in line][:4]
    for image, _, _ in task2:
        (incoming / Path(image).name).write_bytes((index.parent / image).read_bytes())
    infer_env = {"MODEL_URLS": str(out / "eval" / "1" / "index.pkl"), "INFER_DATASET_URL": str(incoming),
                 "INFERENCE_RESULT_DIR": str(edge / "results"), "UNSEEN_SAVE_URL": str(edge / "unseen"),
                 "UNSEEN_THRESHOLD": "0.05"}
    done = worker("infer", infer_env)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted((edge / "results").glob("*.json"))]
    assert len(records) == 4 and all(r["model"] == first["model"] for r in records)
    assert all((tmp_path / "edge" / "results" / f"{Path(r['image']).stem}_mask.png").is_file() for r in records)
    unseen = sorted(p.name for p in (edge / "unseen").iterdir())
    assert unseen == sorted(Path(r["image"]).name for r in records if r["unseen"]) and unseen

    # the annotator labels the unseen samples (task-2 labels); the next round updates the knowledge base
    labelled = [" ".join(t) for t in task2 if Path(t[0]).name in unseen]
    (data / "cil3" / "round2.txt").write_text("".join(f"{line}\n" for line in labelled))
    done = worker("train", {**train_env, "TRAIN_DATASET_URL": str(data / "cil3" / "round2.txt"),
                            "OUTPUT_URL": str(out / "train" / "2"), "HAS_COMPLETED_INITIAL_TRAINING": "true",
                            "CLOUD_KB_INDEX": str(out / "train" / "1" / "index.pkl")})
    assert done.returncode == 0, done.stderr[-3000:]
    second = json.loads((out / "train" / "2" / "train_result.json").read_text())
    assert second["update"] and second["samples"] == len(unseen)
    assert second["previous_index"] == str(out / "train" / "1" / "index.pkl")
    assert "stage 2 (klingner): learned ['building'" in done.stderr  # task 2's first class, on top of the round-1 model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def kb_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Sedna's knowledge-base server (``python -m sedna.service.run_kb``) on a free local port."""
    url, store, log = f"http://127.0.0.1:{free_port()}", tmp_path / "kb-store", tmp_path / "kb.log"
    (tmp_path / "kb").mkdir()
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "sedna.service.run_kb"], cwd=tmp_path / "kb", stdout=out, stderr=out,
                                  env={**os.environ, "KnowledgeBaseServer": url, "KnowledgeBasePath": str(store)})
    try:
        for _ in range(120):
            if server.poll() is not None:
                pytest.skip(f"Sedna's KB server does not start here: {log.read_text()[-400:]}")
            try:
                urllib.request.urlopen(url, timeout=1).close()
            except urllib.error.HTTPError:
                break  # it answers (404 on /)
            except OSError:
                time.sleep(0.5)
                continue
            break
        else:
            pytest.skip("Sedna's KB server did not answer within 60 s")
        yield url, store
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_with_sedna_kb_server(tmp_path: Path, kb_server: tuple[str, Path]) -> None:
    url, store = kb_server
    data = tmp_path / "data"
    llseg("synth", "--out", str(data / "city"), "--size", "64x128", "--images-per-city", "3")
    llseg("prepare", "--dataset", "cityscapes", "--root", str(data / "city"), "--split", "cil-3", "--out", str(data / "cil3"))
    index = data / "cil3" / "train_index.txt"
    lines = index.read_text().splitlines()
    for n, task in ((1, "task1"), (2, "task2")):
        (data / "cil3" / f"round{n}.txt").write_text("".join(f"{line}\n" for line in lines if f"labels/{task}/" in line))
    out = tmp_path / "job"
    env = {"ORIGINAL_DATASET_URL": str(index), "HYPERPARAMETERS": HPS, "KB_SERVER": url}
    first_round = {"TRAIN_DATASET_URL": str(data / "cil3" / "round1.txt"), "OUTPUT_URL": str(out / "train" / "1")}
    done = worker("train", {**env, **first_round})
    assert done.returncode == 0, done.stderr[-3000:]
    first = json.loads((out / "train" / "1" / "train_result.json").read_text())
    # the knowledge base holds the model; the worker reads it back over HTTP
    assert (store / "global.model").is_file() and (store / "index.pkl").is_file()
    assert first["model"] == str(out / "train" / "1" / "kb_models" / "global.model")
    test_index = str(data / "cil3" / "test_index.txt")
    done = worker("eval", {**env, "TEST_DATASET_URL": test_index, "ORIGINAL_DATASET_URL": test_index,
                           "MODEL_URLS": str(out / "train" / "1" / "index.pkl"), "OUTPUT_URL": str(out / "eval" / "1")})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "eval" / "1" / "eval_result.json").read_text())["scores"]["accuracy"] >= 0.0
    done = worker("train", {**env, "TRAIN_DATASET_URL": str(data / "cil3" / "round2.txt"), "OUTPUT_URL": str(out / "train" / "2"),
                            "HAS_COMPLETED_INITIAL_TRAINING": "true", "CLOUD_KB_INDEX": str(out / "train" / "1" / "index.pkl")})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "train" / "2" / "train_result.json").read_text())["update"]
    assert "stage 2 (klingner): learned ['building'" in done.stderr
