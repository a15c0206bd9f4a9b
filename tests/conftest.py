"""Shared fixtures: tiny labelled image sets written to disk (train ids, 255 = ignore)."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

_CACHE_DIR = tempfile.mkdtemp(prefix="llseg-test-cache-")


def pytest_configure(config: pytest.Config) -> None:
    """Decoded-image disk cache of this test session (never the user's ~/.cache), also for subprocesses."""
    os.environ["LLSEG_CACHE_DIR"] = _CACHE_DIR


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_CACHE_DIR, ignore_errors=True)


# A distinct colour per train id, so a small network can separate classes quickly.
_COLOURS = np.random.default_rng(7).integers(0, 256, size=(19, 3))


class Rows:
    """A Sedna-shaped data source: x rows [image, full_label], y = train labels."""

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        self.x = np.array([r[:2] for r in rows])
        self.y = np.array([r[2] for r in rows])

    def __len__(self) -> int:
        return len(self.y)


def write_scene(
    folder: Path, name: str, bands: list[int], size: tuple[int, int], keep: set[int], seed: int
) -> tuple[str, str, str]:
    """Horizontal bands of classes; the train label keeps only ``keep`` (others 255)."""
    rng = np.random.default_rng(seed)
    h, w = size
    full = np.zeros(size, np.uint8)
    for i, cls in enumerate(bands):
        full[i * h // len(bands) : (i + 1) * h // len(bands)] = cls
    image = _COLOURS[full] + rng.integers(-20, 21, size=(h, w, 3))
    train = np.where(np.isin(full, list(keep)), full, 255).astype(np.uint8)
    paths = [folder / f"{name}.png", folder / f"{name}_full.png", folder / f"{name}_train.png"]
    Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(paths[0])
    Image.fromarray(full).save(paths[1])
    Image.fromarray(train).save(paths[2])
    return tuple(str(p) for p in paths)  # type: ignore[return-value]


def rows_writer(folder: Path) -> Callable[..., Rows]:
    """``make(tag, n, bands, keep, size=(32, 64))`` -> Rows of n scenes written into ``folder``."""
    folder.mkdir(exist_ok=True)

    def make(tag: str, n: int, bands: list[int], keep: set[int], size: tuple[int, int] = (32, 64)) -> Rows:
        return Rows([write_scene(folder, f"{tag}{i}", bands, size, keep, seed=hash((tag, i)) & 0xFFFF) for i in range(n)])

    return make


@pytest.fixture
def make_rows(tmp_path: Path) -> Callable[..., Rows]:
    """``make_rows(tag, n, bands, keep, size=(32, 64))`` -> Rows of n scenes under ``tmp_path/scenes``."""
    return rows_writer(tmp_path / "scenes")


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core machine, 2 spinning OpenMP threads run ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
