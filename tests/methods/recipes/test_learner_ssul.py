"""The SSUL recipe inside the learner: step groups from a split, freezing, memory, inference."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from llseg.errors import ConfigError
from llseg.methods.config import TrainConfig
from llseg.methods.learner import ContinualLearner
from tests.methods.recipes.published import SSUL_VOC_FLAGS

FAST = dict(model="deeplabv3_mobilenet_v3_large", dataset="voc", epochs=1, batch_size=2, seed=3, jitter=0.0,
            optimizer="sgd", lr=0.01, split="voc-15-5")
SSUL = dict(recipe="ssul", **SSUL_VOC_FLAGS, **FAST)


def voc_rows(make_rows, tag: str, n: int, bands: list[int], keep: set[int]):
    """VOC-style rows: the train label keeps ``keep`` and turns every other class into background 0."""
    rows = make_rows(tag, n, bands, keep)
    for path in rows.y:
        label = np.asarray(Image.open(path))
        Image.fromarray(np.where(label == 255, 0, label).astype(np.uint8)).save(path)
    return rows


def _learn(learner, rows):
    return learner.learn(list(rows.x[:, 0]), list(rows.x[:, 1]), list(rows.y))


def test_split_steps_are_whole_groups_even_from_one_image(make_rows):
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(**SSUL)))
    _learn(learner, voc_rows(make_rows, "a", 1, [0, 1, 2], keep={0, 1, 2}))  # Ianvs round 0: one image
    assert learner.groups == [list(range(16))]
    assert learner.model.logit_classes == 1 + 16  # unknown + background + 15 classes
    _learn(learner, voc_rows(make_rows, "b", 2, [0, 3], keep={0, 3}))  # more step-0 data: same step
    assert learner.groups == [list(range(16))]
    _learn(learner, voc_rows(make_rows, "c", 2, [0, 16, 2], keep={0, 16}))
    assert learner.groups == [list(range(16)), [16, 17, 18, 19, 20]]
    assert [h[-1].out_channels for h in learner.model.classifier.heads] == [1, 1, 15, 5]


def test_freeze_trains_only_the_new_unknown_and_background_heads(make_rows):
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(**SSUL)))
    _learn(learner, voc_rows(make_rows, "a", 2, [0, 1, 2], keep={0, 1, 2}))
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    _learn(learner, voc_rows(make_rows, "c", 3, [0, 16, 2], keep={0, 16}))
    after = learner.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    heads = "classifier.heads."
    assert changed, "nothing trained"
    # backbone, ASPP, BN statistics (bn_freeze) and the base-class head stay as they were
    assert all(k.startswith((heads + "0.", heads + "1.")) for k in changed), sorted(changed)[:5]
    assert {k.split(".")[2] for k in changed} == {"0", "1"}  # unknown head (lr) and bg head (lr·1e-4)
    new_keys = [k for k in after if k.startswith(heads + "3.")]
    assert new_keys and all(k not in before for k in new_keys)


def test_predictions_merge_unknown_and_hold_learned_classes_only(make_rows):
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(**SSUL)))
    rows = voc_rows(make_rows, "a", 2, [0, 1, 2], keep={0, 1, 2})
    _learn(learner, rows)
    prediction = next(learner.predict([rows.x[0, 0]]))
    assert set(np.unique(prediction.pred)) <= set(range(16))
    assert prediction.classes.tolist() == list(range(16)) and prediction.group_sizes.tolist() == [16]
    logits = torch.tensor([2.0, -1.0, 1.0]).view(1, 3, 1, 1)  # unknown, bg, class 1
    scores = learner.class_scores(logits)  # σ: 0.88 + 0.27 into bg vs 0.73 for class 1
    assert scores.shape == (1, 2, 1, 1) and scores.argmax(1).item() == 0


def test_memory_is_deterministic_saved_and_mixed_into_later_steps(make_rows, monkeypatch):
    rows = voc_rows(make_rows, "a", 4, [0, 1, 2], keep={0, 1, 2})
    learners = [ContinualLearner(TrainConfig.from_hyperparameters(dict(mem_size=2, **SSUL))) for _ in range(2)]
    for learner in learners:
        _learn(learner, rows)
    assert learners[0].recipe.memory == learners[1].recipe.memory and len(learners[0].recipe.memory) == 2
    assert all(pair in set(zip(rows.x[:, 0], rows.x[:, 1])) for pair in learners[0].recipe.memory)
    twin = ContinualLearner(TrainConfig.from_hyperparameters(dict(mem_size=2, **SSUL)))
    twin.load_state_dict(learners[0].state_dict())
    assert twin.recipe.memory == learners[0].recipe.memory
    batches = []
    original = twin.recipe.loss
    monkeypatch.setattr(
        twin.recipe, "loss", lambda s, t, image, target: batches.append(target.clone()) or original(s, t, image, target)
    )
    summary = _learn(twin, voc_rows(make_rows, "c", 2, [0, 16], keep={0, 16}))
    assert summary["memory"] == 2
    # one current image + one memory image per batch; memory labels keep old classes (channels
    # 2, 3 = classes 1, 2 after the unknown shift), current labels show the new class 16
    assert len(batches) == 2 and all(len(b) == 2 for b in batches)
    assert all({2, 3} <= set(b[1].unique().tolist()) for b in batches)
    assert all(17 in b[0].unique().tolist() and not {2, 3} & set(b[0].unique().tolist()) for b in batches)


def test_repeated_lines_are_trained_once(make_rows):
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(**SSUL)))
    rows = voc_rows(make_rows, "a", 2, [0, 1], keep={0, 1})
    images, full, train = [list(c) * 3 for c in (rows.x[:, 0], rows.x[:, 1], rows.y)]
    assert learner.learn(images, full, train)["num_images"] == 2


def test_checkpoint_round_trip_with_per_step_heads(make_rows):
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(**SSUL)))
    rows = voc_rows(make_rows, "a", 2, [0, 1], keep={0, 1})
    _learn(learner, rows)
    _learn(learner, voc_rows(make_rows, "c", 2, [0, 16], keep={0, 16}))
    twin = ContinualLearner(TrainConfig.from_hyperparameters(dict(**SSUL)))
    twin.load_state_dict(learner.state_dict())
    a, b = next(learner.predict([rows.x[0, 0]])), next(twin.predict([rows.x[0, 0]]))
    assert twin.groups == learner.groups and np.array_equal(a.pred, b.pred)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(recipe="finetune", pseudo=True), "pseudo applies to recipes idec, lag, ssul only"),
        (dict(recipe="ssul", unknown=False), "w_transfer copies the unknown head"),
        (dict(recipe="ssul", loss_type="focal"), "loss_type must be one of ce, bce"),
        (dict(recipe="ssul", mem_size=4, batch_size=1), "use batch_size >= 2"),
    ],
)
def test_config_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_hyperparameters(dict(**settings))


def test_recipe_and_model_mismatches_are_explained(tmp_path: Path):
    with pytest.raises(ConfigError, match="recipe ssul needs a model with one head per step"):
        ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="ssul", model="erfnet", dataset="voc")))
    with pytest.raises(ConfigError, match="recipe ssul needs a dataset with a background class"):
        ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="ssul", model="deeplabv3_resnet50", dataset="cityscapes")))
    with pytest.raises(ConfigError, match="unknown split preset 'voc-16-1'"):
        ContinualLearner(TrainConfig.from_hyperparameters(dict(split="voc-16-1", dataset="voc")))
    with pytest.raises(ConfigError, match="not a class-incremental split of cityscapes"):
        ContinualLearner(TrainConfig.from_hyperparameters(dict(split="voc-15-1")))
