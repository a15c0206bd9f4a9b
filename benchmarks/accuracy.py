"""Accuracy of llseg's continual methods on synthetic data, and of mixed precision against fp32.

* ``methods``: old/new/all mIoU (and hIoU) after every step for each recipe (``finetune``, ``mib``, ``plop``,
  ``ssul``, ``idec``, ``lag``; ``joint`` as the upper bound), DeepLabV3-MobileNetV3-Large with SGD and poly,
  on a generated dataset prepared as ``--split`` exactly as ``llseg prepare`` does: synthetic objects as
  VOC 15-1 (default) or synthetic aerial tiles as ISPRS 2-2-1 with per-domain scores (``--dataset aerial``).
  Every task trains on its chunk's train part (as under Ianvs) and is scored on the test index after every
  step. Recipes that start from the same step-0 training share one step-0 model (``STEP0_OF``, cached under
  ``--work``), so their differences come from the incremental steps only. ``--pretrain-epochs N`` first
  pretrains the backbone on another synthetic dataset (seed 1; ``llseg pretrain``'s code,
  llseg.methods.pretrain), the role of the papers' ImageNet weights;
  ``--ratios`` adds LAG's data-limited protocol (``data_ratio``) for ``--ratio-recipe``.
* ``precision``: the default job's ``klingner`` configuration (``testalgorithms/erfnet_klingner_cil-3_synthetic-city.yaml``)
  trained with ``llseg train``'s stage loop on the default job's prepared data, per seed and precision
  (fp32 and the precision ``auto`` resolves to), with the seed-paired differences.

Run from the repository root on a quiet machine::

    .venv/bin/python benchmarks/accuracy.py methods      # VOC 15-1 on synthetic objects (30+ min, 2 cores)
    .venv/bin/python benchmarks/accuracy.py methods --pretrain-epochs 30 --epochs 10   # from a pretrained backbone
    .venv/bin/python benchmarks/accuracy.py methods --dataset aerial --epochs 10   # ISPRS 2-2-1, per domain (~15 min)
    .venv/bin/python benchmarks/accuracy.py methods --recipes lag --append   # replace/add rows of the record at --out
    .venv/bin/python benchmarks/accuracy.py precision    # CIL-3 on synthetic city scenes, fp32 vs bf16/fp16 (~8 min)
    .venv/bin/python benchmarks/accuracy.py precision --append --seeds 8,9   # more seeds into the same record
    .venv/bin/python benchmarks/accuracy.py methods --smoke --out /tmp/m.md   # tiny sizes: checks the code path only

``methods`` writes ``benchmarks/METHODS_voc.md`` (objects) or ``benchmarks/METHODS_isprs.md`` (aerial),
``precision`` writes ``benchmarks/PRECISION.md`` (``--out`` to change); both also write their raw scores as
JSON next to the Markdown file, which ``--append`` reads back. Generated data goes to ``--work``.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Every llseg name this script uses (another engineer adapts these when llseg's API moves).
from llseg.data.indexfile import read_index
from llseg.data.isprs.synthetic import generate_aerial_dataset
from llseg.data.labels import ISPRS_DOMAINS
from llseg.data.prepare import prepare
from llseg.data.voc.synthetic import generate_objects_dataset
from llseg.ianvs.metrics import label_domain
from llseg.methods.config import TrainConfig
from llseg.methods.learner import ContinualLearner
from llseg.methods.pretrain import Pretrained, PretrainSettings
from llseg.methods.pretrain import pretrain_backbone as train_backbone
from llseg.methods.registry import canonical_name, get_recipe, list_recipes
from llseg.methods.stages import task_train_rows
from llseg.runtime import resolve_precision

Scores = dict[str, float | None]
Rows = list[tuple[str, str, str]]  # (image, full label, train label) lines of an index
Pairs = list[tuple[str, str]]  # (image, full label) test lines
# The bounds and every registered recipe for datasets with a background (the DeepLabV3 family).
RECIPES = ("finetune", *(r for r in list_recipes() if get_recipe(r).needs_background), "joint")
# Which recipe trains the step-0 model a recipe starts from (any other recipe: its own).
STEP0_OF = {"mib": "finetune", "plop": "finetune", "idec": "lag"}


def step0_of(recipe: str) -> str:
    """The recipe whose step-0 model ``recipe`` starts from."""
    return STEP0_OF.get(recipe, recipe)
# From-scratch CPU settings (the papers' lr 0.01 / backbone 0.001 assume an ImageNet backbone).
# BN momentum 0.1: SSUL's 0.01 barely moves the running statistics in a few hundred iterations.
COMMON = dict(model="deeplabv3_mobilenet_v3_large", model_kwargs={"bn_momentum": 0.1}, dataset="voc", optimizer="sgd",
              lr=0.05, backbone_lr=0.05, weight_decay=1e-4, lr_policy="poly", batch_size=8, scale=(1.0, 1.25),
              jitter=0.0, seed=1234)
# Steps >= 1: MiB/PLOP train everything at lr_incremental; IDEC/LAG train the body (for their
# distillation terms) at backbone_lr with gradients clipped (chosen when they diverged even with clip
# 1.0 on the objects data, before the NaN gradients of the bf16 tap convolutions were found and fixed
# (DenseASPP); not re-measured since); SSUL and finetune keep the step-0 rates (SSUL freezes the body).
STEP_LRS: dict[str, dict[str, Any]] = {"mib": {"lr_incremental": 0.02}, "plop": {"lr_incremental": 0.02},
                                      "idec": {"backbone_lr": 0.005, "grad_clip": 0.1},
                                      "lag": {"backbone_lr": 0.005, "grad_clip": 0.1}}
# With a pretrained backbone (--pretrain-epochs), the papers' ratios: the body at a tenth of the
# head's rate, and steps >= 1 of MiB/PLOP at a tenth of step 0's; nothing is clipped. LAG's body
# (moved by its feature terms only, bce_on_body false) at a hundredth: at a tenth its terms
# diverged (NaN in the first objects step), at 0.0005 they were stable (old/new 0.327/0.073 after it).
# On the aerial data they diverged even at 0.0005 (frozen BatchNorm channels of the small-data
# backbone with gain |γ|/σ up to 69 amplify every body update; IDEC's gentler DADA survives at
# 0.005), so METHODS_isprs.md runs LAG with ``--set lag:kd_on_frozen=true``.
PRETRAINED = dict(backbone_lr=0.005)
STEP_LRS_PRETRAINED: dict[str, dict[str, Any]] = {"mib": {"lr_incremental": 0.005}, "plop": {"lr_incremental": 0.005},
                                                  "lag": {"backbone_lr": 0.0005}}


# ------------------------------------------------------------------------------ llseg calls
def recipe_config(recipe: str, *, epochs: int, size: str | None, split: str, dataset: str, step: int,
                  **extra: Any) -> TrainConfig:
    """The CPU settings above over ``recipe``'s published defaults (``extra`` last; with a
    ``backbone_weights`` in it, the pretrained step rates)."""
    settings = {**COMMON, "recipe": recipe, "epochs": epochs, "input_size": size, "split": split, "dataset": dataset}
    pretrained = "backbone_weights" in extra.get("model_kwargs", {})
    if pretrained:
        settings.update(PRETRAINED)
    if step >= 1:
        settings.update((STEP_LRS_PRETRAINED if pretrained else STEP_LRS).get(recipe, {}))
    return TrainConfig.from_hyperparameters({**settings, **extra}, source=f"accuracy.py {recipe}")


def learn(learner: ContinualLearner, rows: Rows) -> None:
    """One ``learn`` call (one task) on index lines."""
    learner.learn(*(list(column) for column in zip(*rows, strict=True)))


def test_pairs(prepared: Path) -> Pairs:
    """The (image, full label) pairs of a prepared folder's test index."""
    return [(str(r[0]), str(r[1])) for r in read_index(prepared / "test_index.txt", columns=3, check_exists=True)]


def scores(learner: ContinualLearner, test: Pairs, domains: tuple[str, ...] = ()) -> Scores:
    """The learner's table on ``test`` (image, full label) pairs, plus ``<score>_<domain>`` for each domain
    (the samples whose label folder is the domain, as llseg's Ianvs metrics define it)."""
    table = learner.evaluate([i for i, _ in test], [f for _, f in test])
    for domain in domains:
        part = [(i, f) for i, f in test if label_domain(f) == domain]
        if part:
            images, labels = (list(column) for column in zip(*part, strict=True))
            table.update({f"{k}_{domain}": v for k, v in learner.evaluate(images, labels).items()})
    return table


@dataclass(frozen=True)
class Dataset:
    """A generated dataset prepared as ``--split``."""

    summary: Any  # the generator's summary (its str goes into the record)
    prepared: Path  # the ``llseg prepare`` folder
    manifest: Any  # what ``prepare`` returned (its tasks' classes go into the record)


def make_data(args: argparse.Namespace, seed: int) -> Dataset:
    """Generate (``seed``) and prepare the ``--dataset`` as ``--split``."""
    tag = "" if seed == 0 else f"-seed{seed}"
    if args.dataset == "objects":
        data = generate_objects_dataset(args.work / f"objects{tag}", seed=seed, size=args.size_hw, images=args.images,
                                        class_tint=args.tint)
        prepared = args.work / f"objects{tag}-{args.split}"
        return Dataset(data, prepared, prepare("voc", root=data.out, split=args.split, out=prepared))
    data = generate_aerial_dataset(args.work / f"aerial{tag}", seed=seed)
    prepared = args.work / f"aerial{tag}-{args.split}"
    return Dataset(data, prepared, prepare("isprs", root=data.out, split=args.split, out=prepared,
                                           isprs_options={"patch_size": args.size_hw[0]}))


# ---------------------------------------------------------------------------------- methods
def pretrain_backbone(args: argparse.Namespace) -> Pretrained:
    """``llseg pretrain``'s backbone for ``--dataset`` at this run's size (and objects' images and tint), trained
    for ``--pretrain-epochs`` on seed 1 of the generator (llseg.methods.pretrain); reused from ``--work`` when
    a backbone with the same settings is there."""
    settings = PretrainSettings(kind=args.dataset, size=args.size_hw, images=args.images, class_tint=args.tint,
                                epochs=args.pretrain_epochs)
    return train_backbone(settings, args.work / f"backbone-{args.dataset}-{settings.key()}.pth", work=args.work)


@dataclass(frozen=True)
class Step0:
    """A step-0 model that recipes share (see ``STEP0_OF``)."""

    state: dict[str, Any]  # learner.state_dict()
    scores: Scores  # after step 0


class MethodsRun:
    """The trainings of ``methods`` on one prepared dataset: step-0 models, recipes, data_ratio runs.

    ``timings`` collects the seconds of each training (NaN for a step-0 model reused from ``--work``)."""

    def __init__(self, args: argparse.Namespace, prepared: Path, common: dict[str, Any], domains: tuple[str, ...]):
        self.args, self.prepared, self.common, self.domains = args, prepared, common, domains
        self.tasks: list[Rows] = task_train_rows(prepared)
        self.test = test_pairs(prepared)
        self.step0: dict[str, Step0] = {}
        self.timings: dict[str, float] = {}

    def config(self, recipe: str, step: int, **extra: Any) -> TrainConfig:
        sets = self.args.sets
        return recipe_config(recipe, step=step, **self.common, **sets.get("*", {}), **sets.get(recipe, {}), **extra)

    def score(self, learner: ContinualLearner) -> Scores:
        return scores(learner, self.test, self.domains)

    def train_step0(self, base: str) -> None:
        """The step-0 model of ``base``, kept under ``--work`` keyed by its settings so that runs of other
        recipes reuse it."""
        settings = self.config(base, 0).to_dict()
        key = json.dumps([settings, str(self.prepared)], sort_keys=True, default=str).encode()
        saved = self.args.work / f"step0-{self.prepared.name}-{base}-{hashlib.sha256(key).hexdigest()[:12]}.pt"
        if saved.is_file():
            self.step0[base] = Step0(*torch.load(saved, weights_only=False))  # our own file, written below
            self.timings[f"step 0 ({base})"] = float("nan")
        else:
            start = time.perf_counter()
            learner = ContinualLearner(self.config(base, 0))
            learn(learner, self.tasks[0])
            self.step0[base] = Step0(copy.deepcopy(learner.state_dict()), self.score(learner))
            self.timings[f"step 0 ({base})"] = time.perf_counter() - start
            torch.save([self.step0[base].state, self.step0[base].scores], saved)
        print(f"step 0 ({base}): {brief(self.step0[base].scores)}", flush=True)

    def continual(self, recipe: str, **extra: Any) -> list[Scores]:
        """Steps >= 1 of ``recipe`` from its step-0 model: the scores after every step, step 0 first."""
        step0 = self.step0[step0_of(recipe)]
        learner = ContinualLearner(self.config(recipe, 1, **extra))
        learner.load_state_dict(copy.deepcopy(step0.state))
        curve = [step0.scores]
        for rows in self.tasks[1:]:
            learn(learner, rows)
            curve.append(self.score(learner))
        return curve

    def joint(self) -> list[Scores]:
        """One training on every task's train images with full labels (the ``joint`` recipe's last stage)."""
        learner = ContinualLearner(self.config("joint", 0))
        learn(learner, list(dict.fromkeys((i, f, f) for rows in self.tasks for i, f, _ in rows)))
        return [self.score(learner)]

    def recipes(self, recipes: list[str]) -> dict[str, list[Scores]]:
        results: dict[str, list[Scores]] = {}
        for recipe in recipes:
            start = time.perf_counter()
            results[recipe] = self.joint() if recipe == "joint" else self.continual(recipe)
            self.timings[recipe] = time.perf_counter() - start
            print(f"{recipe}: {brief(results[recipe][-1])}", flush=True)
        return results

    def ratios(self, recipe: str, ratios: list[float], results: dict[str, list[Scores]]) -> dict[str, list[Scores]]:
        """``recipe`` with each ``data_ratio`` (1.0: its run in ``results`` if there is one)."""
        out: dict[str, list[Scores]] = {}
        for ratio in ratios:
            start = time.perf_counter()
            if ratio != 1.0:
                out[str(ratio)] = self.continual(recipe, data_ratio=ratio)
            else:
                out[str(ratio)] = results.get(recipe) or self.continual(recipe)
            self.timings[f"{recipe} data_ratio {ratio}"] = time.perf_counter() - start
            print(f"{recipe} data_ratio {ratio}: {brief(out[str(ratio)][-1])}", flush=True)
        return out


def run_methods(args: argparse.Namespace) -> dict[str, Any]:
    """Train and score ``--recipes`` (and the data_ratio runs): the JSON record of ``methods``."""
    data = make_data(args, seed=0)
    if args.dataset == "objects":
        common: dict[str, Any] = dict(size=args.size, split=args.split, dataset="voc")
        domains: tuple[str, ...] = ()
    else:
        common = dict(size=None, split=args.split, dataset="isprs")
        domains = ISPRS_DOMAINS
    pretrained: dict[str, Any] = {}
    if args.pretrain_epochs:
        backbone = pretrain_backbone(args)
        pretrained = {"epochs": args.pretrain_epochs, "scores": backbone.scores, "seconds": backbone.seconds}
        print(f"pretrained backbone ({backbone.seconds / 60:.1f} min): {brief(backbone.scores)}", flush=True)
        common["model_kwargs"] = {**COMMON["model_kwargs"], "backbone_weights": str(backbone.path)}
    common["epochs"] = args.epochs
    run = MethodsRun(args, data.prepared, common, domains)
    record = {"dataset": args.dataset, "split": args.split, "sets": args.sets, "domains": list(domains),
              "tasks": [list(t.classes) for t in data.manifest.tasks],
              "train_images": [len(dict.fromkeys(rows)) for rows in run.tasks], "test_images": len(run.test),
              "pretrained": pretrained}
    if args.append:  # refuse other settings now, not after the training
        check_appendable(args.out.with_suffix(".json"), record)
    for base in sorted({step0_of(r) for r in args.recipes if r != "joint"}):
        run.train_step0(base)
    results = run.recipes(args.recipes)
    ratios = run.ratios(args.ratio_recipe, args.ratios, results)
    return {**record, "data": str(data.summary).replace(str(args.work), "<--work>").splitlines(),  # no machine paths
            "results": results, "ratios": ratios, "seconds": run.timings}


def check_appendable(previous: Path, out: dict[str, Any]) -> dict[str, Any]:
    """The record in ``previous`` (returned) if it describes the same data, split, pretraining and extra
    settings as ``out`` (whose results may still be missing); else exit with the differences."""
    old = read_record(previous)
    same = ("dataset", "split", "tasks", "train_images", "test_images")  # "data" also holds the generation time
    differ = [k for k in same if old.get(k) != json.loads(json.dumps(out[k], default=str))]
    if old["sets"].get("*") != out["sets"].get("*"):
        differ.append("--set for every recipe")
    if differ or bool(old.get("pretrained")) != bool(out["pretrained"]) or (
            old.get("pretrained") and old["pretrained"]["epochs"] != out["pretrained"]["epochs"]):
        raise SystemExit(f"--append: {previous} was made with other settings ({', '.join(differ) or 'pretraining'}); "
                         "use another --out")
    return old


def read_record(path: Path) -> dict[str, Any]:
    """The JSON record ``--append`` adds to; exit if there is none."""
    if not path.is_file():
        raise SystemExit(f"--append: {path} does not exist; run without --append first")
    return json.loads(path.read_text())


def appended(previous: Path, out: dict[str, Any]) -> dict[str, Any]:
    """``out``'s recipes (and data_ratio runs) added to the record in ``previous`` (see
    :func:`check_appendable`); a recipe in both takes ``out``'s scores."""
    old = check_appendable(previous, out)
    out["data"] = old["data"]
    for key in ("results", "ratios", "seconds"):
        out[key] = {**old[key], **out[key]}
    out["commands"] = old.get("commands", [])
    out["sets"] = {**old["sets"], **out["sets"]}  # per recipe: the run that made its row
    out["results"] = {r: out["results"][r] for r in RECIPES if r in out["results"]}
    return out


def brief(s: Scores) -> str:
    return " ".join(f"{k} {fmt(s.get(k))}" for k in ("mIoU_old", "mIoU_new", "mIoU_all", "hIoU"))


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


# Score columns of the methods tables: (key, heading); per domain, the first three again.
COLUMNS = [("mIoU_old", "old"), ("mIoU_new", "new"), ("mIoU_all", "all"), ("hIoU", "hIoU")]


def score_columns(domains: list[str]) -> list[tuple[str, str]]:
    return COLUMNS + [(f"{k}_{d}", f"{name} {d}") for d in domains for k, name in COLUMNS[:3]]


def methods_intro(args: argparse.Namespace, out: dict[str, Any]) -> list[str]:
    """The section heading and the paragraph that states the data, model and settings."""
    if args.dataset == "objects":
        data = f"synthetic objects ({args.size}, class tint {args.tint}, {args.images} train images)"
    else:
        data = (f"synthetic aerial tiles cut into {args.size} patches (step 0 on Potsdam RGB, later steps on "
                "Vaihingen IRRG)")
    pre = out["pretrained"]
    if pre:
        origin = (f"with a backbone pretrained for {pre['epochs']} epochs ({pre['seconds'] / 60:.1f} min) with "
                  f"cross-entropy on another synthetic dataset (seed 1; "
                  f"{'every class' if args.dataset == 'objects' else 'Potsdam only'}; its own test mIoU "
                  f"{fmt(pre['scores']['mIoU_all'])}), body lr {PRETRAINED['backbone_lr']}")
        steps = STEP_LRS_PRETRAINED
    else:
        origin, steps = "from scratch", STEP_LRS
    return [
        f"## Continual methods, {args.split} on {data}",
        "",
        f"DeepLabV3-MobileNetV3-Large {origin}, {args.epochs} epochs per step, batch 8, SGD lr 0.05 (steps >= 1: "
        f"{', '.join(f'{r} {v}' for r, v in steps.items())}), poly. Train images per task {out['train_images']}, "
        f"{out['test_images']} test images. mIoU as fractions after the last step; old = step-0 classes (with "
        "background/impervious), new = the later steps' classes, all = every class (classes not learned yet count "
        "as 0 when labelled, docs/methods.md §9.3); hIoU = harmonic mean of old and new."
        + (" Per-domain columns score the test images of one domain only." if out["domains"] else "")
        + (f" Extra settings (`--set`): {out['sets']}." if out["sets"] else ""),
        "",
    ]


def final_scores_table(out: dict[str, Any]) -> list[str]:
    """Per recipe: step-0 old mIoU, the scores after the last step, minutes."""
    columns = score_columns(out["domains"])
    lines = ["| recipe | step-0 old | " + " | ".join(name for _, name in columns) + " | minutes |",
             "|---|---|" + "---|" * (len(columns) + 1)]
    for recipe, curve in out["results"].items():
        first = "–" if recipe == "joint" else fmt(curve[0]["mIoU_old"])
        lines.append(f"| {recipe} | {first} | " + " | ".join(fmt(curve[-1].get(k)) for k, _ in columns)
                     + f" | {out['seconds'][recipe] / 60:.1f} |")
    return lines


def curve_table(out: dict[str, Any]) -> list[str]:
    """mIoU_all after each step, per continual recipe."""
    steps = len(out["train_images"])
    lines = ["", "mIoU_all after each step (step 0 first):", "",
             "| recipe | " + " | ".join(f"step {k}" for k in range(steps)) + " |", "|---|" + "---|" * steps]
    for recipe, curve in out["results"].items():
        if recipe != "joint":
            lines.append(f"| {recipe} | " + " | ".join(fmt(s["mIoU_all"]) for s in curve) + " |")
    return lines


def ratios_table(args: argparse.Namespace, out: dict[str, Any]) -> list[str]:
    if not out["ratios"]:
        return []
    columns = score_columns(out["domains"])
    lines = ["", f"### Data-limited steps ({args.ratio_recipe}, `data_ratio`: share of each step >= 1's train "
                 "images, step 0 complete; LAG Table 11's protocol)", "",
             "| data_ratio | " + " | ".join(name for _, name in columns) + " |", "|---|" + "---|" * len(columns)]
    for ratio, curve in out["ratios"].items():
        lines.append(f"| {ratio} | " + " | ".join(fmt(curve[-1].get(k)) for k, _ in columns) + " |")
    return lines


def step0_line(out: dict[str, Any]) -> list[str]:
    step0 = ", ".join(f"{k} {'reused' if v != v else f'{v / 60:.1f}'}" for k, v in out["seconds"].items()
                      if k.startswith("step 0"))
    return ["", f"Step-0 trainings (minutes): {step0}."]


def methods_markdown(args: argparse.Namespace, out: dict[str, Any]) -> list[str]:
    return [*methods_intro(args, out), *final_scores_table(out), *curve_table(out), *ratios_table(args, out),
            *step0_line(out)]


# -------------------------------------------------------------------------------- precision
def precision_job() -> tuple[dict[str, Any], Path]:
    """The default job's ``klingner`` hyperparameters (first values) and its prepared data folder."""
    job = yaml.safe_load((ROOT / "testalgorithms" / "erfnet_klingner_cil-3_synthetic-city.yaml").read_text())
    hyper = {k: v["values"][0] for item in job["algorithm"]["modules"][0]["hyperparameters"] for k, v in item.items()}
    testenv = yaml.safe_load((ROOT / "testenv" / "testenv_cil-3_synthetic-city.yaml").read_text())
    prepared = ROOT / Path(testenv["testenv"]["dataset"]["train_index"]).parent
    if not (prepared / "manifest.json").is_file():
        raise SystemExit(f"{prepared} is not prepared: run 'python3 quickstart.py bench' (or its synth + prepare) "
                         "first")
    return hyper, prepared


def train_precision(hyper: dict[str, Any], precision: str, seed: int, epochs: int | None, tasks: list[Rows],
                    test: Pairs) -> dict[str, Any]:
    """One row of the precision record: every task in order, scored after the last."""
    config = TrainConfig.from_hyperparameters(
        {**hyper, "precision": precision, "seed": seed, "epochs": epochs or hyper["epochs"]},
        source="accuracy.py precision")
    learner = ContinualLearner(config)
    start = time.perf_counter()
    for rows in tasks:
        learn(learner, rows)
    final = scores(learner, test)
    print(f"{precision} seed {seed}: {brief(final)}", flush=True)
    return {"seed": seed, "scores": final, "seconds": time.perf_counter() - start}


def run_precision(args: argparse.Namespace) -> dict[str, Any]:
    """Train every ``--precisions`` x ``--seeds``: the JSON record of ``precision`` (with ``--append``,
    merged into the one at ``--out``)."""
    hyper, prepared = precision_job()
    tasks, test = task_train_rows(prepared), test_pairs(prepared)
    auto = resolve_precision("auto", torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    previous = precision_record(args.out.with_suffix(".json"), hyper, auto) if args.append else None
    results: dict[str, list[dict[str, Any]]] = {}
    for precision in dict.fromkeys(auto if p == "auto" else p for p in args.precisions):
        for seed in args.seeds:
            results.setdefault(precision, []).append(train_precision(hyper, precision, seed, args.epochs, tasks, test))
    out = {"hyperparameters": hyper, "auto": auto, "seeds": args.seeds, "results": results}
    return out if previous is None else merge_precision(previous, results, args.seeds)


def merge_precision(previous: dict[str, Any], results: dict[str, list[dict[str, Any]]],
                    seeds: list[int]) -> dict[str, Any]:
    """``results`` added to the record ``previous``; a seed run again replaces its row."""
    for precision, rows in results.items():
        by_seed = {r["seed"]: r for r in previous["results"].get(precision, [])}
        previous["results"][precision] = list({**by_seed, **{r["seed"]: r for r in rows}}.values())
    previous["seeds"] = list(dict.fromkeys([*previous["seeds"], *seeds]))
    return previous


def precision_record(path: Path, hyper: dict[str, Any], auto: str) -> dict[str, Any]:
    """``precision --append``: the record in ``path`` if it was made with the same job settings and the
    same ``auto`` precision; else exit naming the difference (checked before any training)."""
    old = read_record(path)
    # records made before the recipe was renamed say "cil"
    if "recipe" in old["hyperparameters"]:
        old["hyperparameters"]["recipe"] = canonical_name(old["hyperparameters"]["recipe"])
    if old["hyperparameters"] != json.loads(json.dumps(hyper)) or old["auto"] != auto:
        differ = sorted(k for k in {*hyper, *old["hyperparameters"]} if old["hyperparameters"].get(k) != hyper.get(k))
        raise SystemExit(f"--append: {path} was made with other settings ({', '.join(differ) or 'auto precision'}); "
                         "use another --out")
    return old


def precision_markdown(out: dict[str, Any]) -> list[str]:
    runs = out["results"]
    first = next(iter(runs.values()))[0]["scores"]
    keys = [k for k in first if k.startswith("mIoU") and first[k] is not None]

    def mean(precision: str, key: str) -> float:
        return sum(r["scores"][key] for r in runs[precision]) / len(runs[precision])

    lines = ["## Mixed precision against fp32 (CIL-3, synthetic city, the default job's `klingner` settings, "
             "formerly named `cil`)", "",
             "Scores after the last stage, one row per seed (mIoU as fractions; a point = 0.01); "
             f"seeds {out['seeds']}.",
             "", "| precision | seed | " + " | ".join(keys) + " | minutes |", "|---|---|" + "---|" * (len(keys) + 1)]
    for precision, rows in runs.items():
        for r in rows:
            lines.append(f"| {precision} | {r['seed']} | " + " | ".join(fmt(r["scores"][k]) for k in keys)
                         + f" | {r['seconds'] / 60:.1f} |")
    if "fp32" in runs and out["auto"] in runs and out["auto"] != "fp32":
        auto = out["auto"]
        worst = max(abs(mean(auto, k) - mean("fp32", k)) for k in keys)
        spread = max(max(r["scores"][k] for r in runs["fp32"]) - min(r["scores"][k] for r in runs["fp32"])
                     for k in keys)
        lines += ["", f"Largest difference of the seed means, {auto} − fp32: **{100 * worst:.2f} points** (target: "
                      f"within 1 point). For scale, the largest fp32 seed-to-seed spread: {100 * spread:.2f} points."]
        lines += paired_table(runs["fp32"], runs[auto], keys, f"{auto} − fp32", "only the precision differs")
    for label, rows in out.get("variants", {}).items():
        if "fp32" in runs:
            lines += ["", f"### Variant: {label}"]
            lines += paired_table(runs["fp32"], rows, keys, "variant − fp32",
                                  "the variant's rows are not in the table above")
    return lines


def paired_table(base: list[dict[str, Any]], other: list[dict[str, Any]], keys: list[str], what: str,
                 note: str) -> list[str]:
    """Markdown: per key, mean ± standard error (in points) of ``other − base`` over the seeds both ran."""
    paired = {r["seed"]: r["scores"] for r in base}
    pairs = [(paired[r["seed"]], r["scores"]) for r in other if r["seed"] in paired]
    if len(pairs) < 2:
        return []

    def cell(key: str) -> str:
        diffs = [100 * (o[key] - b[key]) for b, o in pairs]
        return f"{statistics.mean(diffs):+.2f} ± {statistics.stdev(diffs) / len(diffs) ** 0.5:.2f}"

    return ["", f"Paired by seed ({len(pairs)} seeds; same data order and initialisation; {note}): mean of {what} "
                "per seed ± its standard error, in points.", "",
            "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys), "| " + " | ".join(cell(k) for k in keys) + " |"]


# ------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with ``methods``' and ``precision``'s lists parsed and defaults resolved."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("methods", help="old/new/all mIoU per continual method on synthetic objects")
    m.add_argument("--dataset", choices=["objects", "aerial"], default="objects",
                   help="objects: VOC-like (llseg synth --kind objects); aerial: ISPRS-like, per-domain scores")
    m.add_argument("--split", default=None, help="split preset (default voc-15-1 for objects, isprs-2-2-1 for aerial)")
    m.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, from {', '.join(RECIPES)}")
    m.add_argument("--size", default=None, help="objects: image and input size HxW (default 128x128); aerial: "
                   "square patch size (default 96x96)")
    m.add_argument("--epochs", type=int, default=20)
    m.add_argument("--pretrain-epochs", type=int, default=0,
                   help="first pretrain the backbone for this many epochs on another synthetic dataset (seed 1) "
                        "and start every recipe from it, with the papers' learning-rate ratios (0: from scratch)")
    m.add_argument("--images", type=int, default=400, help="train images of the generated dataset")
    m.add_argument("--tint", type=float, default=0.7, help="class_tint of the objects generator")
    m.add_argument("--ratios", default="1.0,0.5,0.25", help="data_ratio values for --ratio-recipe ('' for none)")
    m.add_argument("--ratio-recipe", default="lag")
    m.add_argument("--work", type=Path, default=ROOT / "data" / "accuracy", help="folder for the generated data")
    m.add_argument("--set", dest="sets", action="append", default=[], metavar="[RECIPE:]KEY=VALUE",
                   help="extra hyperparameter for every recipe, or for one (e.g. ssul:loss_type=ce); repeatable")
    m.add_argument("--smoke", action="store_true", help="32x32, 120 images, 1 epoch: checks the code path only")
    m.add_argument("--append", action="store_true", help="add these recipes to the table already at --out (same "
                   "data and settings; its JSON is read), e.g. after changing one recipe")
    m.add_argument("--out", type=Path, default=None, help="default: benchmarks/METHODS_voc.md (objects) or "
                   "METHODS_isprs.md (aerial)")
    p = sub.add_parser("precision", help="CIL-3 mIoU in fp32 and in the precision 'auto' resolves to")
    p.add_argument("--epochs", type=int, default=None, help="override the job's epochs (default: the job's)")
    p.add_argument("--precisions", default="fp32,auto", help="comma-separated precisions to train (auto: what "
                   "precision auto resolves to here); the comparison needs fp32 and one other")
    p.add_argument("--seeds", default="1234,1", help="comma-separated seeds, each trained in every precision")
    p.add_argument("--append", action="store_true", help="add these seeds (and precisions) to the record already "
                   "at --out (same job settings; its JSON is read; a seed run again replaces its row)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "PRECISION.md")
    args = parser.parse_args(argv)

    if args.command == "methods":
        args.split = args.split or {"objects": "voc-15-1", "aerial": "isprs-2-2-1"}[args.dataset]
        args.size = args.size or {"objects": "128x128", "aerial": "96x96"}[args.dataset]
        args.out = args.out or ROOT / "benchmarks" / f"METHODS_{'voc' if args.dataset == 'objects' else 'isprs'}.md"
        if args.smoke:
            args.size, args.images, args.epochs = ("32x32" if args.dataset == "objects" else "64x64"), 120, 1
        args.recipes = [r for r in args.recipes.split(",") if r]
        unknown = sorted(set(args.recipes) - set(RECIPES))
        if unknown:
            parser.error(f"unknown recipes {unknown}; valid: {', '.join(RECIPES)}")
        args.ratios = [float(r) for r in args.ratios.split(",") if r]
        args.sets = parse_sets(args.sets)
        args.size_hw = tuple(int(v) for v in args.size.lower().split("x"))
    else:
        args.seeds = [int(v) for v in args.seeds.split(",") if v]
        args.precisions = [v for v in args.precisions.split(",") if v]
    return args


def parse_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    """``[recipe:]key=value`` (YAML value) -> {recipe or "*": {key: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, _, value = item.partition("=")
        recipe, _, key = name.rpartition(":")
        out.setdefault(recipe or "*", {})[key] = yaml.safe_load(value)
    return out


def write_outputs(args: argparse.Namespace, argv: list[str] | None, out: dict[str, Any], body: list[str]) -> None:
    """The Markdown file at ``--out`` (a header naming the commands that made it, then ``body``) and the
    JSON record next to it; ``out["commands"]`` gains this command."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(argv if argv is not None else sys.argv[1:])
    if args.command == "methods":
        command = command.replace(str(args.work), "<work>")  # no machine paths in the record
    out["commands"] = [*out.get("commands", []), f"benchmarks/accuracy.py {command}"]
    header = [f"# llseg accuracy: {args.command}", "",
              f"Written by `{'`, then `'.join(out['commands'])}` (last run {stamp}); "
              f"{platform.processor() or platform.machine()}, torch {torch.__version__} with "
              f"{torch.get_num_threads()} threads.", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header + body) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "methods":
        out = run_methods(args)
        if args.append:
            out = appended(args.out.with_suffix(".json"), out)
        body = methods_markdown(args, out)
    else:
        out = run_precision(args)
        body = precision_markdown(out)
    write_outputs(args, argv, out, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
