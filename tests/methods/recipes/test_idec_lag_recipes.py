"""The IDEC and LAG recipes inside the learner: flags, model taps, kd_on_frozen, epoch decay, prototypes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from llseg.errors import ConfigError
from llseg.methods.config import TrainConfig
from llseg.methods.learner import ContinualLearner
from llseg.methods.recipe import Stage
from llseg.methods.recipes import feature_kd, idec, lag
from llseg.methods.registry import list_recipes, make_recipe
from tests.methods.recipes.published import IDEC_VOC_FLAGS, LAG_VOC_FLAGS
from tests.methods.recipes.test_learner_ssul import FAST, SSUL, voc_rows

IDEC = dict(recipe="idec", **IDEC_VOC_FLAGS, **FAST)
LAG = dict(recipe="lag", **{**LAG_VOC_FLAGS, "rho": 0.5}, **FAST)
BODY = ("backbone.", "aspp.", "aspp_taps.")
HEADS = "classifier.heads."


def _learn(learner, rows):
    return learner.learn(list(rows.x[:, 0]), list(rows.x[:, 1]), list(rows.y))


def _two_steps(make_rows, settings: dict, **extra):
    """A learner after step 0, its state, and the summary of step 1 (new class 16)."""
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(**{**settings, **extra})))
    _learn(learner, voc_rows(make_rows, "a", 2, [0, 1, 2], keep={0, 1, 2}))
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    summary = _learn(learner, voc_rows(make_rows, "c", 3, [0, 16, 2], keep={0, 16}))
    return learner, before, summary


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(recipe="ssul", KD_loss_type="L1_loss"), "KD_loss_type applies to recipes idec, lag only, not 'ssul'"),
        (dict(recipe="ssul", kd_on_frozen=True), "kd_on_frozen applies to recipes idec, lag only"),
        (dict(recipe="idec", rho=0.3), "rho applies to recipe lag only, not 'idec'"),
        (dict(recipe="lag", contrastive_learning=True), "contrastive_learning applies to recipe idec only, not 'lag'"),
        (dict(recipe="plop", pseudo=True), "pseudo applies to recipes idec, lag, ssul only, not 'plop'"),
        (dict(recipe="idec", KD_loss_type="MSE"), "KD_loss_type must be one of KD_loss, KLDiv_loss"),
        (dict(recipe="lag", rho=1.5), r"rho \(a share of channels\) must be in \[0, 1\]"),
        (dict(recipe="lag", lambda_spm=-1.0, lambda_nsc=-0.5), "lambda_spm, lambda_nsc must be >= 0"),
        (dict(recipe="lag", uncertainty_margin=1.5), "uncertainty_margin .* must be in"),
        (dict(recipe="idec", freeze=False, kd_on_frozen=True), "kd_on_frozen: true keeps the frozen body .* set freeze: true"),
        (dict(recipe="ssul", bce_on_body=True), "bce_on_body applies to recipes idec, lag only"),
        (dict(recipe="lag", freeze=True, kd_on_frozen=True, bce_on_body=True), "bce_on_body: true needs a trainable body"),
        (dict(recipe="idec", use_KD_layer_weight=False, lamb=0.9), "set use_KD_layer_weight: true"),
        (dict(recipe="idec", lambda_arcl=2.0), "set contrastive_learning: true"),
        (dict(recipe="lag", feature_decoupling=False, lambda_dcl=2.0), "set feature_decoupling: true"),
        (
            dict(recipe="lag", pseudo=False, uncertainty_pseudo=True),
            "uncertainty_pseudo refines the pseudo-labels; set pseudo: true",
        ),
        (dict(recipe="lag", pseudo=True, uncertainty_margin=0.3), "set uncertainty_pseudo: true"),
    ],
)
def test_idec_and_lag_flags_are_validated(settings, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_hyperparameters(dict(**settings))


def test_flags_parse_from_yaml_values_and_round_trip():
    cfg = TrainConfig.from_hyperparameters({"recipe": "lag", "pseudo": "true", "uncertainty_pseudo": "true",
                                            "uncertainty_margin": "0.3", "rho": "0.25", "KD_loss_type": "L2_loss",
                                            "freeze": "true", "kd_on_frozen": "true", "lambda_nsc": 0})
    assert (
        cfg.options.rho,
        cfg.options.uncertainty_margin,
        cfg.options.KD_loss_type,
        cfg.options.kd_on_frozen,
        cfg.options.lambda_nsc,
    ) == (0.25, 0.3, "L2_loss", True, 0.0)
    assert TrainConfig.from_hyperparameters(cfg.to_dict()) == cfg
    assert set(list_recipes()) >= {"idec", "lag"}


@pytest.mark.parametrize("settings", [IDEC, LAG], ids=["idec", "lag"])
def test_model_has_the_taps_and_per_step_heads(settings):
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(**settings)))
    assert learner.model_kwargs == {"head": "per_step", "unknown": True, "aspp_taps": True}
    learner.groups = [list(range(16))]
    model = learner._new_model()
    assert set(model.aspp_taps) == {"layer1", "layer2", "layer3"}
    with pytest.raises(ConfigError, match=f"recipe {settings['recipe']} .* needs model_kwargs aspp_taps: true"):
        ContinualLearner(TrainConfig.from_hyperparameters(dict(**{**settings, "model_kwargs": {"aspp_taps": False}})))


@pytest.mark.parametrize("recipe", ["idec", "lag"])
def test_deeplabv3_estimator_defaults_for_idec_and_lag(recipe):
    from llseg.ianvs.estimator import DeepLabV3Estimator

    cfg = DeepLabV3Estimator(recipe=recipe, model="deeplabv3_mobilenet_v3_large").config
    flags = IDEC_VOC_FLAGS if recipe == "idec" else LAG_VOC_FLAGS
    for key, value in flags.items():
        assert cfg.to_dict()[key] == (0.5 if key == "rho" else value), key
    assert (cfg.options.kd_on_frozen, cfg.lr, cfg.backbone_lr, cfg.lr_incremental) == (False, 0.01, 0.001, None)
    assert DeepLabV3Estimator(recipe=recipe, kd_on_frozen=True).config.options.kd_on_frozen  # YAML wins


@pytest.mark.parametrize("settings", [IDEC, LAG], ids=["idec", "lag"])
def test_body_trains_and_auxiliary_terms_act_by_default(make_rows, settings):
    learner, before, summary = _two_steps(make_rows, settings)
    changed = _changed(before, learner.model.state_dict())
    assert any(k.startswith("backbone.") and k.endswith("weight") for k in changed)
    assert any(k.startswith("aspp_taps.") for k in changed) and any(k.startswith("aspp.") for k in changed)
    # bn_freeze: no running statistic moves; freeze: the base-class head stays
    assert not any(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in changed)
    assert not any(k.startswith(HEADS + "2.") for k in changed)
    terms = summary["loss_terms"]
    aux = ("dada",) if settings["recipe"] == "idec" else ("kd", "dcl", "spm", "sfp", "nsc")
    assert set(terms) == {"bce", "aux", *aux}
    assert all(math.isfinite(v) for v in terms.values()) and all(terms[k] != 0 for k in aux), terms
    assert summary["aux_gradient"] is True
    assert summary["final_loss"] == pytest.approx(terms["bce"] + terms["aux"], rel=1e-4)  # 1 epoch: same batches


def test_the_bce_reaches_the_body_only_with_bce_on_body(make_rows):
    """With the feature terms weighted 0 (and no weight decay) the body moves only if the BCE reaches it."""
    quiet = dict(lambda_kd=0.0, weight_decay=0.0)
    learner, before, _ = _two_steps(make_rows, IDEC, **quiet)
    changed = _changed(before, learner.model.state_dict())
    assert not any(k.startswith(BODY) for k in changed) and any(k.startswith(HEADS) for k in changed), sorted(changed)
    learner, before, _ = _two_steps(make_rows, IDEC, bce_on_body=True, **quiet)
    changed = _changed(before, learner.model.state_dict())
    assert any(k.startswith("backbone.") for k in changed) and any(k.startswith("aspp.") for k in changed)
    assert not any(k.startswith("aspp_taps.") for k in changed)  # the BCE does not pass through the taps


@pytest.mark.parametrize("settings", [IDEC, LAG], ids=["idec", "lag"])
def test_kd_on_frozen_keeps_the_body_bit_identical(make_rows, settings):
    learner, before, summary = _two_steps(make_rows, settings, kd_on_frozen=True)
    changed = _changed(before, learner.model.state_dict())
    assert changed and all(k.startswith((HEADS + "0.", HEADS + "1.")) for k in changed), sorted(changed)[:5]
    assert not any(k.startswith(BODY) for k in changed)
    # the terms are computed and logged, but nothing trainable is upstream of them
    assert summary["aux_gradient"] is False
    assert summary["loss_terms"]["aux"] != 0


def test_ssul_and_step_0_report_no_auxiliary_term(make_rows):
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(**SSUL)))
    summary = _learn(learner, voc_rows(make_rows, "a", 2, [0, 1, 2], keep={0, 1, 2}))
    assert summary["loss_terms"] == {} and summary["aux_gradient"] is None
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(**IDEC)))
    summary = _learn(learner, voc_rows(make_rows, "a", 2, [0, 1, 2], keep={0, 1, 2}))
    assert summary["loss_terms"] == {} and summary["aux_gradient"] is None


def test_body_stays_frozen_in_a_stage_without_teacher():
    recipe = make_recipe(TrainConfig.from_hyperparameters(dict(**IDEC)))
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(**IDEC)))
    learner.groups = [list(range(16)), list(range(16, 21))]
    model = learner._new_model()
    recipe.begin_stage(Stage(step=1, old_classes=16, classes=21), None)  # no new class: no teacher
    ids = {id(p) for g in recipe.param_groups(model) for p in g["params"]}
    assert not ids & {id(p) for p in model.backbone.parameters()}
    assert not any(p.requires_grad for p in model.backbone.parameters())
    recipe.begin_stage(Stage(step=1, old_classes=16, classes=21), iter(()))
    groups = recipe.param_groups(model)
    body = [g for g in groups if any(p is next(model.backbone.parameters()) for p in g["params"])]
    assert len(body) == 1 and body[0]["lr"] == 0.001  # lr 0.01 · 0.1 (backbone_lr unset)
    recipe = make_recipe(TrainConfig.from_hyperparameters(dict(**{**IDEC, "backbone_lr": 0.003})))
    recipe.begin_stage(Stage(step=1, old_classes=16, classes=21), iter(()))
    assert recipe.body_lr() == 0.003


@pytest.mark.parametrize("settings, module, name", [(IDEC, idec, "idec_loss"), (LAG, lag, "lag_loss")],
                         ids=["idec", "lag"])
def test_the_epoch_of_the_decay_reaches_the_loss(make_rows, monkeypatch, settings, module, name):
    calls = []
    original = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **kw: calls.append((kw["epoch"], kw["epochs"], kw["lamb"]))
                        or original(*a, **kw))
    learner, _, _ = _two_steps(make_rows, settings, epochs=2, lamb=0.5)
    # 3 images, batch 2 -> one batch per epoch (no 1-sample batch); epochs are 1-based
    assert calls == [(1, 2, 0.5), (2, 2, 0.5)]


def test_layer_decay_changes_the_value(make_rows, monkeypatch):
    decays = []
    original = feature_kd.layer_decay
    monkeypatch.setattr(feature_kd, "layer_decay", lambda lamb, e, E: decays.append(original(lamb, e, E)) or decays[-1])
    _two_steps(make_rows, IDEC, epochs=2, lamb=0.25)
    assert decays == pytest.approx([0.25 ** 0.5, 0.25])  # λ^(e/E), e = 1, 2


def test_lag_uncertainty_pseudo_labels_are_used(make_rows, monkeypatch):
    margins = []
    original = lag.uncertainty_pseudo_label
    monkeypatch.setattr(lag, "uncertainty_pseudo_label",
                        lambda *a, **kw: margins.append(kw["margin"]) or original(*a, **kw))
    _two_steps(make_rows, LAG, uncertainty_pseudo=True, uncertainty_margin=0.3)
    assert margins and set(margins) == {0.3}  # prototype pass and training batches


def test_lag_old_prototypes_come_from_the_teacher_and_need_no_checkpoint(make_rows):
    settings = {**LAG, "split": "voc-15-1"}  # steps 1, 2 = classes 16, 17
    learner, _, _ = _two_steps(make_rows, settings)
    prototypes, valid = learner.recipe.prototypes
    assert prototypes.shape == (17, 256) and valid.shape == (17,)  # unknown + background + 15 classes
    # without saliency every background pixel is unknown (channel 0); none is labelled background (1)
    assert valid[0] and not valid[1] and (prototypes[~valid] == 0).all() and prototypes[0].abs().sum() > 0
    state = learner.state_dict()
    assert any(k.startswith("aspp_taps.layer3.") for k in state["state_dict"])
    twin = ContinualLearner(TrainConfig.from_hyperparameters(dict(**settings)))
    twin.load_state_dict(state)
    image = voc_rows(make_rows, "d", 1, [0, 16], keep=set()).x[0, 0]
    assert np.array_equal(next(learner.predict([image])).pred, next(twin.predict([image])).pred)
    # the next step rebuilds the old prototypes from the teacher, which is the loaded model: the same in both
    step2 = voc_rows(make_rows, "e", 2, [0, 17, 2], keep={0, 17})
    summaries = [_learn(lrn, step2) for lrn in (learner, twin)]
    assert all(s["aux_gradient"] for s in summaries)
    (a, a_valid), (b, b_valid) = learner.recipe.prototypes, twin.recipe.prototypes
    assert a.shape == (18, 256) and torch.equal(a_valid, b_valid)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
