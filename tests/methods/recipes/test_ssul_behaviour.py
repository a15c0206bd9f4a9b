"""SSUL, MiB and PLOP against fine-tuning and joint training on a tiny 3-1-1 split (a 15-1-style protocol).

Scenes: background plus large squares of 5 classes with distinct colours, VOC-style labels
(0 = background). Step 0 learns classes 1-3, steps 1 and 2 learn 4 and 5;
training labels keep the step's classes only (old and future classes become background, the
overlapped protocol), joint training sees full labels. Expected (issue): after the last step,
SSUL's old-class mIoU (background included) is far above fine-tuning's, and joint is the upper
bound of all-class mIoU. MiB and PLOP train step 0 with plain cross-entropy, as fine-tuning does,
so they continue from fine-tuning's step-0 model and learn step 1 only, at a lower lr as in their
papers (0.02 here; a tenth of step 0's, 0.005, leaves too little to learn in 60 iterations):
they must forget less than fine-tuning in that step. IDEC and LAG (defaults: body trainable at
lr · 0.1, kd_on_frozen false) train step 0 as SSUL does, so they continue from SSUL's step-0 model
(plus freshly initialised tap ASPPs) and learn step 1 with SSUL's lr; they must keep the old
classes far above fine-tuning, with a non-zero auxiliary loss that has a gradient. One
module-scoped run trains the recipes (about 145 s on one core; IDEC and LAG add about 35 s).
Measured in bf16 before these tests moved to fp32 (old / new / all after the last step): ssul 0.601 / 0.290 / 0.497,
finetune 0.168 / 0.059 / 0.132, joint all 0.680; step-0 old: ssul 0.716, finetune 0.656.
After step 1 (old / new): finetune 0.179 / 0.771, mib 0.337 / 0.323, plop 0.315 / 0.238
(fp32, the tests' precision now: finetune 0.179 / 0.727, mib 0.391 / 0.326, plop 0.314 / 0.256), idec 0.673 / 0.302,
lag 0.673 / 0.284 on one thread (body moved by the feature terms only, bce_on_body false; with
the BCE also on the body, before that flag: idec 0.580 / 0.218, lag 0.548 / 0.224; with
kd_on_frozen true, i.e. SSUL's frozen body: idec 0.669 / 0.305, lag 0.665 / 0.298; ssul itself
0.664 / 0.293 after step 1). LAG with lambda_nsc 1 diverged (NaN), hence its default 0.1.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llseg.methods.config import TrainConfig
from llseg.methods.learner import ContinualLearner
from tests.methods.recipes.published import IDEC_VOC_FLAGS, LAG_VOC_FLAGS, SSUL_VOC_FLAGS

COLOURS = np.array([[90, 90, 90], [220, 40, 40], [40, 200, 40], [40, 60, 220], [230, 220, 40], [200, 40, 210]])
STEPS = [[1, 2, 3], [4], [5]]
SIZE = 64  # DeepLabV3 (output stride 16) predicts on a 4x4 grid here: objects are large squares
# BN momentum 0.1: SSUL's 0.01 barely moves the running statistics of a model trained from scratch
# for a few hundred iterations.
# fp32: these tests check the methods, one seed on tiny data; in bf16, running MobileNetV3's three
# dilated depthwise convs in NCHW instead of channels_last (same maths, other kernels) moved PLOP's
# old-class mIoU after step 1 from 0.315 to 0.176 (finetune 0.178).
SETTINGS = dict(model="deeplabv3_mobilenet_v3_large", model_kwargs={"bn_momentum": 0.1}, dataset="voc",
                epochs=30, batch_size=4, optimizer="sgd", lr=0.05, backbone_lr=None, weight_decay=1e-4, jitter=0.0,
                scale=(1.0, 1.0), flip=True, seed=5, device="cpu", precision="fp32")


def scene(folder: Path, name: str, classes: list[int], keep: set[int], rng: np.random.Generator) -> tuple[str, str, str]:
    """Background with one square per class; the train label keeps ``keep`` (others -> 0)."""
    full = np.zeros((SIZE, SIZE), np.uint8)
    for k, cls in enumerate(classes):
        s = int(rng.integers(SIZE * 3 // 8, SIZE // 2))
        y, x = int(rng.integers(0, SIZE - s)), (k * SIZE // len(classes) + int(rng.integers(0, 4))) % (SIZE - s)
        full[y : y + s, x : x + s] = cls
    image = COLOURS[full] + rng.integers(-25, 26, (SIZE, SIZE, 3))
    train = np.where(np.isin(full, [0, *keep]), full, 0)
    paths = [folder / f"{name}.png", folder / f"{name}_full.png", folder / f"{name}_train.png"]
    Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(paths[0])
    Image.fromarray(full).save(paths[1])
    Image.fromarray(train.astype(np.uint8)).save(paths[2])
    return tuple(str(p) for p in paths)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    folder = tmp_path_factory.mktemp("ssul")
    rng = np.random.default_rng(0)
    steps = []
    for t, classes in enumerate(STEPS):
        rows = []
        for i in range(16 if t == 0 else 8):
            present = [int(c) for c in rng.choice(classes, size=min(2, len(classes)), replace=False)]
            if t > 0:  # overlapped: new-step images also show an old class
                present.append(int(rng.integers(1, 4)))
            rows.append(scene(folder, f"s{t}_{i}", present, set(classes), rng))
        steps.append(rows)
    test = [scene(folder, f"test{i}", [int(c) for c in rng.choice(5, 2, replace=False) + 1], set(), rng)
            for i in range(20)]
    def score(learner: ContinualLearner) -> dict:
        return learner.evaluate([r[0] for r in test], [r[1] for r in test])

    results: dict[str, list[dict]] = {}
    step0: dict[str, dict] = {}
    for recipe, extra in (("ssul", SSUL_VOC_FLAGS), ("finetune", {})):
        learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe=recipe, **SETTINGS, **extra)))
        results[recipe] = []
        for rows in steps:
            learner.learn(*[list(c) for c in zip(*rows)])
            results[recipe].append(score(learner))
            if len(results[recipe]) == 1:
                step0[recipe] = learner.state_dict()
    for recipe in ("mib", "plop"):
        learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe=recipe, lr_incremental=0.02, **SETTINGS)))
        learner.load_state_dict(step0["finetune"])
        learner.learn(*[list(c) for c in zip(*steps[1])])
        results[recipe] = [results["finetune"][0], score(learner)]
    # IDEC and LAG train step 0 as SSUL does (their tap ASPPs get no gradient there): they continue
    # from SSUL's step-0 model with freshly initialised taps and learn step 1 with their defaults.
    # LAG's body at lr 0.0005 (benchmarks/accuracy.py's setting): at lr · 0.1 its feature terms alone
    # moved this from-scratch body far enough to lose old classes with 2 threads (old 0.38).
    for recipe, flags in (("idec", IDEC_VOC_FLAGS), ("lag", {**LAG_VOC_FLAGS, "rho": 0.5, "backbone_lr": 0.0005})):
        learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe=recipe, **{**SETTINGS, **flags})))
        learner.groups = [list(g) for g in step0["ssul"]["groups"]]
        taps = {k: v for k, v in learner._new_model().state_dict().items() if k.startswith("aspp_taps.")}
        learner.load_state_dict({**step0["ssul"], "state_dict": {**step0["ssul"]["state_dict"], **taps}})
        summary = learner.learn(*[list(c) for c in zip(*steps[1])])
        results[recipe] = [results["ssul"][0], score(learner), summary]
    # joint's last stage retrains a fresh model on every step's images with full labels: run only that
    joint = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="joint", **SETTINGS)))
    every = [r for rows in steps for r in rows]
    joint.learn([r[0] for r in every], [r[1] for r in every], [r[1] for r in every])
    results["joint"] = [score(joint)]
    return results


def test_ssul_keeps_old_classes_far_above_finetuning(runs):
    ssul, finetune = runs["ssul"][-1]["mIoU_old"], runs["finetune"][-1]["mIoU_old"]
    assert ssul > finetune + 0.2, (ssul, finetune)
    # SSUL keeps most of what step 0 learned; fine-tuning loses most of it
    assert ssul > 0.7 * runs["ssul"][0]["mIoU_old"], runs["ssul"]
    assert finetune < 0.5 * runs["finetune"][0]["mIoU_old"], runs["finetune"]


@pytest.mark.parametrize("recipe", ["mib", "plop"])
def test_mib_and_plop_forget_less_than_finetuning_in_a_step(recipe, runs):
    old, finetune = runs[recipe][1]["mIoU_old"], runs["finetune"][1]["mIoU_old"]
    assert old > finetune + 0.08, (recipe, old, finetune)
    assert runs[recipe][1]["mIoU_new"] > 0.1, runs[recipe]  # while learning the new class


@pytest.mark.parametrize("recipe", ["idec", "lag"])
def test_idec_and_lag_keep_old_classes_above_finetuning(recipe, runs):
    old, finetune = runs[recipe][1]["mIoU_old"], runs["finetune"][1]["mIoU_old"]
    assert old > finetune + 0.2, (recipe, old, finetune)
    assert old > 0.7 * runs["ssul"][0]["mIoU_old"], runs[recipe]
    assert runs[recipe][1]["mIoU_new"] > 0.1, runs[recipe]
    summary = runs[recipe][2]
    assert summary["aux_gradient"] is True and summary["loss_terms"]["aux"] > 0, summary


def test_joint_is_the_upper_bound(runs):
    joint, ssul, finetune = (runs[r][-1]["mIoU_all"] for r in ("joint", "ssul", "finetune"))
    assert joint >= ssul > finetune, (joint, ssul, finetune)
    assert runs["ssul"][-1]["mIoU_new"] > 0.1, runs["ssul"][-1]  # the new classes are learned too
