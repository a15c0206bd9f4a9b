"""Resumable training checkpoints: a stage interrupted after an epoch and resumed from its file ends
with exactly the weights and summary of an uninterrupted stage (CPU, fp32)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from llseg.errors import ConfigError
from llseg.methods import engine as engine_module
from llseg.methods.checkpoint import load_weights_file
from llseg.methods.config import TrainConfig
from llseg.methods.learner import ContinualLearner
from llseg.methods.recipe import Recipe
from tests.conftest import Rows
from tests.methods.recipes.published import SSUL_VOC_FLAGS
from tests.methods.recipes.test_learner_ssul import FAST as SSUL_FAST
from tests.methods.recipes.test_learner_ssul import voc_rows

pytestmark = pytest.mark.usefixtures("one_thread")

ERFNET = {"epochs": 3, "batch_size": 2, "seed": 3, "device": "cpu", "precision": "fp32"}


class Stop(Exception):
    """Stands for a kill: raised at the start of an epoch."""


def _args(rows: Rows) -> tuple[list[str], list[str], list[str]]:
    return list(rows.x[:, 0]), list(rows.x[:, 1]), list(rows.y)


def _state(learner: ContinualLearner) -> dict[str, torch.Tensor]:
    assert learner.model is not None
    return {k: v.detach().clone() for k, v in learner.model.state_dict().items()}


def _stop_at(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    original = Recipe.begin_epoch

    def begin_epoch(self: Recipe, e: int, epochs: int) -> None:
        if e == epoch:
            raise Stop
        original(self, e, epochs)

    monkeypatch.setattr(Recipe, "begin_epoch", begin_epoch)


@pytest.mark.parametrize("kind", ["klingner", "klingner-bf16", "ssul"])
def test_an_interrupted_stage_resumes_to_identical_weights(kind: str, make_rows: Callable[..., Rows], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """klingner: teacher and dropout (global RNG), in fp32 and bf16 autocast; ssul: replay memory,
    pseudo-labels, frozen parts."""
    if kind.startswith("klingner"):
        hps: dict[str, Any] = dict(recipe="klingner", **{**ERFNET, "precision": kind.partition("-")[2] or "fp32"})
        first, second = make_rows("a", 3, [10, 0, 13], keep={0, 10}), make_rows("b", 3, [10, 0, 13], keep={13})
    else:
        hps = dict(recipe="ssul", **SSUL_VOC_FLAGS, **{**SSUL_FAST, "epochs": 3, "precision": "fp32", "device": "cpu"})
        first = voc_rows(make_rows, "a", 3, [0, 1, 2], keep={0, 1, 2})
        second = voc_rows(make_rows, "c", 3, [0, 16, 2], keep={0, 16})
    config = TrainConfig.from_hyperparameters(hps)

    straight = ContinualLearner(config)
    straight.learn(*_args(first))
    straight.save(tmp_path / "stage1.pt")
    summary = straight.learn(*_args(second))

    file = tmp_path / "stage2.resume.pt"
    broken = ContinualLearner.from_checkpoint(tmp_path / "stage1.pt", device="cpu")
    with monkeypatch.context() as patch:
        _stop_at(patch, 3)
        with pytest.raises(Stop):
            broken.learn(*_args(second), checkpoints=file)
    assert file.is_file()  # after epochs 1 and 2

    resumed = ContinualLearner.from_checkpoint(tmp_path / "stage1.pt", device="cpu")
    with monkeypatch.context() as patch:
        _stop_at(patch, 1)  # epochs 1 and 2 must not run again
        again = resumed.learn(*_args(second), checkpoints=file)
    assert again["final_loss"] == summary["final_loss"]
    assert again["loss_terms"] == pytest.approx(summary["loss_terms"], rel=1e-6)
    expected = _state(straight)
    assert all(torch.equal(v, expected[k]) for k, v in _state(resumed).items())


def test_a_checkpoint_of_other_settings_is_refused(make_rows: Callable[..., Rows], tmp_path: Path) -> None:
    rows = make_rows("a", 2, [10, 0, 13], keep={0, 10})
    file = tmp_path / "stage1.resume.pt"
    ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="finetune", **ERFNET))).learn(*_args(rows), checkpoints=file)
    other = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="finetune", **{**ERFNET, "lr": 1e-3})))
    with pytest.raises(ConfigError, match=f"{file} is the training checkpoint of another configuration or data"):
        other.learn(*_args(rows), checkpoints=file)
    # runtime keys do not count: another checkpoint interval or device setting resumes the same file
    same = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="finetune", checkpoint_every=2, **ERFNET)))
    same.learn(*_args(rows), checkpoints=file)


def test_a_stage_interrupted_with_a_best_epoch_resumes_to_the_same_choice(make_rows: Callable[..., Rows], tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """val_every 1 over 3 epochs, the last one ruined (10⁴ × lr, so an earlier epoch is kept); killed at the
    start of epoch 3, after the epoch-2 checkpoint that holds the best epoch so far, and resumed: the same
    kept epoch, validation score and weights as without the interruption. Losing the recorded best would
    keep epoch 3 (the only one validated after resuming)."""
    def scripted(optimizer, policy, total, **kwargs):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0 if it < total * 2 // 3 else 1e4)

    monkeypatch.setattr(engine_module, "make_schedule", scripted)
    rows = make_rows("a", 4, [0, 5, 10], keep={0, 5, 10})
    val = make_rows("v", 2, [0, 5, 10], keep={0, 5, 10})
    index = tmp_path / "val_index.txt"
    index.write_text("".join(f"{i} {lab} {lab}\n" for i, lab in val.x))
    config = TrainConfig.from_hyperparameters(dict(recipe="finetune", **{**ERFNET, "lr": 5e-3}, val_every=1,
                                                   val_index=str(index)))
    straight = ContinualLearner(config)
    summary = straight.learn(*_args(rows))
    assert summary["chosen_epoch"] < 3

    file = tmp_path / "stage1.resume.pt"
    with monkeypatch.context() as patch:
        _stop_at(patch, 3)
        with pytest.raises(Stop):
            ContinualLearner(config).learn(*_args(rows), checkpoints=file)
    assert load_weights_file(file)["best"]["epoch"] == summary["chosen_epoch"]

    resumed = ContinualLearner(config)
    with monkeypatch.context() as patch:
        _stop_at(patch, 1)  # epochs 1 and 2 must not run again
        again = resumed.learn(*_args(rows), checkpoints=file)
    assert (again["chosen_epoch"], again["val_mIoU"]) == (summary["chosen_epoch"], summary["val_mIoU"])
    expected = _state(straight)
    assert all(torch.equal(v, expected[k]) for k, v in _state(resumed).items())
