"""MiB and PLOP on the domain-incremental Cityscapes splits (docs/methods.md §8.3): a step adds no
class, so MiB is cross-entropy + KD and PLOP cross-entropy + local POD, as PLOP's released
scripts/cityscapesDomain/*.sh run them."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from llseg.data.cityscapes.synthetic import generate_city_dataset
from llseg.data.indexfile import read_index
from llseg.data.prepare import prepare
from llseg.data.splits import PRESETS
from llseg.errors import ConfigError, DataError
from llseg.methods.config import TrainConfig
from llseg.methods.learner import ContinualLearner
from llseg.methods.recipe import Stage
from llseg.methods.recipes import plop
from llseg.methods.registry import make_recipe
from llseg.methods.stages import task_train_rows
from llseg.models import create_model

SPLIT = "cityscapes-domain-11-5"
DOMAIN = dict(model="deeplabv3_mobilenet_v3_large", dataset="cityscapes", split=SPLIT, epochs=1, batch_size=2, seed=3,
              jitter=0.0, optimizer="sgd", lr=0.01, lr_incremental=0.001)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("city")
    generate_city_dataset(root / "src", seed=0, size=(32, 64), images_per_city=3)
    prepare("cityscapes", root=root / "src", split=SPLIT, out=root / "out", seed=1)
    return root / "out"


def _config(**settings) -> TrainConfig:
    return TrainConfig.from_hyperparameters({**DOMAIN, **settings})


def _domain_stage(recipe_name: str, **settings):
    recipe = make_recipe(_config(recipe=recipe_name, **settings))
    recipe.begin_stage(Stage(step=1, old_classes=19, classes=19), None)
    return recipe


def test_mib_in_a_new_domain_is_cross_entropy_plus_kd():
    torch.manual_seed(0)
    student, teacher = nn.Conv2d(3, 19, 1), nn.Conv2d(3, 19, 1)
    image = torch.randn(2, 3, 5, 7)
    target = torch.randint(0, 19, (2, 5, 7))
    target[0, 0] = 255
    recipe = _domain_stage("mib", loss_kd=10.0)
    assert recipe.stage.same_classes and recipe.learning_rate() == 0.001
    logits, old = student(image), teacher(image)
    ce = F.cross_entropy(logits, target, ignore_index=255, reduction="none").mean()  # ignored pixels count 0
    kd = -(torch.softmax(old, 1) * torch.log_softmax(logits, 1)).mean(1).mean()  # PLOP's KnowledgeDistillationLoss
    assert torch.allclose(recipe.loss(student, teacher, image, target), ce + 10.0 * kd, atol=1e-6)
    # the class-incremental form would merge every class into the background: a different value
    recipe.begin_stage(Stage(step=1, old_classes=15, classes=19), None)
    assert not torch.allclose(recipe.loss(student, teacher, image, target), ce + 10.0 * kd, atol=1e-3)


def test_plop_in_a_new_domain_is_cross_entropy_plus_pod_without_pseudo_labels():
    torch.manual_seed(0)
    student = create_model("deeplabv3_mobilenet_v3_large", num_classes=19, head="expanding").eval()
    teacher = create_model("deeplabv3_mobilenet_v3_large", num_classes=19, head="expanding").eval()
    image = torch.randn(2, 3, 32, 32)
    target = torch.randint(0, 19, (2, 32, 32))
    target[1, :4] = 255
    recipe = _domain_stage("plop", pod_factor=0.0, pod_logits_factor=0.0)
    assert not recipe.teacher_pass  # no thresholds to find
    features = student.forward_features(image)
    ce = F.cross_entropy(features["logits"], target, ignore_index=255, reduction="none").mean()  # over all pixels
    # the teacher's pseudo-labels would replace most ground-truth pixels: they are not used
    assert torch.allclose(recipe.loss(student, teacher, image, target), ce, atol=1e-6)
    recipe = _domain_stage("plop", pod_factor=0.01, pod_logits_factor=0.001)
    old = teacher.forward_features(image)
    names = [*plop.POD_FEATURES, "logits_lowres"]
    # sqrt(|C_1:t| / |C_t|) = 1: PLOP's nb_new_classes is every class in a domain step
    pod = sum(f * plop.pod_distance(features[k], old[k]) for k, f in zip(names, [0.01] * 5 + [0.001])) / len(names)
    loss = recipe.loss(student, teacher, image, target)
    assert torch.allclose(loss, ce + pod, atol=1e-5) and float(pod.detach()) > 0


@pytest.mark.parametrize("recipe", ["klingner", "ssul", "idec", "lag"])
def test_teacher_recipes_without_a_domain_form_are_refused(recipe):
    with pytest.raises(ConfigError, match=f"recipe {recipe} has no domain-incremental form"):
        ContinualLearner(_config(recipe=recipe))


def test_domain_labels_must_name_their_city(prepared: Path, tmp_path: Path):
    image, label, _ = task_train_rows(prepared)[0][0]
    moved = tmp_path / "nowhere" / Path(label).name
    moved.parent.mkdir()
    moved.write_bytes(Path(label).read_bytes())
    learner = ContinualLearner(_config(recipe="mib"))
    with pytest.raises(DataError, match="the folder of every label must name its domain"):
        learner.learn([image], [str(moved)], [str(moved)])


@pytest.mark.parametrize("recipe", ["mib", "plop"])
def test_two_domain_steps_with_a_teacher_and_per_city_scores(prepared: Path, recipe: str):
    learner = ContinualLearner(_config(recipe=recipe))
    chunks = task_train_rows(prepared)
    spec = PRESETS[SPLIT]
    first = learner.learn(*(list(c) for c in zip(*chunks[0][:2])))
    assert learner.recipe.stage == Stage(step=0, old_classes=0, classes=19) and first["old_classes"] == 0
    second = learner.learn(*(list(c) for c in zip(*chunks[1][:2])))
    # step 1 (the five cities dusseldorf .. stuttgart): a teacher of all 19 classes, lr_incremental
    assert learner.recipe.stage == Stage(step=1, old_classes=19, classes=19) and learner.recipe.stage.same_classes
    assert second["new_classes"] == [] and second["old_classes"] == 19 and math.isfinite(second["final_loss"])
    assert learner.recipe.learning_rate() == 0.001
    test = read_index(prepared / "test_index.txt", columns=3)
    per_city = {}
    for city in spec.tasks[0][:1] + spec.tasks[1][:1]:  # aachen (step 0), dusseldorf (step 1)
        rows = [r for r in test if r[1].parent.name == city]
        per_city[city] = learner.evaluate([str(r[0]) for r in rows], [str(r[1]) for r in rows])["mIoU_all"]
    assert all(v is not None and 0.0 <= v <= 1.0 for v in per_city.values()), per_city


def test_finetune_takes_lr_incremental_from_the_domain_step(prepared: Path):
    learner = ContinualLearner(_config(recipe="finetune", epochs=1))
    chunks = task_train_rows(prepared)
    learner.learn(*(list(c) for c in zip(*chunks[0][:2])))
    assert learner.recipe.stage.step == 0 and learner.recipe.learning_rate() == 0.01
    learner.learn(*(list(c) for c in zip(*chunks[1][:2])))
    # no teacher: old classes are those of the steps before the newest (none: one class group)
    assert learner.recipe.stage == Stage(step=1, old_classes=0, classes=19) and learner.recipe.learning_rate() == 0.001


def test_the_domain_job_lists_mib_and_plop_with_plops_script_settings():
    """examples/cityscapes/...-domain-11-5: every algorithm file builds a learner as shipped; MiB and PLOP carry
    the options of PLOP's scripts/cityscapesDomain (loss_kd 10; POD 0.0001 / 0.0001, released mode)."""
    from llseg.ianvs.estimator import DeepLabV3Estimator

    root = Path(__file__).resolve().parents[3] / "examples" / "cityscapes" / "lifelong_learning_bench"
    job = yaml.safe_load((root / f"benchmarkingjob_{SPLIT}.yaml").read_text())
    names = [a["name"] for a in job["benchmarkingjob"]["test_object"]["algorithms"]]
    assert names == ["deeplabv3_finetune", "deeplabv3_joint", "deeplabv3_mib", "deeplabv3_plop"]
    configs = {}
    for name in names:
        path = root / "testalgorithms" / f"{name}_{SPLIT}_cityscapes.yaml"
        hps = yaml.safe_load(path.read_text())["algorithm"]["modules"][0]["hyperparameters"]
        config = DeepLabV3Estimator(**{k: v["values"][0] for item in hps for k, v in item.items()}).config
        ContinualLearner(config)  # no refusal on the domain split
        configs[config.recipe] = config
    assert configs["mib"].options.loss_kd == 10.0 and configs["mib"].lr_incremental == 0.001
    plop_options = configs["plop"].options
    assert (plop_options.pod_factor, plop_options.pod_logits_factor, plop_options.mode) == (0.0001, 0.0001, "released")
    assert configs["joint"].lr_incremental is None  # a fresh model every round
