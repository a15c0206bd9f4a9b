"""Resumable training checkpoints: a stage interrupted after an epoch and resumed from its file ends
with exactly the weights and summary of an uninterrupted stage (CPU, fp32)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from llseg.errors import ConfigError
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
