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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llseg.atomic import check_output_dir
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
from llseg.runner.state import (
    case_folders,
    case_key,
    case_lock,
    data_fingerprint,
    fingerprint_of,
    finish_case,
    job_guard,
    lock_holder,
    read_row,
    start_case,
)

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

    @property
    def key(self) -> str:
        return case_key(self.algorithm.name, self.hyperparameters)


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
    job: Job, resolved: Resolved, case: Case, train_lines: list[str], test_y: np.ndarray, label: str,
    case_dir: str | None = None,
) -> tuple[CaseOutcome, RankRow | None]:
    """Run one test case in ``case_dir`` (default: a new ``<workspace>/<name>/<algorithm>/<uuid1>``;
    an existing folder continues its finished rounds and interrupted round); never raises for case errors."""
    alg = case.algorithm
    case_dir = case_dir or os.path.join(job.output_dir, alg.name, str(uuid.uuid1()))
    os.makedirs(case_dir, exist_ok=True)
    start_case(Path(case_dir), case.key, case_fingerprint(job, case, train_lines))
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


def case_fingerprint(job: Job, case: Case, train_lines: Sequence[str]) -> str:
    """What a case's numbers depend on besides its hyperparameters: index lines, rounds, train ratio, model-eval settings."""
    env = job.testenv
    test_lines = Path(env.test_index).read_text(encoding="utf-8").splitlines()
    return data_fingerprint(list(train_lines), test_lines, env.incremental_rounds, env.threshold, env.operator,
                            case.algorithm.train_ratio)


def validate_cases(resolved: Resolved, cases: Sequence[Case]) -> None:
    """Build every case's estimator once before any training, so that a bad hyperparameter of the
    last case fails in seconds, not after the first cases ran; ConfigError naming file and case."""
    quiet = logging.getLogger("llseg")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # the estimators log their resolved config again when their case runs
    try:
        for case in cases:
            alg = case.algorithm
            hps = next(h for m, h in zip(alg.modules, case.hyperparameters) if m.type == BASEMODEL)
            try:
                with _restored_environ():
                    resolved.estimators[alg.name](**copy.deepcopy(hps))
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{alg.file}: algorithm {alg.name}, hyperparameters {hps}: {exc}") from None
    finally:
        quiet.setLevel(level)


def select_cases(job: Job, cases: list[Case], names: Sequence[str]) -> list[Case]:
    """The cases of the algorithms ``names`` (``--case``), in job order; ConfigError for an unknown name."""
    known = [a.name for a in job.algorithms]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"{job.file}: --case {', '.join(unknown)}: no such algorithm in this job; "
                          f"choose from {', '.join(known)}")
    return [c for c in cases if c.algorithm.name in names]


def _plan(job: Job, cases: Sequence[Case], train_lines: list[str], resume: bool) -> list[Path | None]:
    """Per case, the folder of an earlier run to continue or reuse (``resume``), else None (a new
    folder). Refuses up front: a case another live process holds, and (``resume``) a folder whose
    data or settings changed."""
    job_dir = Path(job.output_dir)
    plan: list[Path | None] = []
    for case in cases:
        holder = lock_holder(job_dir, case.key)
        if holder is not None:
            raise ConfigError(f"test case {case.key} is being run by {holder}; wait for it, or run the other cases "
                              "with --case NAME")
        folders = case_folders(job_dir, case.key)
        if not resume:
            unfinished = [f for f in folders if read_row(f) is None]
            if unfinished:
                log.info("%s: %s holds an interrupted run of this case; 'llseg bench -f %s --resume' continues it",
                         case.algorithm.name, unfinished[-1], job.file)
            plan.append(None)
            continue
        folder = folders[-1] if folders else None
        if folder is not None and fingerprint_of(folder) != case_fingerprint(job, case, train_lines):
            raise ConfigError(
                f"--resume: {folder} holds test case {case.algorithm.name} run on other data or settings (the index "
                f"files, incremental_rounds, train_ratio or threshold changed since); run without --resume to start "
                "new test cases"
            )
        plan.append(folder)
    return plan


def _write_rank(job: Job, rows: Sequence[RankRow]) -> tuple[list[str], list[dict[str, str]], list[str]]:
    """Merge ``rows`` into the job's rank files, one process at a time."""
    with job_guard(Path(job.output_dir)):
        return write_rank(os.path.join(job.output_dir, "rank"), job.rank, [m.name for m in job.testenv.metrics], rows)


def _report(job_dir: str) -> tuple[str, ...]:
    """Write the job's report; a failure is logged, since the rank and case results already stand."""
    try:
        paths = write_workspace_report(job_dir)
    except Exception as exc:  # the report is rebuildable: never lose a finished benchmark over it
        log.error("report not written (%s: %s); rebuild it with 'llseg report %s'", type(exc).__name__, exc, job_dir)
        return ()
    log.info("report written: %s", ", ".join(map(str, paths)))
    return tuple(map(str, paths))


def run_job(path: str, *, resume: bool = False, cases: Sequence[str] = (), rank_only: bool = False,
            jobs: int = 1) -> JobResult:
    """Run the benchmarkingjob at ``path`` from the repository root (the CWD); print the leaderboard.

    Args:
        resume: reuse the workspace: finished test cases are kept, an interrupted one continues
            after its last finished round (its interrupted round after the last saved epoch).
        cases: run only the test cases of these algorithms (``--case``; other processes or machines
            may run the others against the same workspace, one writer per case).
        rank_only: run nothing; build the rank files and the report from the finished cases.
        jobs: run the algorithms in this many worker processes at once (``llseg.runner.parallel``).
    """
    job = load_job(path)
    check_output_dir(job.output_dir, f"{job.file}: workspace")
    resolved = resolve_job(job)
    train_lines = process_index(job.testenv.train_index)
    test_y = final_metric_y(job.testenv.test_index)
    selected = build_cases(job)
    if cases:
        selected = select_cases(job, selected, cases)
    if rank_only:
        return _rank_only(job, selected, train_lines)
    validate_cases(resolved, selected)
    plan = _plan(job, selected, train_lines, resume)
    log.info("benchmark %s: %d test case(s), %d rounds each, output in %s",
             job.name, len(selected), job.testenv.incremental_rounds, job.output_dir)
    pending = list(dict.fromkeys(c.algorithm.name for c, f in zip(selected, plan) if f is None or read_row(f) is None))
    if jobs > 1 and len(pending) > 1:
        return _run_parallel(job, selected, train_lines, pending, jobs=jobs, resume=resume)
    outcomes, rows = [], []
    for i, (case, folder) in enumerate(zip(selected, plan), 1):
        label = f"[{i}/{len(selected)}]"
        kept = read_row(folder) if folder is not None else None
        if kept is not None:
            log.info("%s %s: finished earlier in %s, kept", label, case.algorithm.name, folder)
            outcomes.append(CaseOutcome(case.algorithm.name, str(folder), kept.metrics, None, 0.0))
            rows.append(kept)
            continue
        with case_lock(Path(job.output_dir), case.key):
            outcome, row = run_case(job, resolved, case, train_lines, test_y, label, None if folder is None else str(folder))
            if row is not None:
                finish_case(Path(outcome.case_dir), row)
                _write_rank(job, [row])  # a later kill loses no finished row
        outcomes.append(outcome)
        if row is not None:
            rows.append(row)
    return _conclude(job, outcomes, rows)


def _conclude(job: Job, outcomes: Sequence[CaseOutcome], rows: Sequence[RankRow]) -> JobResult:
    """Merge ``rows`` into the rank files, print the leaderboard, write the report, log the failures."""
    files: tuple[str, ...] = ()
    if rows:
        header, selected_rows, written = _write_rank(job, rows)
        files = tuple(written)
        print(format_table(header, selected_rows))
        log.info("rank written: %s", ", ".join(files))
    result = JobResult(job, tuple(outcomes), files, _report(job.output_dir) if rows else ())
    for failed in result.failed:
        log.error("FAILED %s (%s): %s", failed.algorithm, failed.case_dir, failed.error)
    log.info("%d of %d test case(s) finished", len(outcomes) - len(result.failed), len(outcomes))
    return result


def _run_parallel(job: Job, cases: Sequence[Case], train_lines: list[str], algorithms: Sequence[str], *,
                  jobs: int, resume: bool) -> JobResult:
    """``algorithms`` in ``jobs`` worker processes (``llseg bench --case``), then the rank of ``cases``."""
    from llseg.runner.parallel import longest_first, run_workers

    results = run_workers(job, longest_first(str(job.file), algorithms), jobs=jobs, resume=resume)
    outcomes, rows, missing = _finished(job, cases, train_lines)
    outcomes += [CaseOutcome(r.algorithm, str(r.log), None, f"worker exit code {r.returncode}; its log: {r.log}", r.seconds)
                 for r in results if r.returncode != 0 or r.algorithm in missing]
    return _conclude(job, outcomes, rows)


def _finished(job: Job, cases: Sequence[Case], train_lines: list[str]) -> tuple[list[CaseOutcome], list[RankRow], list[str]]:
    """Outcomes and rank rows of the finished ``cases`` in the workspace (the newest run of the current
    data and settings), and the algorithms of those not finished."""
    outcomes, rows, missing = [], [], []
    for case in cases:
        current = case_fingerprint(job, case, train_lines)
        finished = [(f, r) for f in case_folders(Path(job.output_dir), case.key)
                    if fingerprint_of(f) == current and (r := read_row(f)) is not None]
        if not finished:
            missing.append(case.algorithm.name)
            continue
        folder, row = finished[-1]
        outcomes.append(CaseOutcome(case.algorithm.name, str(folder), row.metrics, None, 0.0))
        rows.append(row)
    return outcomes, rows, missing


def _rank_only(job: Job, cases: Sequence[Case], train_lines: list[str]) -> JobResult:
    """Rank files and report from the finished cases in the workspace (``--rank-only``)."""
    outcomes, rows, missing = _finished(job, cases, train_lines)
    if not rows:
        raise ConfigError(f"--rank-only: {job.output_dir} holds no finished test case of {job.file}; run "
                          f"'llseg bench -f {job.file}' (or with --case NAME) first")
    if missing:
        log.warning("--rank-only: not finished yet, left out: %s", ", ".join(missing))
    header, selected_rows, written = _write_rank(job, rows)
    print(format_table(header, selected_rows))
    return JobResult(job, tuple(outcomes), tuple(written), _report(job.output_dir))
