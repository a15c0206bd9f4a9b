"""``val_every``: the stage keeps the weights of its best epoch on the validation index."""
from __future__ import annotations

from pathlib import Path

import numpy as np
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
from llseg.metrics.confusion import mean_iou


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


class _Scored:
    """A scorer stand-in with a given ``learned`` confusion matrix (rows: label, columns: prediction)."""

    def __init__(self, learned: np.ndarray, classes: list[int]) -> None:
        self.learned, self.unscored, self.classes = learned, (), classes

    def table(self) -> dict[str, float]:
        return {"mIoU_all": mean_iou(self.learned, classes=self.classes)}


def _confusion(num_classes: int, right: dict[int, float]) -> np.ndarray:
    """100 labelled pixels per class in ``right``, the given share predicted right, the rest as class 0."""
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    for c, share in right.items():
        conf[c, c] = round(100 * share)
        conf[c, 0] += 100 - round(100 * share)
    return conf


@pytest.mark.parametrize("metric, chosen", [("all", 2), ("current", 1)])
def test_val_metric_current_keeps_the_best_epoch_on_the_current_step(make_rows, one_thread, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch, metric, chosen):
    """Step 2 learns class 10 after step 1's 0 and 5. Scripted validation: epoch 1 scores the new
    class best (IoU 0.9 vs 0.8), epoch 2 all classes together (0.88 vs 0.72); ``all`` keeps epoch 2, SSUL's
    ``current`` (the newest class group only) keeps epoch 1."""
    first = make_rows("a", 2, [0, 5], keep={0, 5})
    second = make_rows("b", 2, [0, 10], keep={0, 10})
    index = tmp_path / "val_index.txt"
    index.write_text("".join(f"{i} {lab} {lab}\n" for i, lab in first.x))
    epochs = [_confusion(21, {0: 0.6, 5: 0.6, 10: 0.9}), _confusion(21, {0: 1.0, 5: 1.0, 10: 0.8})]
    calls: list[int] = []

    def scripted(self, images, labels):
        calls.append(1)
        learned = epochs[(len(calls) - 1) % 2] if len(self.groups) == 2 else _confusion(21, {0: 1.0, 5: 1.0})
        return _Scored(learned, self.classes)

    monkeypatch.setattr(ContinualLearner, "_scorer", scripted)
    config = TrainConfig.from_hyperparameters(dict(recipe="finetune", epochs=2, batch_size=2, seed=3, jitter=0.0,
                                                   val_every=1, val_index=str(index), val_metric=metric))
    learner = ContinualLearner(config)
    learner.learn(list(first.x[:, 0]), list(first.x[:, 1]), list(first.y))
    calls.clear()
    summary = learner.learn(list(second.x[:, 0]), list(second.x[:, 1]), list(second.y))
    assert learner.groups[-1] == [10] and len(calls) == 2
    current = [mean_iou(conf, classes=[10]) for conf in epochs]
    overall = [mean_iou(conf, classes=[0, 5, 10]) for conf in epochs]
    assert overall[1] > overall[0] and current[0] > current[1]
    assert summary["chosen_epoch"] == chosen
    assert summary["val_mIoU"] == pytest.approx((overall if metric == "all" else current)[chosen - 1])


def test_val_metric_is_checked() -> None:
    with pytest.raises(ConfigError, match="val_metric must be one of all, current"):
        TrainConfig.from_hyperparameters(dict(recipe="finetune", val_metric="old"))
