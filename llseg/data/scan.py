"""Per-image class pixel counts, cached on disk so that re-runs only rescan changed label files."""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from llseg.data.imageio import PathLike

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


def _stat_key(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _load_cache(cache_file: Path, num_classes: int) -> dict[str, list]:
    """Cache entries ``abspath -> [size, mtime_ns, counts]``; unusable caches are dropped."""
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
        if data["format"] == CACHE_FORMAT and data["num_classes"] == num_classes:
            return dict(data["entries"])
        log.info("scan cache %s was made for other settings; rescanning", cache_file)
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable scan cache %s (%s); rescanning", cache_file, exc)
    return {}


def _save_cache(cache_file: Path, num_classes: int, entries: dict[str, list]) -> None:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f".{cache_file.name}.tmp")
    tmp.write_text(json.dumps({"format": CACHE_FORMAT, "num_classes": num_classes, "entries": entries}), encoding="utf-8")
    os.replace(tmp, cache_file)


def scan_class_counts(
    paths: Sequence[PathLike],
    to_train_ids: Callable[[PathLike], np.ndarray],
    num_classes: int,
    cache_file: Path | None = None,
    *,
    workers: int = 0,
) -> np.ndarray:
    """Pixel count of every class in every label file: ``int64 (n_images, num_classes)``.

    ``to_train_ids(path)`` returns the file's ``uint8 H x W`` train-id map; ids ``>=
    num_classes`` (e.g. 255 = ignore) are not counted. With ``cache_file`` (JSON), counts are
    reused for files whose (absolute path, size, mtime_ns) is unchanged; the cache assumes
    ``to_train_ids`` stays the same for a given path. ``workers`` threads decode in parallel
    (0: up to 4, bounded by the CPU count).
    """
    keys = [os.path.abspath(os.fspath(p)) for p in paths]
    entries = _load_cache(cache_file, num_classes) if cache_file is not None else {}
    counts = np.zeros((len(keys), num_classes), dtype=np.int64)
    todo: list[int] = []
    stats: dict[int, tuple[int, int]] = {}
    for i, key in enumerate(keys):
        stats[i] = _stat_key(key) if os.path.exists(key) else (-1, -1)  # missing: to_train_ids reports it
        hit = entries.get(key)
        if hit is not None and tuple(hit[:2]) == stats[i] and len(hit[2]) == num_classes:
            counts[i] = hit[2]
        else:
            todo.append(i)
    if cache_file is not None:
        log.info("class scan: %d cached, %d to scan (cache %s)", len(keys) - len(todo), len(todo), cache_file)

    def count(i: int) -> np.ndarray:
        ids = to_train_ids(paths[i])
        return np.bincount(ids.ravel(), minlength=256)[:num_classes]

    n_workers = workers or min(4, os.cpu_count() or 1)
    try:
        with ThreadPoolExecutor(max_workers=n_workers) as pool, tqdm(
            total=len(todo), desc="scanning labels", unit="img", disable=not todo, leave=False
        ) as bar:
            for i, row in zip(todo, pool.map(count, todo)):
                counts[i] = row
                entries[keys[i]] = [*stats[i], row.tolist()]
                bar.update()
    finally:  # keep what was scanned even if a file fails
        if cache_file is not None and todo:
            _save_cache(cache_file, num_classes, entries)
    return counts
