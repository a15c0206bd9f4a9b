"""Process-level helpers: device choice, seeding and mixed precision."""
from __future__ import annotations

import random
from contextlib import AbstractContextManager, nullcontext
from typing import Optional

import numpy as np
import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def pick_device(device: Optional[str] = None) -> torch.device:
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
