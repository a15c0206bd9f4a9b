"""``llseg export-backbone``: a trained checkpoint becomes the pretrained part of another model."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from llseg.cli import main
from llseg.methods.config import TrainConfig
from llseg.methods.learner import ContinualLearner
from llseg.models import create_model
from tests.conftest import Rows
from tests.helpers import CHECKPOINT_FAST as FAST

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("model", "option", "part"), [("erfnet", "encoder_weights", "encoder"),
                                                       ("deeplabv3_mobilenet_v3_large", "backbone_weights", "backbone")])
def test_export_backbone_feeds_the_pretrained_option(model: str, option: str, part: str, make_rows: Callable[..., Rows],
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="finetune", model=model, **FAST)))
    rows = make_rows("a", 2, [10, 0, 13], keep={0, 10, 13})
    learner.learn(list(rows.x[:, 0]), list(rows.x[:, 1]), list(rows.y))
    learner.save(tmp_path / "stage1.pt")
    out = tmp_path / "pretrained" / "part.pth"
    assert main(["export-backbone", "--checkpoint", str(tmp_path / "stage1.pt"), "--out", str(out)]) == 0
    assert f"{option}: {out}" in capsys.readouterr().out
    trained = getattr(learner.model, part).state_dict()
    reborn = getattr(create_model(model, num_classes=7, **{option: out}), part).state_dict()
    assert reborn.keys() == trained.keys()
    assert all(torch.equal(v, trained[k].cpu()) for k, v in reborn.items())
    # a model started from that file reloads from its own checkpoint once the file is gone
    second = ContinualLearner(
        TrainConfig.from_hyperparameters(dict(recipe="finetune", model=model, model_kwargs={option: str(out)}, **FAST))
    )
    second.learn(list(rows.x[:, 0]), list(rows.x[:, 1]), list(rows.y))
    second.save(tmp_path / "second.pt")
    out.unlink()
    restored = ContinualLearner.from_checkpoint(tmp_path / "second.pt", device="cpu").model.state_dict()
    assert all(torch.equal(v, second.model.state_dict()[k].cpu()) for k, v in restored.items())


def test_export_backbone_names_a_bad_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "notes.pt"
    bad.write_text("not a checkpoint")
    assert main(["export-backbone", "--checkpoint", str(bad), "--out", str(tmp_path / "b.pth")]) == 2
    assert "notes.pt" in capsys.readouterr().err
    assert not (tmp_path / "b.pth").exists()
