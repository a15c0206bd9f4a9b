"""``llseg pretrain``: a synthetic-data backbone that loads into DeepLabV3, cached by its settings."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llseg.cli import main
from llseg.errors import ConfigError
from llseg.methods.pretrain import PretrainSettings, cached, pretrain_backbone, record_path
from llseg.models import DeepLabV3, create_model

TINY = dict(kind="objects", size=(32, 32), images=8, epochs=1)


def _backbone(path: Path | None) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    kwargs = {} if path is None else {"backbone_weights": str(path)}
    model = create_model("deeplabv3_mobilenet_v3_large", num_classes=3, **kwargs)
    assert isinstance(model, DeepLabV3)
    return model.backbone_checkpoint()


def test_pretrain_writes_a_backbone_that_loads_and_is_reused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pretrained" / "objects.pth"
    argv = ["pretrain", "--kind", "objects", "--out", str(out), "--size", "32x32", "--images", "8", "--epochs", "1",
            "--work", str(tmp_path / "work")]
    assert main(argv) == 0
    assert "trained in" in capsys.readouterr().out
    record = json.loads(record_path(out).read_text())
    settings = PretrainSettings(**TINY)  # type: ignore[arg-type]
    assert record["key"] == settings.key() and record["train_images"] > 0
    assert 0.0 <= record["scores"]["mIoU_all"] <= 1.0

    saved = torch.load(out, weights_only=True)
    loaded, fresh = _backbone(out), _backbone(None)
    trained = [k for k in saved if "features" in k and saved[k].is_floating_point()]
    assert trained and all(torch.equal(loaded[k], saved[k]) for k in trained)  # the file's weights are in the model
    assert any(not torch.equal(fresh[k], saved[k]) for k in trained)  # ... and they differ from a fresh init

    # Second call, same settings: nothing trained, the file untouched.
    stamp = out.stat().st_mtime_ns
    assert main(argv) == 0
    assert "reused" in capsys.readouterr().out and out.stat().st_mtime_ns == stamp
    assert pretrain_backbone(settings, out, work=tmp_path / "work").reused
    # Other settings or another file content: no cache hit.
    assert cached(PretrainSettings(**{**TINY, "epochs": 2}), out) is None  # type: ignore[arg-type]
    out.write_bytes(out.read_bytes() + b"\0")
    assert cached(settings, out) is None


def test_pretrain_refuses_options_of_the_other_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrain", "--kind", "aerial", "--out", str(tmp_path / "a.pth"), "--images", "8"]) == 2
    assert "--images and --class-tint apply to --kind objects only" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="square patches"):
        PretrainSettings(kind="aerial", size=(64, 96))
    assert not (tmp_path / "a.pth").exists()
