"""Argument checks shared by the ``llseg prepare`` builders and the ``llseg synth`` generators.

Each returns the checked value or raises :class:`~llseg.errors.ConfigError` (bad value) or
:class:`~llseg.errors.DataError` (bad path) with a message naming the argument.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llseg.atomic import check_output_dir
from llseg.errors import ConfigError, DataError

MAX_SIDE = 16384  # synthetic images and labels are drawn in memory: 16384² RGB is 800 MB


def check_seed(seed: Any) -> int:
    """``seed`` if it is an integer >= 0, else ``ConfigError``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    return seed


def check_train_ratio(train_ratio: float) -> None:
    """``ConfigError`` unless ``0 < train_ratio < 1`` (Ianvs' share of train lines per chunk)."""
    if not 0.0 < train_ratio < 1.0:
        raise ConfigError(f"train_ratio must be strictly between 0 and 1, got {train_ratio}")


def check_size(size: Sequence[int] | None, default: tuple[int, int]) -> tuple[int, int]:
    """``(H, W)`` from ``size`` (``None``: ``default``); ``ConfigError`` unless two integers in 16..MAX_SIDE."""
    if size is None:
        return default
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ConfigError(f"size must be (H, W), two integers, got {size!r}") from None
    if h < 16 or w < 16:
        raise ConfigError(f"size {h}x{w} is too small; both sides must be >= 16 (default {default})")
    if h > MAX_SIDE or w > MAX_SIDE:
        raise ConfigError(f"size {h}x{w} is too large; both sides must be <= {MAX_SIDE} (default {default})")
    return h, w


def check_out_dir(out: str | Path) -> Path:
    """``out`` as a Path; ``DataError`` if it exists and is a file, ``ConfigError`` if it cannot be
    created or written (checked before any work)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"output folder {out} is a file; pass a folder path as out (--out)")
    return check_output_dir(out, "output folder")


def listing(items: Sequence[str], limit: int = 5) -> str:
    """The first ``limit`` items for an error message, with the count when there are more."""
    shown = ", ".join(items[:limit])
    return shown + (f" ... ({len(items)} in all)" if len(items) > limit else "")
