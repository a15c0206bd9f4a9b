"""Crash-safe file writes and up-front checks of output locations.

A file written through :func:`atomic_write` is either absent, the old version, or complete: the data
goes to a temporary file in the same folder, is flushed and fsynced, then renamed over the target
(``os.replace`` is atomic on POSIX and Windows), and the folder entry is fsynced. A process killed at
any point (SIGKILL included) leaves at most a ``.<name>.*.tmp`` file, never a truncated target.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from llseg.errors import ConfigError


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` (``mode`` "w" or "wb", ``open`` keywords); on a clean
    exit it replaces ``path``; on an exception it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_save(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """``write(handle)`` into a binary file that appears at ``path`` atomically (e.g. ``torch.save``)."""
    with atomic_write(path, "wb") as handle:
        write(handle)


def write_text(path: str | Path, text: str) -> None:
    """Atomically write UTF-8 ``text`` to ``path``."""
    with atomic_write(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def remove_leftovers(path: str | Path) -> None:
    """Delete the temporary files that killed writes of ``path`` left (``.<name>.*.tmp``); call it
    only where no other process writes ``path``."""
    path = Path(path)
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    """Persist a rename (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_output_dir(path: str | Path, what: str, *, shown: str | Path | None = None) -> Path:
    """``path`` as a folder llseg can create and write into, checked before any work by writing a
    probe file into its nearest existing folder (permissions, read-only mounts, ACLs; root too);
    a :class:`ConfigError` naming ``what`` (e.g. "--out") and ``shown`` (default ``path``) and the
    fix otherwise. Creates nothing."""
    path = Path(path)
    shown = path if shown is None else shown
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == path else f" ({existing} is a file)"
        raise ConfigError(f"{what} {shown}: not a folder{where}; choose another {what} or move that file")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".llseg-probe-")
    except OSError as exc:
        verb = "write into" if existing == path else "create folders in"
        raise ConfigError(f"{what} {shown}: cannot {verb} {existing} ({exc.strerror}); choose a writable location") from None
    os.close(fd)
    os.unlink(probe)
    return path


def check_output_file(path: str | Path, what: str) -> Path:
    """``path`` as a file llseg can write (its folder checked as in :func:`check_output_dir`)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; give a file name, e.g. {path / 'out'}")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{what} {path}: the file is not writable (permission denied); choose another path")
    check_output_dir(path.parent, what, shown=path)
    return path
