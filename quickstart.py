#!/usr/bin/env python3
"""Set up llseg in ./.venv and run its main job or its test suite.

    python3 quickstart.py bench   # synthetic data -> CIL-3 split -> benchmark leaderboard
    python3 quickstart.py test    # lint (ruff), types (mypy) and the whole test suite (what CI runs)

Both are idempotent: the virtual environment is rebuilt only when pyproject.toml or
requirements/constraints.txt change, and generated data is reused when its arguments match.
Only the Python standard library is used here, so a machine with just Python can run it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".llseg-installed"
INPUTS = (ROOT / "pyproject.toml", ROOT / "requirements" / "constraints.txt")
NEEDED_GB = 7  # torch + torchvision CUDA wheels and the rest of the pinned set, installed

# The main job, as llseg command lines (paths relative to the repository root). With two or more CPUs its
# three algorithms run in two worker processes at once (`--jobs 2`: 1.26x faster on 2 cores, benchmarks/DEMO.md).
JOBS = ["--jobs", "2"] if (os.cpu_count() or 1) >= 2 else []
BENCH = [
    ["synth", "--out", "data/synthetic-city", "--seed", "0"],
    ["prepare", "--dataset", "cityscapes", "--root", "data/synthetic-city", "--split", "cil-3",
     "--out", "data/synthetic-city-cil3"],
    ["bench", "-f", "benchmarkingjob.yaml", *JOBS],
]


def _python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _fingerprint() -> str:
    digest = hashlib.sha256(sys.version.encode())
    for path in INPUTS:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_env() -> Path:
    """Create ./.venv and install llseg[test] with pinned versions, unless already done."""
    fingerprint = _fingerprint()
    if STAMP.exists() and STAMP.read_text() == fingerprint and _python().exists():
        return _python()
    if not _python().exists():
        print(f"[quickstart] creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("[quickstart] installing llseg and its pinned dependencies (first run only)", flush=True)
    free_gb = shutil.disk_usage(ROOT).free / 2**30
    if free_gb < NEEDED_GB:
        print(f"[quickstart] warning: {free_gb:.1f} GB free on the disk of {ROOT}; the install needs "
              f"about {NEEDED_GB} GB (torch's CUDA build)", flush=True)
    done = subprocess.run(
        [str(_python()), "-m", "pip", "install", "--quiet", "--no-cache-dir", "-c", str(INPUTS[1]),
         "-e", f"{ROOT}[test]"],
    )
    if done.returncode:
        raise SystemExit(
            f"[quickstart] pip could not install llseg into {VENV} (exit {done.returncode}; its message is "
            f"above). If it says 'No space left on device', free about {NEEDED_GB} GB on that disk and rerun; "
            f"the half-made environment is reused."
        )
    STAMP.write_text(fingerprint)
    return _python()


def main(argv: list[str]) -> int:
    if len(argv) < 1 or argv[0] not in ("bench", "test"):
        print(__doc__)
        return 2
    python = ensure_env()
    os.chdir(ROOT)
    if argv[0] == "test":
        checks = {"ruff": ["ruff", "check", "llseg", "benchmarks", "tests", "quickstart.py"], "mypy": ["mypy"]}
        for name, command in checks.items():
            if subprocess.run([str(python), "-m", *command]).returncode:
                print(f"[quickstart] {name} found the problems above; fix them before the tests run", flush=True)
                return 1
        return subprocess.run([str(python), "-m", "pytest", *argv[1:]]).returncode
    for args in BENCH:
        rc = subprocess.run([str(python), "-m", "llseg", *args]).returncode
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
