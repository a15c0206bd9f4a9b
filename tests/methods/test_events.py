"""TensorBoard event files (hyperparameter ``tensorboard``): read back with tensorboard's
EventAccumulator, they hold every epoch's loss, terms and lr and every round's mIoU, equal to what
the learner returned."""
from __future__ import annotations

from pathlib import Path

import pytest

from llseg.errors import ConfigError
from llseg.methods import events
from llseg.methods.config import TrainConfig
from llseg.methods.learner import ContinualLearner

pytest.importorskip("tensorboard", reason="the tensorboard extra (in the test extra) is not installed")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

FAST = dict(epochs=2, batch_size=2, seed=3, jitter=0.0, device="cpu", precision="fp32", num_workers=0)


def test_events_hold_losses_lr_and_round_miou(make_rows, one_thread, tmp_path: Path) -> None:
    folder = tmp_path / "tb"
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="klingner", tensorboard=str(folder), **FAST)))
    summaries, tables = [], []
    for tag, bands, keep in (("a", [10, 0], {10, 0}), ("b", [2, 0], {2})):
        rows = make_rows(tag, 2, bands, keep)
        summaries.append(learner.learn(list(rows.x[:, 0]), list(rows.x[:, 1]), list(rows.y)))
        tables.append(learner.evaluate(list(rows.x[:, 0]), list(rows.x[:, 1])))

    acc = EventAccumulator(str(folder))
    acc.Reload()
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3, 4]  # epochs over both stages
    # each stage's last epoch is the stage's final loss (event files store float32)
    assert loss[1].value == pytest.approx(summaries[0]["final_loss"], rel=1e-6)
    assert loss[3].value == pytest.approx(summaries[1]["final_loss"], rel=1e-6)
    lr = acc.Scalars("train/lr")
    assert lr[0].value == pytest.approx(5e-4, rel=1e-6)  # poly starts at lr
    assert lr[1].value < lr[0].value  # and decays within the stage
    terms = {f"train/{k}" for s in summaries for k in s["loss_terms"]}  # the recipe's recorded terms (none for klingner)
    train_tags = {t for t in acc.Tags()["scalars"] if t.startswith("train/")}
    assert train_tags == {"train/loss", "train/lr", "train/images_per_s", *terms}
    assert all(e.value > 0 for e in acc.Scalars("train/images_per_s"))
    miou = acc.Scalars("eval/mIoU_all")
    assert [e.step for e in miou] == [1, 2]
    assert [e.value for e in miou] == pytest.approx([t["mIoU_all"] for t in tables], rel=1e-6)


def test_missing_tensorboard_package_is_a_config_error(monkeypatch) -> None:
    monkeypatch.setattr(events.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"tensorboard.*pip install 'llseg\[tensorboard\]'"):
        TrainConfig.from_hyperparameters(dict(tensorboard="runs/tb"))


def test_no_folder_writes_nothing(tmp_path: Path) -> None:
    log = events.EventLog(None)
    log.scalars({"train/loss": 1.0}, 1)
    assert log.writer is None
