"""Process-level helpers: device choice, seeding, mixed precision, the CPU allocator and progress lines."""
from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
import random
import time
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def pick_device(device: str | None = None) -> torch.device:
    """The device to run on: ``device`` if given ("cpu", "cuda", "cuda:1"), else CUDA when present.

    Raises:
        RuntimeError: CUDA was requested but is not available.
    """
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available; use device: cpu or auto")
    return dev


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 1 << 30
_KEEP_MEMORY_ENV = "LLSEG_KEEP_FREED_MEMORY"


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse (process-wide, once); True if applied.

    By default glibc maps every block above 32 MiB afresh and unmaps it when freed, and trims the
    heap's free top, so each training step page-faults its large activations and gradients again
    (ERFNet at 256x512, batch 4: the 40 MB fp32 full-resolution logits and their gradients several
    times per step). Serving blocks up to 1 GiB from the heap and never trimming it makes the next
    step reuse them: ERFNet training in bf16 ran 8-10 % faster on the 2-core CPU (benchmarks/RESULTS.md).
    The price: the process keeps its peak memory until it exits, as CUDA's caching allocator does
    (ERFNet 256x512: 19 % higher, flat over 40 steps). Called by the learner on CPU without DataLoader
    workers; nothing happens off glibc (macOS, Windows, musl) or with ``LLSEG_KEEP_FREED_MEMORY=0``.
    """
    if os.environ.get(_KEEP_MEMORY_ENV, "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # M_MMAP_THRESHOLD also switches off glibc's dynamic threshold; the trim threshold is an int
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_num_workers(num_workers: int | str, device: torch.device) -> int:
    """DataLoader worker processes for ``num_workers``: an integer is kept; ``"auto"`` is 0 on CPU,
    where workers take cores from the training step (ERFNet 256x512 bf16 on 2 cores: 5.9 images/s
    with none, 3.3 with one; benchmarks/RESULTS.md), and min(4, usable cores - 1) with CUDA, so
    decoding and augmenting overlap the GPU's step."""
    if num_workers != "auto":
        return int(num_workers)
    if device.type == "cpu":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cores - 1))


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``"auto"`` into a concrete precision for ``device``.

    auto: fp16 autocast on CUDA; bf16 autocast on CPUs with native bf16 support; fp32 otherwise.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            return "fp16"
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs CUDA; on CPU use bf16 or fp32")
    return precision


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """Autocast context for a concrete precision (``fp32`` -> no autocast)."""
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


PROGRESS_ENV = "LLSEG_PROGRESS_SECONDS"  # seconds between progress lines (default 10)
_progress_log = logging.getLogger("llseg.progress")


def format_seconds(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``42s``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """INFO lines ``<what>: i/n <unit>s, r <unit>s/s, ETA t`` for a loop of ``total`` items, at most
    every ``$LLSEG_PROGRESS_SECONDS`` seconds (default 10), plus a last line when any was written.
    Plain log lines, not a terminal bar, so they reach files and Ianvs' console alike."""

    def __init__(self, what: str, total: int, unit: str) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.interval = float(os.environ.get(PROGRESS_ENV, "10"))
        self.start = self.last = time.perf_counter()
        self.done, self.logged = 0, False

    def update(self, n: int = 1) -> None:
        """Count ``n`` finished items."""
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.interval or (self.done >= self.total and self.logged):
            self.last, self.logged = now, True
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            _progress_log.info("%s: %d/%d %ss, %.1f %ss/s, ETA %s", self.what, self.done, self.total, self.unit,
                               rate, self.unit, format_seconds(eta))


def ensure_log_handler(level: int = logging.INFO) -> None:
    """Show llseg's log records (``llseg.*``) at ``level`` on stderr when nothing else would.

    Under ``ianvs -f`` only Ianvs' and Sedna's own loggers have handlers, so llseg's INFO records
    (progress, stage summaries) reached no handler. This adds one stderr handler to the ``llseg``
    logger, only if neither it nor the root logger has one; Ianvs' and Sedna's loggers are not touched.
    """
    logger = logging.getLogger("llseg")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
