"""``llseg make-jobs``: write a ready Ianvs job for every split preset from one hand-written job per dataset.

Each :class:`JobFamily` names a hand-written job (benchmarkingjob, testenv and testalgorithms
YAMLs for its ``template`` split, e.g. VOC 15-1 with each paper's settings). For every other split
of the family, :func:`generate` derives ``<folder>/splits/<split>/``::

    benchmarkingjob.yaml                          the template job, paths and names moved to the split
    testenv_<split>_<tag>.yaml                    index files data/<split>/..., incremental_rounds = steps
    testalgorithms/<model>_<recipe>_<split>_<tag>.yaml   the template's file with ``split`` set to the split

Only the split changes: hyperparameters stay the template's (the papers use one setting for all
their VOC, ISPRS or ADE20K splits), except a family's ``overrides``, where an author's script for
that split sets a value of its own. Edit the template, then rerun ``llseg make-jobs``;
``llseg make-jobs --check`` (and the test suite) fails while shipped files differ from what it writes.
"""
from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from llseg.data.labels import get_dataset_info
from llseg.data.splits import (
    PRESETS,
    CityClassIncrementalSpec,
    ClassDomainIncrementalSpec,
    ClassIncrementalSpec,
    DomainIncrementalSpec,
    preset_dataset,
)

SPLITS_DIR = "splits"


@dataclass(frozen=True)
class JobFamily:
    """One hand-written job (``<folder>/<job>``, its testenv ``testenv_<template>_<tag>.yaml`` and
    algorithm files ``testalgorithms/*_<template>_<tag>.yaml``) and the splits derived from it.
    ``prepare`` is the data command, with ``{split}`` for the split name; ``overrides`` maps
    split -> recipe -> {hyperparameter: (value, source)} where the authors' script for that split differs."""

    folder: str
    template: str
    tag: str
    job: str
    splits: tuple[str, ...]
    prepare: str
    overrides: Mapping[str, Mapping[str, Mapping[str, tuple[object, str]]]] = field(default_factory=dict)


def _family_splits(dataset: str, template: str) -> tuple[str, ...]:
    """The presets of ``dataset`` of the template's kind (class- or domain-incremental), the template excluded."""
    domain = isinstance(PRESETS[template], DomainIncrementalSpec)
    return tuple(name for name, spec in PRESETS.items()
                 if preset_dataset(spec) == dataset and name != template and isinstance(spec, DomainIncrementalSpec) == domain
                 and not isinstance(spec, CityClassIncrementalSpec))


FAMILIES: tuple[JobFamily, ...] = (
    JobFamily(
        "examples/voc/lifelong_learning_bench", "voc-15-1", "voc", "benchmarkingjob.yaml", _family_splits("voc", "voc-15-1"),
        "llseg prepare --dataset voc --root <your VOCdevkit/VOC2012> --split {split} --train-list train_aug --out data/{split}",
    ),
    JobFamily(
        "examples/isprs/lifelong_learning_bench", "isprs-2-2-1", "isprs", "benchmarkingjob.yaml",
        _family_splits("isprs", "isprs-2-2-1"),
        "llseg prepare --dataset isprs --root <folder holding potsdam/ and vaihingen/> --split {split} --patch-size 600 "
        "--out data/{split}",
    ),
    JobFamily(
        "examples/cityscapes/lifelong_learning_bench", "cityscapes-domain-11-5", "cityscapes",
        "benchmarkingjob_cityscapes-domain-11-5.yaml", _family_splits("cityscapes", "cityscapes-domain-11-5"),
        "llseg prepare --dataset cityscapes --root <your Cityscapes> --split {split} --out data/{split}",
        {"cityscapes-domain-1-1": {"plop": {"pod_logits_factor": (
            0.001, "PLOP's scripts/cityscapesDomain/plop_cityscapesDomain_1-1.sh")}}},
    ),
    JobFamily(
        "examples/ade20k/lifelong_learning_bench", "ade-100-50", "ade20k", "benchmarkingjob.yaml",
        _family_splits("ade20k", "ade-100-50"),
        "llseg prepare --dataset ade20k --root <your ADEChallengeData2016> --split {split} --out data/{split}",
    ),
)


def _token(split: str) -> re.Pattern[str]:
    """``split`` as a whole token (``voc-15-1`` but not the start of ``voc-15-1-disjoint``)."""
    return re.compile(rf"(?<![A-Za-z0-9-]){re.escape(split)}(?![A-Za-z0-9-])")


def describe_steps(split: str) -> str:
    """``"background + classes 1-15, then 16, 17, ..."``-style text for comments."""
    spec = PRESETS[split]
    if isinstance(spec, DomainIncrementalSpec):
        groups = [", ".join(g) if len(g) <= 3 else f"{g[0]} .. {g[-1]} ({len(g)} domains)" for g in spec.tasks]
        return f"domain-incremental, {spec.num_steps} steps, every class in every step: " + "; ".join(
            f"round {t + 1}: {g}" for t, g in enumerate(groups))
    assert isinstance(spec, ClassIncrementalSpec)
    names = get_dataset_info(preset_dataset(spec)).class_names

    def group(classes: list[int]) -> str:
        if len(classes) > 3:
            return f"{names[classes[0]]} .. {names[classes[-1]]} ({len(classes)} classes)"
        return ", ".join(names[k] for k in classes)

    steps = [group(t) for t in spec.tasks]
    if spec.background_id is not None:
        steps[0] = f"{names[spec.background_id]} + {steps[0]}"
    if isinstance(spec, ClassDomainIncrementalSpec):
        steps = [f"{s} on {d}" for s, d in zip(steps, spec.step_domains)]
    return f"{spec.mode}, {spec.num_steps} steps: " + "; ".join(f"round {t + 1}: {s}" for t, s in enumerate(steps))


def _header(family: JobFamily, split: str, what: str) -> str:
    text = (f"GENERATED by `llseg make-jobs` from {family.folder}/{what} (the {family.template} job): do not edit; "
            f"edit the template and rerun `llseg make-jobs`. Split {split}: {describe_steps(split)}.")
    return "".join(f"# {line}\n" for line in textwrap.wrap(text, 116, break_on_hyphens=False))


def _strip_header(text: str) -> str:
    """``text`` without its leading comment lines."""
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)


def _testenv(family: JobFamily, split: str, template_text: str) -> str:
    env = yaml.safe_load(template_text)["testenv"]
    steps = PRESETS[split].num_steps
    metrics = "".join(
        f'    - name: "{m["name"]}"\n' + (f'      url: "{m["url"]}"\n' if "url" in m else "") for m in env["metrics"]
    )
    model_metric = env["model_eval"]["model_metric"]
    return (
        _header(family, split, f"testenv_{family.template}_{family.tag}.yaml")
        + "# Prepare the data first (paths are relative to the repository root, where ianvs / llseg bench runs):\n"
        + f"#   {family.prepare.format(split=split)}\n"
        + "testenv:\n  dataset:\n"
        + "    # Lines \"<image> <full_label> <train_label>\"; fwt_splitting cuts train_index into the rounds.\n"
        + f'    train_index: "data/{split}/train_index.txt"\n'
        + f'    test_index: "data/{split}/test_index.txt"\n'
        + "  model_eval:\n    model_metric:\n"
        + f'      name: "{model_metric["name"]}"\n      url: "{model_metric["url"]}"\n      mode: "{model_metric["mode"]}"\n'
        + f'    threshold: {env["model_eval"]["threshold"]}\n    operator: "{env["model_eval"]["operator"]}"\n'
        + "  metrics:\n"
        + ("    # mIoU over every class on the test images of all domains, and per domain (mIoU_all_<domain>).\n"
           if isinstance(PRESETS[split], DomainIncrementalSpec) else
           "    # old = step 0's classes (with the background where the dataset has one), new = the later steps'\n"
           "    # classes, all = both (class-count weighted), as in the papers' tables.\n")
        + metrics
        + f"  # Rounds 1..{steps} learn the {steps} steps (round 0 trains on the first line only).\n"
        + f"  incremental_rounds: {steps}\n"
    )


def _moved(family: JobFamily, split: str, text: str) -> str:
    """``text`` with the family's paths moved into ``splits/<split>/`` and the template split replaced."""
    here = f"{family.folder}/{SPLITS_DIR}/{split}"
    text = text.replace(f"{family.folder}/testalgorithms/", f"{here}/testalgorithms/")
    text = text.replace(f"{family.folder}/testenv_", f"{here}/testenv_")
    return _token(family.template).sub(split, text)


def _override(body: str, key: str, value: object, source: str) -> str:
    """``body`` with hyperparameter ``key``'s ``values: [...]`` set to ``[value]`` and a comment naming ``source``."""
    pattern = re.compile(rf"(?m)^(\s*)- {re.escape(key)}:\n\s*values: \[.*\]$")
    if not pattern.search(body):
        raise ValueError(f"make-jobs override: the template sets no hyperparameter {key!r}")
    return pattern.sub(lambda m: f"{m.group(1)}# This split: {key} {value} ({source}).\n"
                       f"{m.group(1)}- {key}:\n{m.group(1)}    values: [{value}]", body)


def _algorithm(family: JobFamily, split: str, name: str, template_text: str) -> str:
    body = _token(family.template).sub(split, _strip_header(template_text))
    recipe = yaml.safe_load(body)["algorithm"]["modules"][0]["hyperparameters"]
    recipe_name = next(h["recipe"]["values"][0] for h in recipe if "recipe" in h)
    for key, (value, source) in family.overrides.get(split, {}).get(recipe_name, {}).items():
        body = _override(body, key, value, source)
    spec = PRESETS[split]
    if not isinstance(spec, ClassIncrementalSpec):
        return _header(family, split, f"testalgorithms/{name}") + body
    names = get_dataset_info(preset_dataset(spec)).class_names
    first = [k for k in ([spec.background_id] if spec.background_id is not None else []) + list(spec.tasks[0])]
    step0 = ", ".join(names[k] for k in first) if len(first) <= 4 else f"{names[first[0]]} .. {names[first[-1]]}"
    body = re.sub(r"(?m)^(\s*)# Step 0 = .*$", lambda m: f"{m.group(1)}# Step 0 = {step0} as one class group "
                  "(round 0 trains on one sample).", body)
    return _header(family, split, f"testalgorithms/{name}") + body


def generate(root: Path) -> dict[str, str]:
    """Every generated file: path relative to ``root`` (the repository) -> content."""
    files: dict[str, str] = {}
    for family in FAMILIES:
        folder = root / family.folder
        testenv = (folder / f"testenv_{family.template}_{family.tag}.yaml").read_text(encoding="utf-8")
        job = (folder / family.job).read_text(encoding="utf-8")
        algorithms = sorted((folder / "testalgorithms").glob(f"*_{family.template}_{family.tag}.yaml"))
        for split in family.splits:
            here = f"{family.folder}/{SPLITS_DIR}/{split}"
            files[f"{here}/benchmarkingjob.yaml"] = (
                _header(family, split, family.job)
                + f"# Run from the repository root (or with ianvs -f):\n#   llseg bench -f {here}/benchmarkingjob.yaml\n"
                + _moved(family, split, _strip_header(job))
            )
            files[f"{here}/testenv_{split}_{family.tag}.yaml"] = _testenv(family, split, testenv)
            for path in algorithms:
                name = path.name.replace(f"_{family.template}_", f"_{split}_")
                files[f"{here}/testalgorithms/{name}"] = _algorithm(family, split, path.name, path.read_text(encoding="utf-8"))
    return files


def stale(root: Path) -> list[str]:
    """Generated paths whose shipped file is missing or differs, and shipped files under ``splits/`` that
    :func:`generate` no longer writes."""
    files = generate(root)
    out = [rel for rel, text in files.items() if not (root / rel).is_file() or (root / rel).read_text(encoding="utf-8") != text]
    for family in FAMILIES:
        shipped = (root / family.folder / SPLITS_DIR).rglob("*.yaml")
        out += sorted(p.relative_to(root).as_posix() for p in shipped if p.relative_to(root).as_posix() not in files)
    return out


def write_jobs(root: Path) -> list[str]:
    """Write every generated file under ``root``, delete shipped ones no longer generated; returns what changed."""
    changed = stale(root)
    files = generate(root)
    for rel in changed:
        path = root / rel
        if rel in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[rel], encoding="utf-8")
        else:
            path.unlink()
    return changed
