"""Run a benchmarkingjob YAML without Ianvs: validate, build test cases, run them, write the rank.

Mirrors ``BenchmarkingJob.run`` (docs/ianvs-sedna.md §1.1) for the lifelong ``no-inference`` mode,
with one difference on purpose: a failing test case is logged (traceback in ``error.log`` in its
folder) and the others still run and reach the rank files.
"""
from __future__ import annotations

import copy
import logging
import os
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from llseg.errors import ConfigError
from llseg.ianvs import registry
from llseg.metrics.continual import ianvs_bwt, ianvs_fwt, ianvs_matrix
from llseg.report.build import write_workspace_report
from llseg.report.capture import SAMPLE_COUNT, capture_case, versions
from llseg.runner.config import BASEMODEL, PARADIGM, SEDNA_MODULES, SYSTEM_METRICS, Algorithm, Job, load_job
from llseg.runner.dataset import final_metric_y, pick_samples, process_index
from llseg.runner.grid import combine
from llseg.runner.loader import check_unique, load_module, resolve
from llseg.runner.paradigm import LifelongResult, run_no_inference
from llseg.runner.rank import RankRow, format_table, write_rank
from llseg.runner.report import build_report, write_report
from llseg.runner.splitting import fwt_splitting

log = logging.getLogger("llseg.runner")

ERROR_LOG = "error.log"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class Resolved:
    """Classes and functions the job's YAML names, after importing its module files."""

    estimators: dict[str, type]
    model_metric: Callable[..., Any]
    metrics: dict[str, Callable[..., Any]]


@dataclass(frozen=True)
class Case:
    """One test case: an algorithm and one hyperparameter dict per module."""

    algorithm: Algorithm
    hyperparameters: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class CaseOutcome:
    """How a test case ended: its metrics, or the error (traceback in ``<case_dir>/error.log``)."""

    algorithm: str
    case_dir: str
    metrics: dict[str, Any] | None
    error: str | None
    wall_time_s: float


@dataclass(frozen=True)
class JobResult:
    """All test cases of a job, the rank files and the report files (html, md) written."""

    job: Job
    cases: tuple[CaseOutcome, ...]
    rank_files: tuple[str, ...]
    report_files: tuple[str, ...] = ()

    @property
    def failed(self) -> list[CaseOutcome]:
        return [c for c in self.cases if c.error is not None]


def resolve_job(job: Job) -> Resolved:
    """Import every module file (basemodels first) and resolve registered names; ConfigError if absent."""
    env = job.testenv
    metric_specs = [env.model_metric, *(m for m in env.metrics if m.url is not None)]
    urls = [(str(a.basemodel.url), a.file, a.basemodel.key + ".url") for a in job.algorithms]
    urls += [(str(m.url), m.file, m.key + ".url") for m in metric_specs]
    check_unique(urls)
    estimators = {}
    for alg in job.algorithms:
        base, url = alg.basemodel, str(alg.basemodel.url)
        load_module(url, alg.file, base.key + ".url")
        estimators[alg.name] = resolve(registry.GENERAL, base.name, alg.file, base.key + ".name", url)
        for module in alg.modules:
            if module.type != BASEMODEL:
                # Sedna builds these from {"method": name}; they must be registered by the basemodel file.
                resolve(SEDNA_MODULES[module.type], module.name, alg.file, module.key + ".name", url)
    funcs = {}
    for spec in metric_specs:
        load_module(str(spec.url), spec.file, spec.key + ".url")
        funcs[spec.name] = resolve(registry.GENERAL, spec.name, spec.file, spec.key + ".name", str(spec.url))
    model_metric = funcs.pop(env.model_metric.name)
    if getattr(model_metric, "__name__", None) != "accuracy":
        raise ConfigError(
            f"{env.file}: key '{env.model_metric.key}.name': the model-eval metric function is named "
            f"{getattr(model_metric, '__name__', '?')!r}; Sedna keys scores by the function's __name__ and Ianvs "
            "reads scores['accuracy'], so the function must be named 'accuracy'"
        )
    metrics = {m.name: (model_metric if m.name == env.model_metric.name else funcs[m.name])
               for m in env.metrics if m.name not in SYSTEM_METRICS}
    return Resolved(estimators, model_metric, metrics)


def build_cases(job: Job) -> list[Case]:
    """Test cases in Ianvs' order: algorithms in job order, then the hyperparameter product."""
    return [
        Case(alg, combo)
        for alg in job.algorithms
        for combo in combine([list(m.variants) for m in alg.modules])
    ]


def compute_metrics(job: Job, resolved: Resolved, result: LifelongResult, test_y: np.ndarray) -> dict[str, Any]:
    """Testenv metrics in testenv order, as Ianvs' ``TestCase.compute_metrics`` computes them."""
    system = {
        "MATRIX": lambda: ianvs_matrix(result.matrix),
        "BWT": lambda: ianvs_bwt(result.matrix["all"]),
        "FWT": lambda: ianvs_fwt(result.matrix["all"]),
        "task_avg_acc": lambda: round(result.task_avg_acc["accuracy"], 3),
        "samples_transfer_ratio": lambda: 0.0,  # no-inference infers nothing: round(0 / (0 + 1), 4)
    }
    values: dict[str, Any] = {}
    for spec in job.testenv.metrics:
        if spec.name in system:
            values[spec.name] = system[spec.name]()
        else:
            value = resolved.metrics[spec.name](test_y, result.test_res)
            values[spec.name] = value.item() if isinstance(value, np.generic) else value
    return values


@contextmanager
def _restored_environ() -> Iterator[None]:
    """Undo the environment variables a test case sets (Ianvs leaves them set)."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        os.environ.update(saved)


def _seed(hyperparameters: dict[str, Any], estimator: Any) -> int | None:
    """The seed from the basemodel hyperparameters, else from the estimator's config, if any."""
    if "seed" in hyperparameters:
        return hyperparameters["seed"]
    return getattr(getattr(estimator, "config", None), "seed", None)


def run_case(
    job: Job, resolved: Resolved, case: Case, train_lines: list[str], test_y: np.ndarray, label: str
) -> tuple[CaseOutcome, RankRow | None]:
    """Run one test case in ``<workspace>/<name>/<algorithm>/<uuid1>``; never raises for case errors."""
    alg = case.algorithm
    case_dir = os.path.join(job.output_dir, alg.name, str(uuid.uuid1()))
    os.makedirs(case_dir)
    base_hps = next(hps for m, hps in zip(alg.modules, case.hyperparameters) if m.type == BASEMODEL)
    log.info("%s %s: %s", label, alg.name, case_dir)
    start = time.perf_counter()
    try:
        with _restored_environ():
            env = job.testenv
            pairs = fwt_splitting(train_lines, alg.train_ratio, env.incremental_rounds, os.path.join(case_dir, "dataset"))
            estimator = resolved.estimators[alg.name](**copy.deepcopy(base_hps))
            samples = pick_samples(env.test_index, SAMPLE_COUNT)
            result = run_no_inference(
                estimator, pairs, env.test_index, resolved.model_metric, case_dir, env.threshold, env.operator, samples
            )
            metrics = compute_metrics(job, resolved, result, test_y)
            extras = capture_case(
                case_dir, estimator, samples, result.sample_res, [str(y) for y in test_y], [str(p) for p in result.test_res]
            )
        wall = time.perf_counter() - start
        finished = time.strftime(TIME_FORMAT)
        modules = {m.type: m.name for m in alg.modules}
        report = build_report(
            benchmark=job.name,
            algorithm=alg.name,
            case_dir=case_dir,
            modules=modules,
            hyperparameters={m.type: hps for m, hps in zip(alg.modules, case.hyperparameters) if hps},
            seed=_seed(base_hps, estimator),
            dataset=extras.dataset,
            result=result,
            metrics=metrics,
            class_iou=extras.class_iou,
            wall_time_s=wall,
            finished=finished,
            versions=versions(),
        )
        write_report(case_dir, report)
    except Exception as exc:
        wall = time.perf_counter() - start
        with open(os.path.join(case_dir, ERROR_LOG), "w", encoding="utf-8") as handle:
            handle.write(traceback.format_exc())
        error = f"{type(exc).__name__}: {exc}"
        log.error("%s %s failed after %.1fs: %s (traceback: %s)", label, alg.name, wall, error, os.path.join(case_dir, ERROR_LOG))
        return CaseOutcome(alg.name, case_dir, None, error, wall), None
    log.info("%s %s finished in %.1fs", label, alg.name, wall)
    row = RankRow(
        algorithm=alg.name,
        paradigm=PARADIGM,
        metrics=metrics,
        modules=modules,
        hyperparameters={f"{m.type}-{k}": v for m, hps in zip(alg.modules, case.hyperparameters) for k, v in hps.items()},
        time=finished,
        url=case_dir,
    )
    return CaseOutcome(alg.name, case_dir, metrics, None, wall), row


def _report(job_dir: str) -> tuple[str, ...]:
    """Write the job's report; a failure is logged, since the rank and case results already stand."""
    try:
        paths = write_workspace_report(job_dir)
    except Exception as exc:  # the report is rebuildable: never lose a finished benchmark over it
        log.error("report not written (%s: %s); rebuild it with 'llseg report %s'", type(exc).__name__, exc, job_dir)
        return ()
    log.info("report written: %s", ", ".join(map(str, paths)))
    return tuple(map(str, paths))


def run_job(path: str) -> JobResult:
    """Run the benchmarkingjob at ``path`` from the repository root (the CWD); print the leaderboard."""
    job = load_job(path)
    resolved = resolve_job(job)
    train_lines = process_index(job.testenv.train_index)
    test_y = final_metric_y(job.testenv.test_index)
    cases = build_cases(job)
    log.info("benchmark %s: %d test case(s), %d rounds each, output in %s",
             job.name, len(cases), job.testenv.incremental_rounds, job.output_dir)
    outcomes, rows = [], []
    for i, case in enumerate(cases, 1):
        outcome, row = run_case(job, resolved, case, train_lines, test_y, f"[{i}/{len(cases)}]")
        outcomes.append(outcome)
        if row is not None:
            rows.append(row)
    files: tuple[str, ...] = ()
    if rows:
        header, selected, written = write_rank(
            os.path.join(job.output_dir, "rank"), job.rank, [m.name for m in job.testenv.metrics], rows
        )
        files = tuple(written)
        print(format_table(header, selected))
        log.info("rank written: %s", ", ".join(files))
    result = JobResult(job, tuple(outcomes), files, _report(job.output_dir) if rows else ())
    for failed in result.failed:
        log.error("FAILED %s (%s): %s", failed.algorithm, failed.case_dir, failed.error)
    log.info("%d of %d test case(s) finished", len(outcomes) - len(result.failed), len(outcomes))
    return result
