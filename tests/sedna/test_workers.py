"""``llseg sedna train|eval|infer`` without a Sedna cluster: settings errors and the inference worker.

Every bad setting exits with code 2 and a message naming the variable or file, before anything is
written. The inference worker runs here without KubeEdge Sedna on an exported or checkpoint model
(``EDGE_MODEL_URL``); the whole job with Sedna is rehearsed in test_rehearsal.py.
"""
from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llseg.cli import main
from llseg.data.imageio import read_label_png
from llseg.errors import DataError
from llseg.export import export_checkpoint
from llseg.methods.learner import ContinualLearner
from llseg.sedna import workers
from tests.conftest import Rows
from tests.helpers import two_stage_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
SEDNA_VARIABLES = ("TRAIN_DATASET_URL", "TEST_DATASET_URL", "ORIGINAL_DATASET_URL", "OUTPUT_URL", "MODEL_URLS", "KB_SERVER",
                   "CLOUD_KB_INDEX", "HAS_COMPLETED_INITIAL_TRAINING", "HYPERPARAMETERS", "ESTIMATOR", "INFER_DATASET_URL",
                   "INFERENCE_RESULT_DIR", "UNSEEN_SAVE_URL", "EDGE_MODEL_URL", "UNSEEN_THRESHOLD", "CONFIDENCE_THRESHOLD",
                   "INFER_WATCH")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SEDNA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def run(role: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["sedna", role])
    return code, capsys.readouterr().err


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_index(path: Path, rows: Rows) -> Path:
    path.write_text("".join(f"{x[0]} {x[1]} {y}\n" for x, y in zip(rows.x, rows.y)))
    return path


def test_train_settings_errors(make_rows: Callable[..., Rows], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, err = run("train", capsys)
    assert code == 2 and "environment variable TRAIN_DATASET_URL is not set" in err
    monkeypatch.setenv("TRAIN_DATASET_URL", str(tmp_path / "missing.txt"))
    code, err = run("train", capsys)
    assert code == 2 and f"TRAIN_DATASET_URL={tmp_path / 'missing.txt'} is not an existing file" in err
    index = write_index(tmp_path / "train.txt", make_rows("a", 2, [0, 10], keep={0, 10}))
    monkeypatch.setenv("TRAIN_DATASET_URL", str(index))
    code, err = run("train", capsys)
    assert code == 2 and "OUTPUT_URL is not set" in err
    monkeypatch.setenv("OUTPUT_URL", str(out))
    bad = (("{epochs: [", "HYPERPARAMETERS is not valid JSON/YAML"), ("[1, 2]", "HYPERPARAMETERS must be a mapping"))
    for text, expected in bad:
        monkeypatch.setenv("HYPERPARAMETERS", text)
        code, err = run("train", capsys)
        assert code == 2 and expected in err
    monkeypatch.setenv("HYPERPARAMETERS", '{"epochs": 1}')
    monkeypatch.setenv("ESTIMATOR", "llseg_unet")
    code, err = run("train", capsys)
    assert code == 2 and "ESTIMATOR='llseg_unet' is unknown" in err
    monkeypatch.setenv("ESTIMATOR", "llseg_erfnet")
    monkeypatch.setenv("HAS_COMPLETED_INITIAL_TRAINING", "maybe")
    code, err = run("train", capsys)
    assert code == 2 and "HAS_COMPLETED_INITIAL_TRAINING='maybe' must be true or false" in err
    monkeypatch.setenv("HAS_COMPLETED_INITIAL_TRAINING", "true")
    code, err = run("train", capsys)
    assert code == 2 and "CLOUD_KB_INDEX is not set" in err
    monkeypatch.setenv("CLOUD_KB_INDEX", str(tmp_path / "kb" / "index.pkl"))
    code, err = run("train", capsys)
    assert code == 2 and f"CLOUD_KB_INDEX={tmp_path / 'kb' / 'index.pkl'} is not an existing file" in err
    monkeypatch.setenv("HAS_COMPLETED_INITIAL_TRAINING", "false")
    monkeypatch.setenv("KB_SERVER", f"http://127.0.0.1:{closed_port()}")
    code, err = run("train", capsys)
    assert code == 2 and "knowledge base KB_SERVER=http://127.0.0.1:" in err and "is unreachable" in err
    assert not out.exists()  # nothing written by any failed start


def test_dataset_index_errors(make_rows: Callable[..., Rows], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    rows = make_rows("a", 1, [0, 10], keep={0, 10})
    monkeypatch.setenv("OUTPUT_URL", str(tmp_path / "out"))
    index = tmp_path / "test.txt"
    monkeypatch.setenv("TEST_DATASET_URL", str(index))
    index.write_text("\n\n")
    code, err = run("eval", capsys)
    assert code == 2 and f"{index} (TEST_DATASET_URL) holds no sample" in err
    index.write_text(f"{rows.x[0][0]} {rows.y[0]}\n")
    code, err = run("eval", capsys)
    assert code == 2 and f"{index}:1: expected '<image> <full_label> <train_label>'" in err
    # relative tokens resolve against ORIGINAL_DATASET_URL's folder, as Sedna copies the index elsewhere
    scenes = Path(rows.x[0][0]).parent
    monkeypatch.setenv("ORIGINAL_DATASET_URL", str(scenes / "index.txt"))
    index.write_text("a0.png a0_full.png a0_train.png\nb9.png a0_full.png a0_train.png\n")
    code, err = run("eval", capsys)
    assert code == 2 and f"{index}:2: {scenes / 'b9.png'} does not exist" in err
    index.write_text("a0.png a0_full.png a0_train.png\n")
    code, err = run("eval", capsys)
    assert code == 2 and "MODEL_URLS is not set" in err
    monkeypatch.setenv("MODEL_URLS", str(tmp_path / "deploy" / "index.pkl"))
    code, err = run("eval", capsys)
    assert code == 2 and f"MODEL_URLS={tmp_path / 'deploy' / 'index.pkl'} is not an existing file" in err
    assert not (tmp_path / "out").exists()


def test_infer_worker_writes_masks_records_and_unseen_copies(
    make_rows: Callable[..., Rows], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint, rows = two_stage_checkpoint(make_rows, tmp_path / "stage2.pt")
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    monkeypatch.setenv("INFER_DATASET_URL", str(incoming))
    code, err = run("infer", capsys)
    assert code == 2 and "MODEL_URLS is not set" in err and "EDGE_MODEL_URL" in err
    monkeypatch.setenv("EDGE_MODEL_URL", str(tmp_path / "model.onnx"))
    monkeypatch.setenv("INFERENCE_RESULT_DIR", str(tmp_path / "results"))
    code, err = run("infer", capsys)
    assert code == 2 and f"EDGE_MODEL_URL={tmp_path / 'model.onnx'} is not an existing file" in err
    monkeypatch.setenv("EDGE_MODEL_URL", str(checkpoint))
    code, err = run("infer", capsys)
    assert code == 2 and f"INFER_DATASET_URL={incoming} holds no image" in err
    monkeypatch.setenv("UNSEEN_THRESHOLD", "1.5")
    code, err = run("infer", capsys)
    assert code == 2 and "UNSEEN_THRESHOLD=1.5 lies outside [0.0, 1.0]" in err

    images = [Path(p) for p in rows.x[:, 0]]
    for image in images:
        (incoming / image.name).write_bytes(image.read_bytes())
    (incoming / "notes.txt").write_text("not an image, ignored with a warning")
    (incoming / "broken.png").write_text("not a PNG")
    # every pixel's confidence is below 1.0, so with threshold 0 every image is unseen
    monkeypatch.setenv("UNSEEN_THRESHOLD", "0")
    monkeypatch.setenv("CONFIDENCE_THRESHOLD", "1.0")
    monkeypatch.setenv("UNSEEN_SAVE_URL", str(tmp_path / "unseen"))
    code, err = run("infer", capsys)
    assert code == 2 and f"{incoming / 'broken.png'}: unreadable or truncated image" in err
    learner = ContinualLearner.from_checkpoint(checkpoint, device="cpu")
    for image, expected in zip(images, learner.predict([str(p) for p in images])):
        record = json.loads((tmp_path / "results" / f"{image.stem}.json").read_text())
        assert record["unseen"] and record["uncertain_fraction"] == 1.0 and record["model"] == str(checkpoint)
        assert record["classes"] == [0, 10, 13] and 0 < record["mean_confidence"] < 1
        assert np.array_equal(read_label_png(Path(record["mask"])), expected.pred)
        assert (tmp_path / "unseen" / image.name).read_bytes() == image.read_bytes()
    assert not (tmp_path / "results" / "broken.json").exists()

    # the ONNX model in watch mode: only new images are predicted, and nothing is unseen at threshold 1
    pytest.importorskip("onnxruntime", reason="optional extra llseg[onnx]")
    onnx = export_checkpoint(checkpoint, tmp_path / "model.onnx", "onnx", (32, 64))
    monkeypatch.setenv("EDGE_MODEL_URL", str(onnx))
    monkeypatch.setenv("UNSEEN_THRESHOLD", "1")
    monkeypatch.setenv("INFER_WATCH", "true")
    monkeypatch.setenv("INFER_POLL_SECONDS", "0.05")
    def arrive() -> None:  # a frame arriving while the worker polls (written, then renamed into place)
        Image.open(images[0]).save(incoming / "late.tmp", format="PNG")
        (incoming / "late.tmp").rename(incoming / "late.png")

    timer = threading.Timer(0.3, arrive)
    timer.start()
    with pytest.raises(DataError, match=r"1 file\(s\) could not be predicted: .*broken.png"):  # reported once, not per poll
        workers.infer(max_polls=40)
    timer.join()
    record = json.loads((tmp_path / "results" / "late.json").read_text())
    assert record["model"] == str(onnx) and not record["unseen"] and record["unseen_copy"] is None
    first = json.loads((tmp_path / "results" / f"{images[0].stem}.json").read_text())
    assert np.array_equal(read_label_png(Path(record["mask"])), read_label_png(Path(first["mask"])))
