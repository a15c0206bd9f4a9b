"""``llseg predict``: colourised masks and overlays of a checkpoint's predictions."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llseg.cli import main
from llseg.data.labels import CITYSCAPES
from llseg.methods.config import TrainConfig
from llseg.methods.learner import ContinualLearner
from llseg.methods.predict import colorize, overlay
from tests.conftest import Rows
from tests.helpers import CHECKPOINT_FAST, two_stage_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def test_colorize_and_overlay() -> None:
    lut = CITYSCAPES.palette_lut()
    label = np.array([[0, 13], [255, 10]], np.uint8)
    assert colorize(label, lut).tolist() == [[[128, 64, 128], [0, 0, 142]], [[0, 0, 0], [70, 130, 180]]]
    rgb = np.full((1, 2, 3), 100, np.uint8)
    mask = np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)
    assert overlay(rgb, mask, 0.25).tolist() == [[[75, 75, 75], [139, 139, 139]]]
    with pytest.raises(ValueError, match="alpha"):
        overlay(rgb, mask, 1.5)


def test_predict_writes_palette_masks_and_overlays(
    make_rows: Callable[..., Rows], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint, rows = two_stage_checkpoint(make_rows, tmp_path / "stage2.pt")
    images = tmp_path / "images"
    images.mkdir()
    for source in rows.x[:, 0]:
        shutil.copy(source, images)
    Image.open(rows.x[0, 0]).convert("RGB").save(images / "c.jpg", quality=95)
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(checkpoint), "--image", str(images), "--out", str(out), "--device", "cpu"]) == 0
    assert f"3 image(s): <stem>_mask.png and <stem>_overlay.png in {out}" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [f"{s}_{k}.png" for s in ("b0", "b1", "c") for k in ("mask", "overlay")]

    learner = ContinualLearner.from_checkpoint(checkpoint, device="cpu")
    assert learner.classes == [0, 10, 13]
    lut = CITYSCAPES.palette_lut()
    inputs = sorted(images.glob("*.png")) + [images / "c.jpg"]
    for path, prediction in zip(inputs, learner.predict([str(p) for p in inputs])):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        mask = np.asarray(Image.open(out / f"{path.stem}_mask.png"))
        assert mask.shape == rgb.shape == (32, 64, 3)
        assert (mask == lut[prediction.pred]).all()
        assert {tuple(c) for c in mask.reshape(-1, 3)} <= {CITYSCAPES.palette[c] for c in learner.classes}
        blend = np.round(0.5 * rgb.astype(np.float32) + 0.5 * mask.astype(np.float32)).astype(np.uint8)
        assert (np.asarray(Image.open(out / f"{path.stem}_overlay.png")) == blend).all()


def test_predict_errors_name_the_file(make_rows: Callable[..., Rows], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint, rows = two_stage_checkpoint(make_rows, tmp_path / "stage2.pt")
    image = str(rows.x[0, 0])
    assert main(["predict", "--checkpoint", str(tmp_path / "none.pt"), "--image", image, "--out", str(tmp_path)]) == 2
    assert f"checkpoint {tmp_path / 'none.pt'} does not exist" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(checkpoint), "--image", str(tmp_path / "none.png")]) == 2
    assert f"image {tmp_path / 'none.png'} does not exist" in capsys.readouterr().err
    (tmp_path / "bad.png").write_bytes(b"not a png")
    assert (
        main(["predict", "--checkpoint", str(checkpoint), "--image", str(tmp_path / "bad.png"), "--out", str(tmp_path / "o")])
        == 2
    )
    assert f"{tmp_path / 'bad.png'}: unreadable or truncated image" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", "--checkpoint", str(checkpoint), "--image", str(empty)]) == 2
    assert f"folder {empty} holds no image" in capsys.readouterr().err
    (empty / "x.png").write_bytes(b"")
    (empty / "x.jpg").write_bytes(b"")
    assert main(["predict", "--checkpoint", str(checkpoint), "--image", str(empty)]) == 2
    assert "would both write x_mask.png" in capsys.readouterr().err


def test_predict_honours_eval_crop(make_rows: Callable[..., Rows], tmp_path: Path) -> None:
    """A checkpoint with eval_crop 16, 32x64 images: only the centred 32x32 square (columns 16..47) is
    predicted, from the crop seen at 16x16; outside it the mask is black (255) and the overlay is the input."""
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="finetune", eval_crop=16, **CHECKPOINT_FAST)))
    rows = make_rows("a", 2, [10, 0, 13], keep={0, 10, 13})
    learner.learn(list(rows.x[:, 0]), list(rows.x[:, 1]), list(rows.y))
    learner.save(tmp_path / "stage1.pt")
    out = tmp_path / "out"
    image = Path(rows.x[0, 0])
    assert main(["predict", "--checkpoint", str(tmp_path / "stage1.pt"), "--image", str(image), "--out", str(out),
                 "--device", "cpu"]) == 0
    rgb = np.asarray(Image.open(image).convert("RGB"))
    mask = np.asarray(Image.open(out / f"{image.stem}_mask.png"))
    shown = np.asarray(Image.open(out / f"{image.stem}_overlay.png"))
    outside = np.ones((32, 64), bool)
    outside[:, 16:48] = False
    assert (mask[outside] == 0).all() and (shown[outside] == rgb[outside]).all()
    # inside: the evaluation's prediction (ContinualLearner.predict, the path every scorer uses)
    pred = next(ContinualLearner.from_checkpoint(tmp_path / "stage1.pt", device="cpu").predict([str(image)])).pred
    assert (pred[outside] == 255).all() and pred[~outside].max() < 255
    assert (mask[~outside] == CITYSCAPES.palette_lut()[pred[~outside]]).all()
    blend = np.round(0.5 * rgb.astype(np.float32) + 0.5 * mask.astype(np.float32)).astype(np.uint8)
    assert (shown[~outside] == blend[~outside]).all()
