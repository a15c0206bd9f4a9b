"""``llseg export``: ONNX / TorchScript models give PyTorch's masks (ONNX Runtime parity)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from llseg.cli import main
from llseg.errors import ConfigError
from llseg.export import TorchModel, export_checkpoint, load_edge_model, predict_image
from llseg.methods.config import TrainConfig
from llseg.methods.learner import ContinualLearner
from tests.conftest import Rows
from tests.helpers import CHECKPOINT_FAST, two_stage_checkpoint

SIZE = (32, 64)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_onnx_and_torchscript_masks_equal_pytorch(make_rows: Callable[..., Rows], tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="optional extra llseg[onnx] (the test command installs it)")
    checkpoint, rows = two_stage_checkpoint(make_rows, tmp_path / "stage2.pt")
    learner = ContinualLearner.from_checkpoint(checkpoint, device="cpu")
    images = [Path(p) for p in rows.x[:, 0]]
    reference = [p.pred for p in learner.predict([str(p) for p in images])]
    torch_model = TorchModel(learner, SIZE)
    for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".ts")):
        out = export_checkpoint(checkpoint, tmp_path / f"model{suffix}", fmt, SIZE)
        edge = load_edge_model(out)
        assert edge.info.classes == [0, 10, 13] and edge.info.group_sizes == [2, 1] and edge.info.input_size == SIZE
        for image, expected in zip(images, reference):
            mask, scores = predict_image(edge, image)
            _, torch_scores = predict_image(torch_model, image)
            # documented tolerance: scores within 1e-4 absolute, masks identical on these images
            np.testing.assert_allclose(scores, torch_scores, atol=1e-4, rtol=0)
            assert mask.dtype == np.uint8 and mask.shape == expected.shape
            assert np.array_equal(mask, expected), f"{fmt}: {np.mean(mask != expected):.4%} pixels differ"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["model.onnx", "model.ts", "stage2.pt"]


def test_cli_export_and_errors(make_rows: Callable[..., Rows], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint, _ = two_stage_checkpoint(make_rows, tmp_path / "stage2.pt")
    out = tmp_path / "edge" / "model.ts"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "torchscript", "--size", "32x64", "--out", str(out)]) == 0
    assert out.is_file() and str(out) in capsys.readouterr().out
    # no input_size in the checkpoint and no --size: a clear error, no file
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "torchscript", "--out", str(tmp_path / "x.ts")]) == 2
    assert "--size HxW" in capsys.readouterr().err and not (tmp_path / "x.ts").exists()
    with pytest.raises(ConfigError, match="does not exist"):
        load_edge_model(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    pytest.importorskip("onnxruntime")
    with pytest.raises(ConfigError, match="bad.onnx: not a readable ONNX model"):
        load_edge_model(tmp_path / "bad.onnx")


def test_export_records_eval_crop_and_predicts_its_square(make_rows: Callable[..., Rows], tmp_path: Path) -> None:
    """eval_crop 16 on 32x64 images: the export takes 16x16 inputs, records eval_crop, and its mask is the
    checkpoint's evaluation prediction (255 outside the centred 32x32 square); another --size is refused."""
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="finetune", eval_crop=16, **CHECKPOINT_FAST)))
    rows = make_rows("a", 2, [10, 0, 13], keep={0, 10, 13})
    learner.learn(list(rows.x[:, 0]), list(rows.x[:, 1]), list(rows.y))
    learner.save(tmp_path / "stage1.pt")
    with pytest.raises(ConfigError, match="evaluates with eval_crop 16 .* export it with --size 16x16 or without --size"):
        export_checkpoint(tmp_path / "stage1.pt", tmp_path / "x.ts", "torchscript", SIZE)
    edge = load_edge_model(export_checkpoint(tmp_path / "stage1.pt", tmp_path / "model.ts", "torchscript"))
    assert edge.info.eval_crop == 16 and edge.info.input_size == (16, 16)
    image = Path(rows.x[0, 0])
    mask, scores = predict_image(edge, image)
    expected = next(learner.predict([str(image)])).pred
    assert scores.shape[2:] == (16, 16) and (mask[:, :16] == 255).all() and (mask[:, 48:] == 255).all()
    assert np.array_equal(mask, expected)
