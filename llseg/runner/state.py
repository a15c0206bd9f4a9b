"""What a benchmark workspace remembers between runs: which test case a folder holds, whether it
finished, and who is running it (docs/architecture.md, README "Interrupted and parallel runs").

- ``<case>/case.json`` (written when the case starts): the case's key (algorithm and hyperparameters)
  and a fingerprint of everything its numbers depend on besides them (index files, rounds, train
  ratio, threshold). A folder without ``rank_row.json`` is an unfinished case.
- ``<case>/rank_row.json`` (written last, atomically): the case's leaderboard row; the case finished.
- ``<job>/.locks/<key>.lock``: the process running a case (host, pid, start time); one writer per
  case. A lock of a dead process on the same host is stale and taken over; on another host it is
  reported with its holder, to be deleted by hand if that machine is gone.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from llseg.atomic import write_text
from llseg.errors import ConfigError
from llseg.runner.rank import RankRow

log = logging.getLogger("llseg.runner")
CASE_FILE = "case.json"
ROW_FILE = "rank_row.json"
LOCK_DIR = ".locks"
CASE_FORMAT = "llseg-case/1"


def case_key(algorithm: str, hyperparameters: tuple[dict[str, Any], ...]) -> str:
    """A stable name of one test case: ``<algorithm>-<hash of its hyperparameters>``."""
    digest = hashlib.sha256(json.dumps(hyperparameters, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{algorithm}-{digest}"


def data_fingerprint(*parts: Any) -> str:
    """Hash of what a case's numbers depend on besides its hyperparameters (index lines, rounds, ...)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def start_case(case_dir: Path, key: str, fingerprint: str) -> None:
    write_text(case_dir / CASE_FILE, json.dumps({"format": CASE_FORMAT, "key": key, "fingerprint": fingerprint}) + "\n")


def finish_case(case_dir: Path, row: RankRow) -> None:
    write_text(case_dir / ROW_FILE, json.dumps(asdict(row), indent=2, default=str) + "\n")


def read_row(case_dir: Path) -> RankRow | None:
    """The row of a finished case, else None."""
    try:
        return RankRow(**json.loads((case_dir / ROW_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def case_folders(job_dir: Path, key: str) -> list[Path]:
    """Folders ``<job>/<algorithm>/<uuid>`` that hold the case ``key``, oldest first."""
    found = []
    for marker in job_dir.glob(f"*/*/{CASE_FILE}"):
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if data.get("key") == key:
            found.append((marker.stat().st_mtime, marker.parent, data.get("fingerprint")))
    return [folder for _, folder, _ in sorted(found, key=lambda t: t[0])]


def fingerprint_of(case_dir: Path) -> str | None:
    try:
        return json.loads((case_dir / CASE_FILE).read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def job_guard(job_dir: Path) -> Iterator[None]:
    """Serialise short critical sections of processes sharing ``job_dir`` (lock take-over, rank writes)."""
    folder = job_dir / LOCK_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".guard", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _holder(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def describe(holder: dict[str, Any]) -> str:
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"


def lock_holder(job_dir: Path, key: str) -> str | None:
    """Who holds case ``key``'s lock (a live process, or any process on another host), else None."""
    holder = _holder(job_dir / LOCK_DIR / f"{key}.lock")
    if holder is None or holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        return None
    if holder.get("host") == socket.gethostname() and not _alive(int(holder.get("pid", -1))):
        return None
    return f"{describe(holder)} (lock {job_dir / LOCK_DIR / (key + '.lock')})"


@contextlib.contextmanager
def case_lock(job_dir: Path, key: str) -> Iterator[None]:
    """Hold the lock of case ``key`` while the block runs; ConfigError naming the holder when another
    live process has it. A stale lock (dead process on this host) is taken over with a log line."""
    path = job_dir / LOCK_DIR / f"{key}.lock"
    me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    with job_guard(job_dir):
        holder = _holder(path) if path.exists() else None
        if holder is not None:
            if holder.get("host") != me["host"]:
                raise ConfigError(f"test case {key} is being run by {describe(holder)} (lock {path}); wait for it, run "
                                  f"another case with --case, or delete the lock if that machine's run is gone")
            if _alive(int(holder.get("pid", -1))) and holder.get("pid") != me["pid"]:
                raise ConfigError(f"test case {key} is being run by {describe(holder)} (lock {path}); wait for it or "
                                  "run another case with --case")
            log.warning("taking over the stale lock of test case %s (%s: that process is gone)", key, describe(holder))
        write_text(path, json.dumps(me) + "\n")
    try:
        yield
    finally:
        if _holder(path) == me:
            path.unlink(missing_ok=True)
