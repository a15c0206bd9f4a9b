"""``llseg bench --jobs N``: a job's algorithms in N worker processes at once.

Each worker is ``llseg bench -f JOB --case ALGORITHM`` (with ``--resume`` when given), so it takes the
case lock, writes its case folder and merges its rank row exactly as a sequential run does; the
parent only schedules and, at the end, ranks the finished cases (``--rank-only``). The algorithms
start longest first (``--plan``'s estimate for this machine), which keeps N workers busy until the
end. Every worker gets ``threads // N`` intra-op threads (``threads``: what torch uses here, i.e.
``OMP_NUM_THREADS`` or the physical cores). fp32 results depend on the thread count (summation
order), so compare runs made with the same ``--jobs`` on the same machine.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import torch

from llseg.runner.config import Job
from llseg.runtime import format_seconds

log = logging.getLogger("llseg.runner")

LOG_DIR = "logs"  # <workspace>/<job>/logs/<algorithm>.log: each worker's output
POLL_SECONDS = 0.2
STOP_GRACE_SECONDS = 60.0  # a worker stopped by SIGTERM first saves its epoch checkpoint


@dataclass(frozen=True)
class WorkerResult:
    """How one worker (one algorithm's test cases) ended."""

    algorithm: str
    returncode: int
    seconds: float
    log: Path


def worker_threads(jobs: int) -> int:
    """Intra-op threads per worker: this process's torch threads shared by ``jobs`` workers, at least 1."""
    return max(1, torch.get_num_threads() // jobs)


def longest_first(job_file: str, algorithms: Sequence[str]) -> list[str]:
    """``algorithms`` ordered by ``--plan``'s estimated time of their cases, longest first (ties: job order)."""
    from llseg.runner.plan import plan_job

    seconds = dict.fromkeys(algorithms, 0.0)
    for plan in plan_job(job_file):
        if plan.case in seconds:
            seconds[plan.case] += plan.seconds
    return sorted(algorithms, key=lambda name: -seconds[name])


def _command(job: Job, algorithm: str, resume: bool) -> list[str]:
    return [sys.executable, "-m", "llseg", "bench", "-f", str(job.file), "--case", algorithm,
            *(["--resume"] if resume else [])]


def run_workers(job: Job, algorithms: Sequence[str], *, jobs: int, resume: bool) -> list[WorkerResult]:
    """Run ``algorithms`` (in this order) as ``llseg bench --case`` processes, at most ``jobs`` at once.

    Each worker's output goes to ``<job output>/logs/<algorithm>.log`` (appended to with ``resume``).
    If this process is interrupted (Ctrl-C, SIGTERM), the running workers get SIGTERM, save their
    checkpoints and exit; ``llseg bench --resume`` continues them.
    """
    threads = worker_threads(jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    logs = Path(job.output_dir) / LOG_DIR
    logs.mkdir(parents=True, exist_ok=True)
    log.info("%d algorithm(s) in %d worker process(es) of %d thread(s) each; their logs in %s",
             len(algorithms), min(jobs, len(algorithms)), threads, logs)
    waiting = list(algorithms)
    running: dict[str, tuple[subprocess.Popen[bytes], IO[bytes], float]] = {}
    results: list[WorkerResult] = []
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                name = waiting.pop(0)
                out = open(logs / f"{name}.log", "ab" if resume else "wb")  # noqa: SIM115  # closed when it ends
                proc = subprocess.Popen(_command(job, name, resume), env=env, stdout=out, stderr=subprocess.STDOUT)
                running[name] = (proc, out, time.monotonic())
                log.info("started %s (pid %d, log %s)", name, proc.pid, logs / f"{name}.log")
            time.sleep(POLL_SECONDS)
            for name, (proc, stream, start) in list(running.items()):
                if proc.poll() is None:
                    continue
                stream.close()
                del running[name]
                result = WorkerResult(name, proc.returncode, time.monotonic() - start, logs / f"{name}.log")
                results.append(result)
                state = "finished" if result.returncode == 0 else f"FAILED (exit code {result.returncode})"
                log.info("%s %s in %s; log %s", name, state, format_seconds(result.seconds), result.log)
    finally:
        _stop(running)
    return results


def _stop(running: dict[str, tuple[subprocess.Popen[bytes], IO[bytes], float]]) -> None:
    """SIGTERM the workers still running, wait for their checkpoints, then kill what is left."""
    for proc, _, _ in running.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for name, (proc, out, _) in running.items():
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
        log.warning("stopped %s; 'llseg bench -f ... --resume' continues it", name)
