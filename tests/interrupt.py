"""Run ``python -m llseg`` in a subprocess and stop it (SIGKILL, SIGTERM, SIGINT) once a file appears."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def env() -> dict[str, str]:
    """This checkout first on the path, one thread (the machine is shared), the test session's cache."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "LLSEG_LOGLEVEL": "WARNING"}


def llseg(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``llseg args`` to its end."""
    return subprocess.run([sys.executable, "-m", "llseg", *args], cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=600)


def stop_when(args: list[str], cwd: Path, ready: Callable[[], bool], sig: int = signal.SIGKILL,
              timeout: float = 600) -> tuple[int, str]:
    """Start ``llseg args``, send ``sig`` as soon as ``ready()`` (polled every 2 ms), wait for the end.

    Returns:
        (exit code, stderr). An AssertionError when the command ended before ``ready()`` held.
    """
    proc = subprocess.Popen([sys.executable, "-m", "llseg", *args], cwd=cwd, env=env(), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"llseg {' '.join(args)} ended before the stop point: {proc.stderr.read()}"  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "stop point never reached"
        time.sleep(0.002)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def exists(*paths: Path) -> Callable[[], bool]:
    return lambda: any(p.exists() for p in paths)
