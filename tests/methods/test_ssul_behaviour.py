"""SSUL against fine-tuning and joint training on a tiny 3-1-1 split (a 15-1-style protocol).

Scenes: background plus large squares of 5 classes with distinct colours, VOC-style labels
(0 = background). Step 0 learns classes 1-3, steps 1 and 2 learn 4 and 5;
training labels keep the step's classes only (old and future classes become background, the
overlapped protocol), joint training sees full labels. Expected (issue): after the last step,
SSUL's old-class mIoU (background included) is far above fine-tuning's, and joint is the upper
bound of all-class mIoU. One module-scoped run trains the three recipes (about 90 s on one core).
Measured with these settings (old / new / all after the last step): ssul 0.601 / 0.290 / 0.497,
finetune 0.168 / 0.059 / 0.132, joint all 0.680; step-0 old: ssul 0.716, finetune 0.656.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llseg.methods.config import TrainConfig
from llseg.methods.learner import ContinualLearner
from llseg.methods.ssul import SSUL_VOC_FLAGS

COLOURS = np.array([[90, 90, 90], [220, 40, 40], [40, 200, 40], [40, 60, 220], [230, 220, 40], [200, 40, 210]])
STEPS = [[1, 2, 3], [4], [5]]
SIZE = 64  # DeepLabV3 (output stride 16) predicts on a 4x4 grid here: objects are large squares
# BN momentum 0.1: SSUL's 0.01 barely moves the running statistics of a model trained from scratch
# for a few hundred iterations.
SETTINGS = dict(model="deeplabv3_mobilenet_v3_large", model_kwargs={"bn_momentum": 0.1}, dataset="voc",
                epochs=30, batch_size=4, optimizer="sgd", lr=0.05, weight_decay=1e-4, jitter=0.0,
                scale=(1.0, 1.0), flip=True, seed=5, device="cpu")


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
    for recipe, extra in (("ssul", SSUL_VOC_FLAGS), ("finetune", {})):
        learner = ContinualLearner(TrainConfig(recipe=recipe, **SETTINGS, **extra))
        results[recipe] = []
        for rows in steps:
            learner.learn(*[list(c) for c in zip(*rows)])
            results[recipe].append(score(learner))
    # joint's last stage retrains a fresh model on every step's images with full labels: run only that
    joint = ContinualLearner(TrainConfig(recipe="joint", **SETTINGS))
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


def test_joint_is_the_upper_bound(runs):
    joint, ssul, finetune = (runs[r][-1]["mIoU_all"] for r in ("joint", "ssul", "finetune"))
    assert joint >= ssul > finetune, (joint, ssul, finetune)
    assert runs["ssul"][-1]["mIoU_new"] > 0.1, runs["ssul"][-1]  # the new classes are learned too
