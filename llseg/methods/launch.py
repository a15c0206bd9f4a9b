"""One stage on several local devices from a single process (the ``devices`` hyperparameter).

Ianvs and ``llseg bench`` call the estimator in one process; with ``devices: N`` > 1 its ``train``
runs the stage in N spawned workers (``torch.multiprocessing``, one GPU each on CUDA, gloo on CPU),
the same data-parallel path as ``torchrun`` (:mod:`llseg.distributed`), then loads rank 0's trained
state back into the estimator's learner. A worker that fails or dies stops the others and raises a
``RuntimeError`` naming the rank and its error. Models and recipes must be registered by llseg's own
modules (spawned workers import llseg afresh).
"""
from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from llseg import distributed
from llseg.methods.checkpoint import read_checkpoint
from llseg.methods.config import resolve_config
from llseg.methods.learner import ContinualLearner
from llseg.runtime import ensure_log_handler

log = logging.getLogger("llseg.launch")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def learn_on_devices(learner: ContinualLearner, images: Sequence[str], full_labels: Sequence[str],
                     train_labels: Sequence[str]) -> dict[str, Any]:
    """:meth:`ContinualLearner.learn` on ``learner.config.devices`` local data-parallel workers;
    ``learner`` ends with the trained state (model, classes, recipe state). Returns the summary."""
    world = learner.config.devices
    if learner.device.type == "cuda" and torch.cuda.device_count() < world:
        raise RuntimeError(f"devices: {world} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    with tempfile.TemporaryDirectory(prefix="llseg-devices-") as tmp:
        start, result = Path(tmp) / "start.pt", Path(tmp) / "result.pt"
        if learner.model is not None:
            torch.save(learner.state_dict(), start)
        log.info("training stage %d on %d %s worker(s)", learner.stages + 1, world, learner.device.type)
        args = (world, _free_port(), learner.config.to_dict(), start, list(images), list(full_labels),
                list(train_labels), result)
        try:
            mp.start_processes(_worker, args=args, nprocs=world, join=True, start_method="spawn")
        except mp.ProcessRaisedException as exc:
            rank, last = _first_error(Path(tmp)) or (exc.error_index, str(exc).strip().splitlines()[-1])
            raise RuntimeError(f"devices: {world}: worker {rank} failed ({last}); the other workers were "
                               "stopped") from None
        except mp.ProcessExitedException as exc:
            raise RuntimeError(f"devices: {world}: worker {exc.error_index} died (exit code {exc.exit_code}); the other "
                               "workers were stopped") from None
        state = torch.load(result, map_location="cpu", weights_only=False)
    learner.load_state_dict(state["checkpoint"], source=f"devices: {world} workers")
    return dict(state["summary"])


def _first_error(folder: Path) -> tuple[int, str] | None:
    """(rank, first line) of the earliest error a worker noted in ``folder``, if any."""
    noted = []
    for path in folder.glob("error-*.txt"):
        when, text = path.read_text(encoding="utf-8").split("\n", 1)
        noted.append((float(when), int(path.stem.split("-")[1]), text.strip()))
    return min(noted)[1:] if noted else None


def _worker(rank: int, world: int, port: int, hyperparameters: dict[str, Any], start: Path, images: list[str],
            full_labels: list[str], train_labels: list[str], result: Path) -> None:
    """Rank ``rank`` of a spawned data-parallel stage; rank 0 writes the trained state to ``result``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    ensure_log_handler(logging.INFO if rank == 0 else logging.WARNING)
    learner = ContinualLearner(resolve_config(hyperparameters, source="devices worker"))
    if start.is_file():
        learner.load_state_dict(read_checkpoint(start), source="devices worker")
    try:
        summary = learner.learn(images, full_labels, train_labels)
        if distributed.is_main():
            torch.save({"checkpoint": learner.state_dict(), "summary": summary}, result)
    except Exception as exc:  # noted with its time: the first failure is the cause, a peer's lost connection its echo
        first = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}".splitlines()[0]
        (result.parent / f"error-{rank}.txt").write_text(f"{time.time()}\n{first}\n", encoding="utf-8")
        raise
    finally:
        distributed.shutdown()
