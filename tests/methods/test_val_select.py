"""``val_every``: the stage keeps the weights of its best epoch on the validation index."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llseg.data.prepare import prepare
from llseg.data.voc.synthetic import generate_objects_dataset
from llseg.errors import ConfigError
from llseg.methods import engine as engine_module
from llseg.methods import stages
from llseg.methods.checkpoint import load_weights_file
from llseg.methods.config import TrainConfig
from llseg.methods.learner import ContinualLearner


def test_a_ruined_last_epoch_is_not_kept(make_rows, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Epoch 3 of 3 trains at 10⁴ × the learning rate (a scripted schedule): its validation mIoU is
    below the best epoch's, the stage ends with the best epoch's weights (not the last ones), the
    saved checkpoint holds exactly them, and the resumable checkpoint records the choice."""
    rows = make_rows("a", 4, [0, 5, 10], keep={0, 5, 10})
    val = make_rows("v", 2, [0, 5, 10], keep={0, 5, 10})
    index = tmp_path / "val_index.txt"
    index.write_text("".join(f"{i} {lab} {lab}\n" for i, lab in val.x))

    def scripted(optimizer, policy, total, **kwargs):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0 if it < total * 2 // 3 else 1e4)

    monkeypatch.setattr(engine_module, "make_schedule", scripted)
    scores: list[float] = []
    weights: list[dict[str, torch.Tensor]] = []
    evaluate = ContinualLearner.evaluate

    def spy(self, images, labels):
        table = evaluate(self, images, labels)
        scores.append(table["mIoU_all"])
        weights.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        return table

    monkeypatch.setattr(ContinualLearner, "evaluate", spy)
    config = TrainConfig.from_hyperparameters(dict(recipe="finetune", epochs=3, batch_size=2, seed=3, jitter=0.0,
                                                   lr=5e-3, val_every=1, val_index=str(index)))
    learner = ContinualLearner(config)
    summary = learner.learn(list(rows.x[:, 0]), list(rows.x[:, 1]), list(rows.y), checkpoints=tmp_path / "r.pt")
    assert len(scores) == 3
    best = max(range(3), key=lambda e: (scores[e], -e))  # the earliest of the best
    assert scores[2] < scores[best] and best < 2
    assert summary["chosen_epoch"] == best + 1 and summary["val_mIoU"] == pytest.approx(scores[best])
    final = learner.model.state_dict()
    assert all(torch.equal(final[k], weights[best][k]) for k in final)
    assert any(not torch.equal(final[k], weights[2][k]) for k in final)
    learner.save(tmp_path / "stage1.pt")
    saved = ContinualLearner.from_checkpoint(tmp_path / "stage1.pt").model.state_dict()
    assert all(torch.equal(saved[k], weights[best][k]) for k in saved)
    resumable = load_weights_file(tmp_path / "r.pt")
    assert resumable["best"]["epoch"] == best + 1
    assert all(torch.equal(resumable["best"]["weights"][k], weights[best][k]) for k in final)


def test_val_every_needs_an_index(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="val_every needs val_index"):
        TrainConfig.from_hyperparameters(dict(recipe="finetune", val_every=1))
    with pytest.raises(ConfigError, match="val_every must be >= 0"):
        TrainConfig.from_hyperparameters(dict(recipe="finetune", val_every=-1, val_index="x"))


def test_llseg_train_validates_on_the_prepared_val_index(tmp_path: Path) -> None:
    generate_objects_dataset(tmp_path / "objects", seed=0, size=(32, 32), images=80)
    prepare("voc", root=tmp_path / "objects", split="voc-15-5", out=tmp_path / "prep", seed=0)
    config = stages.train_config(tmp_path / "prep", {"recipe": "finetune", "val_every": 2})
    assert config.val_index == str(tmp_path / "prep" / "val_index.txt")
    assert stages.train_config(tmp_path / "prep", {"recipe": "finetune"}).val_index is None
    (tmp_path / "prep" / "val_index.txt").unlink()
    with pytest.raises(ConfigError, match="has no val_index.txt"):
        stages.train_config(tmp_path / "prep", {"recipe": "finetune", "val_every": 2})
