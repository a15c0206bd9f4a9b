"""The recipe registry: one module per recipe, one resolution of hyperparameters for every entry point."""
from __future__ import annotations

import ast
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import yaml
from torch import nn

from llseg.cli import main
from llseg.data.cityscapes.synthetic import generate_city_dataset
from llseg.data.prepare import prepare
from llseg.data.voc.synthetic import generate_objects_dataset
from llseg.errors import ConfigError
from llseg.ianvs.estimator import DeepLabV3Estimator, ERFNetEstimator
from llseg.methods.config import resolve_config
from llseg.methods.recipe import Recipe, RecipeOptions
from llseg.methods.registry import get_recipe, list_recipes, register_recipe
from llseg.models import model_accepts
from llseg.runner.job import run_job
from tests.helpers import JOB, tiny_city_repo

LLSEG = Path(__file__).resolve().parents[2] / "llseg"
FAST = {"epochs": 1, "batch_size": 4, "input_size": [32, 64], "device": "cpu"}


# ---------------------------------------------------------------- a recipe defined in this file only
@dataclass(frozen=True)
class ToyOptions(RecipeOptions):
    logit_penalty: float = 0.01


@register_recipe("toy-penalty")
class ToyPenalty(Recipe):
    """Fine-tuning plus ``logit_penalty`` · mean squared logit: a recipe no llseg module knows."""

    Options = ToyOptions
    options: ToyOptions
    penalties: ClassVar[list[float]] = []

    def loss(self, student: nn.Module, teacher: nn.Module | None, image: torch.Tensor,
             target: torch.Tensor) -> torch.Tensor:
        logits = student(image)
        ToyPenalty.penalties.append(self.options.logit_penalty)
        return self.supervised(logits, target) + self.options.logit_penalty * logits.float().pow(2).mean()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny prepared splits: Cityscapes CIL-3 (no background) and VOC 15-5 (background 0)."""
    root = tmp_path_factory.mktemp("prepared")
    generate_city_dataset(root / "city", seed=0, size=(32, 64), images_per_city=2)
    prepare("cityscapes", root=root / "city", split="cil-3", out=root / "city-cil3")
    generate_objects_dataset(root / "objects", seed=0, size=(32, 32))
    prepare("voc", root=root / "objects", split="voc-15-5", out=root / "objects-15-5")
    return {"cityscapes": root / "city-cil3", "voc": root / "objects-15-5"}


def _estimator_and_model(recipe: str) -> tuple[type, str, str]:
    """The estimator whose default model the recipe runs on, that model and the dataset to use."""
    needs_deeplab = get_recipe(recipe).needs_background or get_recipe(recipe).one_head_per_group
    if needs_deeplab:
        return DeepLabV3Estimator, "deeplabv3_mobilenet_v3_large", "voc"
    return ERFNetEstimator, "erfnet", "cityscapes"


@pytest.mark.parametrize("recipe", list_recipes())
def test_print_config_equals_what_the_estimator_resolves(recipe: str, prepared: dict[str, Path],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    estimator, model, dataset = _estimator_and_model(recipe)
    split = "cil-3" if dataset == "cityscapes" else "voc-15-5"
    settings = {"epochs": 3, "input_size": "32x64", "seed": 7}
    args = ["train", "--prepared", str(prepared[dataset]), "--recipe", recipe, "--model", model, "--print-config"]
    assert main(args + [f"--set={k}={v}" for k, v in settings.items()]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    yaml_hyperparameters = {"recipe": recipe, "model": model, "dataset": dataset, "split": split, **settings}
    assert printed == estimator(**yaml_hyperparameters).config.to_dict()
    assert printed["recipe"] == recipe and printed["epochs"] == 3 and printed["split"] == split
    # the recipe's own options are all printed, at their published defaults
    own = {k: v for k, v in printed.items() if k in get_recipe(recipe).Options.__dataclass_fields__}
    assert own == asdict(get_recipe(recipe).Options())


def test_llseg_train_and_the_estimator_agree_on_ssul(prepared: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """The bug this structure fixes: `llseg train --recipe ssul` used Adam and plain CE."""
    assert main(["train", "--prepared", str(prepared["voc"]), "--recipe", "ssul", "--model", "deeplabv3_resnet50",
                 "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (printed["optimizer"], printed["lr"], printed["backbone_lr"], printed["loss_type"]) == ("sgd", 0.01, 0.001, "bce")
    assert (printed["unknown"], printed["pseudo"], printed["freeze"], printed["w_transfer"]) == (True, True, True, True)
    assert (printed["dataset"], printed["split"]) == ("voc", "voc-15-5")  # from the prepared manifest


def test_llseg_train_refuses_a_dataset_other_than_the_prepared_one(prepared: dict[str, Path],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--prepared", str(prepared["voc"]), "--recipe", "finetune", "--set", "dataset=cityscapes",
                 "--print-config"]) == 2
    assert "contradicts" in capsys.readouterr().err


def test_a_recipe_in_one_file_runs_through_train_the_estimator_and_bench(
        prepared: dict[str, Path], make_rows: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], one_thread: None) -> None:
    assert "toy-penalty" in list_recipes()
    # llseg train, with the recipe's own option from --set
    ToyPenalty.penalties.clear()
    out = tmp_path / "train"
    sets = [f"--set={k}={v}" for k, v in {**FAST, "input_size": "32x64", "logit_penalty": 0.25}.items()]
    assert main(["train", "--prepared", str(prepared["cityscapes"]), "--recipe", "toy-penalty", "--out", str(out), *sets]) == 0
    assert sorted(p.name for p in out.glob("stage*.pt")) == ["stage1.pt", "stage2.pt", "stage3.pt"]
    assert ToyPenalty.penalties and set(ToyPenalty.penalties) == {0.25}
    # the Sedna estimator
    ToyPenalty.penalties.clear()
    estimator = ERFNetEstimator(recipe="toy-penalty", logit_penalty=0.5, **FAST)
    rows = make_rows("a", 4, [0, 1], keep={0, 1})
    estimator.train(rows)
    assert set(ToyPenalty.penalties) == {0.5} and estimator.config.options == ToyOptions(logit_penalty=0.5)
    # llseg bench on the default job, one algorithm switched to the toy recipe
    ToyPenalty.penalties.clear()
    bench = tmp_path / "bench"
    bench.mkdir()
    monkeypatch.chdir(bench)
    tiny_city_repo(bench)
    path = bench / "testalgorithms" / "erfnet_finetune_cil-3_synthetic-city.yaml"
    algorithm = yaml.safe_load(path.read_text())
    for item in algorithm["algorithm"]["modules"][0]["hyperparameters"]:
        if "recipe" in item:
            item["recipe"]["values"] = ["toy-penalty"]
    algorithm["algorithm"]["modules"][0]["hyperparameters"].append({"logit_penalty": {"values": [0.125]}})
    path.write_text(yaml.safe_dump(algorithm, sort_keys=False))
    job = yaml.safe_load((bench / JOB).read_text())
    job["benchmarkingjob"]["test_object"]["algorithms"] = [
        a for a in job["benchmarkingjob"]["test_object"]["algorithms"] if a["name"] == "erfnet_finetune"]
    (bench / JOB).write_text(yaml.safe_dump(job, sort_keys=False))
    result = run_job(JOB)
    assert not result.failed and [c.algorithm for c in result.cases] == ["erfnet_finetune"]
    assert set(ToyPenalty.penalties) == {0.125}


def test_a_recipe_needing_a_capability_names_the_models_that_have_it() -> None:
    with pytest.raises(ConfigError, match="recipe ssul needs a model with one head per step .* deeplabv3_resnet101"):
        ERFNetEstimator(recipe="ssul", dataset="voc")
    assert not model_accepts("erfnet", "head") and model_accepts("deeplabv3_resnet50", "head")


def test_deprecated_names_still_work_with_a_message(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="llseg.config"):
        cfg = resolve_config({"recipe": "cil", "amp": False})
    assert cfg.recipe == "klingner" and cfg.precision == "fp32"
    assert "recipe 'cil' is deprecated; it is now called 'klingner'" in caplog.text
    assert "amp is deprecated; use precision: fp32" in caplog.text
    with pytest.raises(ConfigError, match="set only precision"):
        resolve_config({"amp": True, "precision": "bf16"})


def test_resolution_layers_model_then_recipe_then_user() -> None:
    ssul = resolve_config({"recipe": "ssul", "model": "deeplabv3_resnet50"})
    assert (ssul.optimizer, ssul.lr, ssul.backbone_lr, ssul.loss_type) == ("sgd", 0.01, 0.001, "bce")  # model, recipe
    mib = resolve_config({"recipe": "mib", "model": "deeplabv3_resnet50", "lr_incremental": 0.002})
    assert (mib.backbone_lr, mib.lr_incremental) == (None, 0.002)  # recipe over model, user over recipe
    assert resolve_config({"recipe": "finetune"}).optimizer == "adam"  # ERFNet: Klingner's settings
    with pytest.raises(ConfigError, match="batch_size: expected a number, got True"):
        resolve_config({"batch_size": True})


def _code_only(path: Path) -> str:
    """The module's code without comments and docstrings."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.unparse(tree)


@pytest.mark.parametrize("recipe", [r for r in list_recipes() if r != "toy-penalty"])
def test_each_method_is_named_in_at_most_two_files(recipe: str) -> None:
    word = re.compile(rf"\b{re.escape(recipe)}\b", re.IGNORECASE)
    files = sorted(str(p.relative_to(LLSEG)) for p in LLSEG.rglob("*.py") if word.search(_code_only(p)))
    assert 1 <= len(files) <= 2, files


def test_no_recipe_tests_model_names() -> None:
    pattern = re.compile(r"startswith\(\s*[\"'](deeplab|erfnet)")
    assert not [p for p in LLSEG.rglob("*.py") if pattern.search(p.read_text())]


def test_shipped_algorithm_files_name_registered_recipes() -> None:
    root = LLSEG.parent
    for path in [*root.glob("testalgorithms/*.yaml"), *root.glob("examples/*/*/testalgorithms/*.yaml")]:
        modules = yaml.safe_load(path.read_text())["algorithm"]["modules"]
        hyperparameters = {k: v["values"] for item in modules[0].get("hyperparameters", []) for k, v in item.items()}
        for recipe in hyperparameters["recipe"]:
            assert recipe in list_recipes(), path
