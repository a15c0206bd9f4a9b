"""Recipe structure, MiB / PLOP inside the learner, lr_incremental and data_ratio."""
from __future__ import annotations

import math

import pytest
import torch

from llseg.errors import ConfigError
from llseg.methods.config import TrainConfig
from llseg.methods.learner import ContinualLearner
from llseg.methods.recipe import Stage
from llseg.methods.recipes import mib, plop
from llseg.methods.registry import get_recipe, list_recipes, make_recipe
from tests.methods.recipes.test_learner_ssul import FAST, voc_rows

MIB = dict(recipe="mib", **FAST)
PLOP = dict(recipe="plop", **FAST)


def _learn(learner, rows):
    return learner.learn(list(rows.x[:, 0]), list(rows.x[:, 1]), list(rows.y))


def test_every_builtin_recipe_is_registered_under_its_name():
    assert {"joint", "finetune", "klingner", "ssul", "mib", "plop", "idec", "lag"} <= set(list_recipes())
    assert all(get_recipe(name).name == name for name in list_recipes())


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(recipe="finetune", loss_kd=5.0), "loss_kd applies to recipe mib only, not 'finetune'"),
        (dict(recipe="mib", pod_factor=0.1), "pod_factor applies to recipe plop only, not 'mib'"),
        (dict(recipe="ssul", init_balanced=False), "init_balanced applies to recipes mib, plop only, not 'ssul'"),
        (dict(recipe="plop", pseudo=True), "pseudo applies to recipes idec, lag, ssul only, not 'plop'"),
        (dict(recipe="mib", loss_type="bce"), "recipe mib uses softmax losses"),
        (dict(recipe="mib", alpha=0.0), "alpha > 0"),
        (dict(recipe="plop", threshold=1.5), "threshold .* must be in"),
        (dict(data_ratio=0.0), r"data_ratio must be in \(0, 1\]"),
        (dict(lr_incremental=-1.0), "lr_incremental must be > 0"),
    ],
)
def test_recipe_flags_are_validated(settings, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_hyperparameters(dict(**settings))


def test_mib_and_plop_flag_defaults_are_the_papers():
    cfg = TrainConfig.from_hyperparameters(dict(recipe="plop"))
    assert (cfg.options.pod_factor, cfg.options.pod_logits_factor, cfg.options.threshold) == (0.01, 0.0005, 0.001)
    assert cfg.options.classif_adaptive_factor and cfg.options.init_balanced
    cfg = TrainConfig.from_hyperparameters({"recipe": "mib", "loss_kd": "5", "init_balanced": "false"})
    assert (cfg.options.loss_kd, cfg.options.alpha, cfg.options.init_balanced) == (5.0, 1.0, False)
    assert TrainConfig.from_hyperparameters(cfg.to_dict()) == cfg


@pytest.mark.parametrize("recipe", ["mib", "plop"])
def test_mib_and_plop_need_deeplabv3_expanding_and_a_background(recipe):
    with pytest.raises(ConfigError, match=f"recipe {recipe} needs a model with one expanding classifier"):
        ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe=recipe, model="erfnet", dataset="voc")))
    with pytest.raises(ConfigError, match="needs model_kwargs head: expanding"):
        ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe=recipe, model="deeplabv3_resnet50", dataset="voc",
                                     model_kwargs={"head": "per_step"})))
    with pytest.raises(ConfigError, match=f"recipe {recipe} needs a dataset with a background class"):
        ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe=recipe, model="deeplabv3_resnet50", dataset="cityscapes")))
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe=recipe, model="deeplabv3_resnet50", dataset="voc")))
    assert learner.model_kwargs == {"head": "expanding"}


@pytest.mark.parametrize("recipe", ["mib", "plop"])
def test_deeplabv3_estimator_defaults_for_mib_and_plop(recipe):
    from llseg.ianvs.estimator import DeepLabV3Estimator

    cfg = DeepLabV3Estimator(recipe=recipe, model="deeplabv3_mobilenet_v3_large").config
    assert (cfg.optimizer, cfg.lr, cfg.lr_incremental, cfg.backbone_lr) == ("sgd", 0.01, 0.001, None)
    assert (cfg.weight_decay, cfg.lr_policy, cfg.options.init_balanced) == (1e-4, "poly", True)
    assert "unknown" not in cfg.to_dict()  # SSUL's flags are not MiB/PLOP options
    assert DeepLabV3Estimator(recipe=recipe, backbone_lr=0.002).config.backbone_lr == 0.002  # YAML wins
    assert DeepLabV3Estimator(recipe="ssul").config.lr_incremental is None  # SSUL keeps its lr


def test_lr_incremental_applies_from_step_1():
    cfg = TrainConfig.from_hyperparameters(
        dict(recipe="mib", model="deeplabv3_mobilenet_v3_large", dataset="voc", lr=0.01, lr_incremental=0.001)
    )
    recipe = make_recipe(cfg)
    model = torch.nn.Conv2d(3, 2, 1)
    recipe.begin_stage(Stage(step=0, old_classes=0, classes=2), None)
    assert [g["lr"] for g in recipe.param_groups(model)] == [0.01]
    recipe.begin_stage(Stage(step=1, old_classes=2, classes=3), None)
    assert [g["lr"] for g in recipe.param_groups(model)] == [0.001]


def test_mib_growth_uses_init_balanced(make_rows):
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(**MIB)))
    _learn(learner, voc_rows(make_rows, "a", 2, [0, 1, 2], keep={0, 1, 2}))
    conv = learner.model.classifier.conv
    bg_weight, bg_bias = conv.weight[0].detach().clone(), conv.bias[0].item()
    learner._grow(learner.model, [5])
    conv = learner.model.classifier.conv
    assert conv.out_channels == 21
    assert all(torch.equal(conv.weight[k], bg_weight) for k in range(16, 21))
    assert conv.bias[[0, *range(16, 21)]].tolist() == pytest.approx([bg_bias - math.log(6)] * 6)


def test_mib_distils_from_the_teacher_only_in_later_steps(make_rows, monkeypatch):
    calls = []
    original = mib.unbiased_distillation
    monkeypatch.setattr(mib, "unbiased_distillation",
                        lambda s, t, alpha: calls.append((s.shape[1], t.shape[1], alpha)) or original(s, t, alpha=alpha))
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(**MIB)))
    _learn(learner, voc_rows(make_rows, "a", 2, [0, 1, 2], keep={0, 1, 2}))
    assert calls == []  # step 0: plain cross-entropy
    summary = _learn(learner, voc_rows(make_rows, "c", 2, [0, 16, 2], keep={0, 16}))
    assert calls and set(calls) == {(21, 16, 1.0)}
    assert math.isfinite(summary["final_loss"])


def test_plop_computes_thresholds_and_distils_six_maps(make_rows, monkeypatch):
    maps = []
    original = plop.pod_loss
    monkeypatch.setattr(plop, "pod_loss", lambda new, old, factors, **kw: maps.append(
        ([m.shape[1] for m in new], [m.shape[1] for m in old], list(factors), kw)) or original(new, old, factors, **kw))
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(**PLOP)))
    _learn(learner, voc_rows(make_rows, "a", 2, [0, 1, 2], keep={0, 1, 2}))
    assert maps == [] and learner.recipe.thresholds is None
    _learn(learner, voc_rows(make_rows, "c", 2, [0, 16, 2], keep={0, 16}))
    thresholds = learner.recipe.thresholds
    assert thresholds.shape == (16,) and bool((thresholds >= 0.001).all())
    # MobileNetV3 stages (24, 40, 112, 960 ch), ASPP 256, logits with the 5 new channels summed into bg
    new, old, factors, kw = maps[0]
    assert new == old == [24, 40, 112, 960, 256, 16]
    assert factors == [0.01] * 5 + [0.0005] and kw == {"channels": 21, "new_channels": 5, "released": False}


def test_plop_released_mode_runs_the_released_terms(make_rows, monkeypatch):
    """mode: released feeds pre-activation stages to POD with the released regions, and computes the
    thresholds and ν as PLOP's code does (the terms themselves: test_plop.py and benchmarks/parity.py)."""
    calls = []
    original_pod, original_median = plop.pod_loss, plop.released_median_thresholds
    monkeypatch.setattr(plop, "pod_loss", lambda new, old, factors, **kw: calls.append(
        ("pod", min(float(m.min()) for m in new[:4]), kw["released"])) or original_pod(new, old, factors, **kw))
    monkeypatch.setattr(plop, "released_median_thresholds", lambda h, f: calls.append(("median",)) or original_median(h, f))
    settings = dict(PLOP, model="deeplabv3_resnet50", mode="released", crop_size="64x64")
    learner = ContinualLearner(TrainConfig.from_hyperparameters(settings))
    _learn(learner, voc_rows(make_rows, "a", 2, [0, 1, 2], keep={0, 1, 2}))
    _learn(learner, voc_rows(make_rows, "c", 2, [0, 16, 2], keep={0, 16}))
    assert calls[0] == ("median",)
    pods = [c for c in calls if c[0] == "pod"]
    assert pods and all(released for _, _, released in pods)
    assert min(low for _, low, _ in pods) < 0  # pre-activation maps keep negative values
    mobilenet = ContinualLearner(TrainConfig.from_hyperparameters(dict(PLOP, mode="released", crop_size="32x32")))
    with pytest.raises(ConfigError, match=r"mode: released needs .*\(a ResNet DeepLabV3"):
        _learn(mobilenet, voc_rows(make_rows, "m", 2, [0, 1, 2], keep={0, 1, 2}))
    with pytest.raises(ConfigError, match="crop_size at least as tall as wide"):
        TrainConfig.from_hyperparameters(dict(settings, crop_size="32x48"))


def test_data_ratio_subsets_later_steps(make_rows):
    cfg = TrainConfig.from_hyperparameters(dict(recipe="finetune", data_ratio=0.3, epochs=1, batch_size=2, seed=3, jitter=0.0))
    step1 = make_rows("b", 10, [0, 3], keep={3})
    images, full, train = [list(c) * 2 for c in (step1.x[:, 0], step1.x[:, 1], step1.y)]  # repeats count once
    learner = ContinualLearner(cfg)
    first = _learn(learner, make_rows("a", 2, [0, 1], keep={0, 1}))
    trained = []
    original = learner._fit
    learner._fit = lambda student, teacher, pairs, *rest: trained.append(list(pairs)) or original(student, teacher, pairs, *rest)
    second = learner.learn(images, full, train)
    assert (first["stage_images"], first["used_images"]) == (2, 2)  # step 0 keeps everything
    assert (second["stage_images"], second["used_images"], second["num_images"]) == (10, 3, 3)
    order = list(step1.y)
    positions = [order.index(t) for _, t in trained[0]]
    assert positions == sorted(positions)  # a subset in the original order


def test_data_ratio_subset_is_fixed_by_seed_and_stage():
    rows = [(f"i{k}", f"f{k}", f"t{k}") for k in range(20)]

    def subset(seed: int, stages: int, ratio: float = 0.25, step: int = 1):
        learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="finetune", data_ratio=ratio, seed=seed)))
        learner.stages = stages
        return learner._limit_data(rows, step=step)

    assert len(subset(0, 2)) == 5 and subset(0, 2) == subset(0, 2)
    assert len({tuple(subset(seed, stages)) for seed in (0, 1) for stages in (2, 3)}) == 4
    assert subset(0, 2, step=0) == rows  # step 0 uses every image
    assert len(subset(0, 2, ratio=0.01)) == 1  # at least one image
