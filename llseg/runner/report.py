"""Per-test-case reports beyond Ianvs: ``results.json`` and ``results.md`` in the case folder.

The results matrix ``R`` has rows = after training rounds 1..R and columns = eval sets 1..R,
from the ``"all"`` accuracy of the MATRIX; GEM metrics come from :mod:`llseg.metrics.continual`
(FWT only when defined), next to Ianvs' own BWT/FWT, which also use round 0. ``class_iou`` is the
IoU per class of the final test predictions (``None`` when they are not llseg prediction records).
"""
from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from llseg.atomic import write_text
from llseg.metrics.continual import ianvs_bwt, ianvs_fwt, summarize
from llseg.runner.paradigm import LifelongResult

JSON_NAME = "results.json"
MD_NAME = "results.md"


def jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays converted, NaN/inf written as None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _gem(matrix: list[list[float]]) -> dict[str, Any]:
    try:
        summary = summarize(matrix)
    except ValueError as exc:  # e.g. a NaN score where a formula needs one
        return {"undefined": str(exc)}
    names = {"acc": "ACC", "bwt": "BWT", "fwt": "FWT", "forgetting": "forgetting", "forgetting_per_step": "forgetting_per_step"}
    return {label: summary[key] for key, label in names.items() if summary[key] is not None}


def build_report(
    *,
    benchmark: str,
    algorithm: str,
    case_dir: str,
    modules: dict[str, str],
    hyperparameters: dict[str, dict[str, Any]],
    seed: int | None,
    dataset: str | None,
    result: LifelongResult,
    metrics: dict[str, Any],
    class_iou: dict[str, float | None] | None,
    wall_time_s: float,
    finished: str,
    versions: dict[str, str],
) -> dict[str, Any]:
    """The content of ``results.json`` (fixed key order); ``test_predictions`` is ``test_res``, as str."""
    rows = result.matrix["all"]
    matrix = [[float(entry["accuracy"]) for entry in row] for row in rows[1:]]
    return {
        "benchmark": benchmark,
        "algorithm": algorithm,
        "test_case": os.path.basename(case_dir),
        "url": case_dir,
        "paradigm": "lifelonglearning",
        "modules": modules,
        "hyperparameters": hyperparameters,
        "seed": seed,
        "dataset": dataset,
        "incremental_rounds": len(matrix),
        "matrix": {
            "metric": "accuracy",
            "rows": "after training rounds 1..R",
            "columns": "eval sets 1..R",
            "round0": [float(entry["accuracy"]) for entry in rows[0]],
            "values": matrix,
        },
        "gem": _gem(matrix),
        "ianvs": {"BWT": ianvs_bwt(rows), "FWT": ianvs_fwt(rows)},
        "task_avg_acc": result.task_avg_acc["accuracy"],
        "metrics": metrics,
        "class_iou": class_iou,
        "test_predictions": [str(p) for p in result.test_res],
        "wall_time_s": round(wall_time_s, 3),
        "finished": finished,
        "versions": versions,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def render_markdown(report: dict[str, Any]) -> str:
    """``results.md``: hyperparameters, the results matrix, GEM vs Ianvs metrics, testenv metrics."""
    out = [
        f"# {report['benchmark']} / {report['algorithm']} / {report['test_case']}",
        "",
        f"Seed: {_fmt(report['seed'])}. Wall time: {report['wall_time_s']:.1f} s. Finished: {report['finished']}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".",
        "",
        "## Hyperparameters",
        "",
        "| module | name | hyperparameter | value |",
        "|---|---|---|---|",
    ]
    for kind, name in report["modules"].items():
        hps = report["hyperparameters"].get(kind) or {"": ""}
        out += [f"| {kind} | {name} | {hp} | {value} |" for hp, value in hps.items()]
    rounds = report["incremental_rounds"]
    m = report["matrix"]
    out += [
        "",
        f"## Results matrix ({m['metric']}: rows = after round i, columns = eval set j)",
        "",
        "| after round | " + " | ".join(f"eval set {j}" for j in range(1, rounds + 1)) + " |",
        "|---" * (rounds + 1) + "|",
        "| 0 (Ianvs baseline row) | " + " | ".join(_fmt(v) for v in m["round0"]) + " |",
    ]
    out += [f"| {i} | " + " | ".join(_fmt(v) for v in row) + " |" for i, row in enumerate(m["values"], 1)]
    gem, ianvs = report["gem"], report["ianvs"]
    out += ["", "## Continual-learning metrics", ""]
    if "undefined" in gem:
        out += [f"GEM metrics undefined: {gem['undefined']}", ""]
    out += [
        "| metric | GEM (paper convention) | Ianvs |",
        "|---|---|---|",
        f"| ACC | {_fmt(gem.get('ACC'))} | – |",
        f"| BWT | {_fmt(gem.get('BWT'))} | {_fmt(ianvs['BWT'])} |",
        f"| FWT | {_fmt(gem.get('FWT'))} | {_fmt(ianvs['FWT'])} |",
        f"| forgetting | {_fmt(gem.get('forgetting'))} | – |",
        "",
        "GEM FWT needs an untrained-model baseline and is shown only when defined; Ianvs' FWT uses round 0 instead.",
        "",
        "## Metrics (testenv)",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    out += [f"| {k} | {'see results.json' if isinstance(v, dict) else _fmt(v)} |" for k, v in report["metrics"].items()]
    if report["class_iou"] is not None:
        out += ["", "## IoU per class (test set, after the last round)", "", "| class | IoU |", "|---|---|"]
        out += [f"| {name} | {_fmt(v)} |" for name, v in report["class_iou"].items()]
    return "\n".join(out) + "\n"


def write_report(case_dir: str, report: dict[str, Any]) -> None:
    """Write ``results.json`` and ``results.md`` into ``case_dir``."""
    report = jsonable(report)
    write_text(os.path.join(case_dir, MD_NAME), render_markdown(report))
    write_text(os.path.join(case_dir, JSON_NAME), json.dumps(report, indent=2) + "\n")  # last: marks the case finished
