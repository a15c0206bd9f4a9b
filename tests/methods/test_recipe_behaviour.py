"""Behaviour of the three recipes on a small synthetic CIL-3 run (issue: joint >= cil > finetune).

One module-scoped run trains joint, finetune and cil through the three stages; each test
asserts one property of the resulting scores. Settings are small so the run fits in CPU minutes.
"""
from __future__ import annotations


import pytest

from llseg.data.prepare import prepare
from llseg.data.synthetic import generate_city_dataset
from llseg.methods.stages import train_stages

SETTINGS = dict(epochs=12, batch_size=8, lr=2e-3, crop_size="64x128", seed=11, init_from_teacher=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict]]:
    root = tmp_path_factory.mktemp("recipes")
    generate_city_dataset(root / "city", seed=3, size=(64, 128), images_per_city=4)
    prepare("cityscapes", root=root / "city", split="cil-3", out=root / "cil3", seed=3)
    return {
        recipe: train_stages(root / "cil3", root / recipe, {"recipe": recipe, **SETTINGS})
        for recipe in ("joint", "finetune", "cil")
    }


def final(runs: dict, recipe: str, key: str) -> float:
    return runs[recipe]["stage 3" if recipe != "joint" else "stage 1"][key]


def test_joint_is_the_upper_bound_and_cil_beats_finetune(runs):
    joint, cil, finetune = (final(runs, r, "mIoU_task1+2+3") for r in ("joint", "cil", "finetune"))
    assert joint >= cil > finetune, (joint, cil, finetune)


def test_finetune_forgets_task1_while_cil_keeps_it(runs):
    def kept(recipe: str) -> float:
        return runs[recipe]["stage 3"]["mIoU_task1"] / runs[recipe]["stage 1"]["mIoU_task1"]

    assert kept("finetune") < 0.5, runs["finetune"]
    assert kept("cil") > 0.7, runs["cil"]


def test_every_stage_learns_something(runs):
    for recipe in ("finetune", "cil"):
        for stage, scores in runs[recipe].items():
            assert scores["accuracy"] > 0.05, (recipe, stage, scores)
