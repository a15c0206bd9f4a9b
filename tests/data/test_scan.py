from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llseg.data.imageio import PathLike, read_label_png
from llseg.data.scan import scan_class_counts
from llseg.errors import DataError

MAPS = [
    np.array([[0, 0, 1], [2, 255, 255]], dtype=np.uint8),
    np.array([[2, 2, 2], [2, 2, 0]], dtype=np.uint8),
    np.array([[255, 255, 255], [255, 255, 255]], dtype=np.uint8),
]
EXPECTED = [[2, 1, 1], [1, 0, 5], [0, 0, 0]]


class CountingReader:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, path: PathLike) -> np.ndarray:
        self.calls.append(Path(path).name)
        return read_label_png(path)


def _write(tmp_path: Path) -> list[Path]:
    paths = []
    for i, m in enumerate(MAPS):
        paths.append(tmp_path / f"m{i}.png")
        Image.fromarray(m).save(paths[-1])
    return paths


def test_counts_without_cache(tmp_path: Path) -> None:
    counts = scan_class_counts(_write(tmp_path), read_label_png, 3)
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, EXPECTED)


def test_cache_reuses_unchanged_files(tmp_path: Path) -> None:
    paths, cache = _write(tmp_path), tmp_path / "cache" / "scan.json"
    reader = CountingReader()
    np.testing.assert_array_equal(scan_class_counts(paths, reader, 3, cache), EXPECTED)
    assert reader.calls == ["m0.png", "m1.png", "m2.png"] and cache.is_file()

    reader.calls.clear()
    np.testing.assert_array_equal(scan_class_counts(paths, reader, 3, cache), EXPECTED)
    assert reader.calls == []

    # change one file (new content and mtime): only it is rescanned
    Image.fromarray(np.ones((2, 3), np.uint8)).save(paths[1])
    st = paths[1].stat()
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    counts = scan_class_counts(paths, reader, 3, cache)
    assert reader.calls == ["m1.png"]
    np.testing.assert_array_equal(counts[1], [0, 6, 0])

    # a subset in another order is served from the cache
    reader.calls.clear()
    np.testing.assert_array_equal(scan_class_counts([paths[2], paths[0]], reader, 3, cache), [EXPECTED[2], EXPECTED[0]])
    assert reader.calls == []


def test_bad_or_foreign_cache_is_rebuilt(tmp_path: Path) -> None:
    paths, cache = _write(tmp_path), tmp_path / "scan.json"
    cache.write_text("{not json")
    reader = CountingReader()
    np.testing.assert_array_equal(scan_class_counts(paths, reader, 3, cache), EXPECTED)
    assert len(reader.calls) == 3
    reader.calls.clear()
    counts = scan_class_counts(paths, reader, 2, cache)  # other num_classes: rescan
    assert len(reader.calls) == 3
    np.testing.assert_array_equal(counts, np.array(EXPECTED)[:, :2])


def test_failure_keeps_scanned_entries(tmp_path: Path) -> None:
    paths, cache = _write(tmp_path), tmp_path / "scan.json"
    missing = tmp_path / "gone.png"
    with pytest.raises(DataError, match=r"gone\.png: file not found"):
        scan_class_counts([*paths, missing], read_label_png, 3, cache, workers=1)
    reader = CountingReader()
    scan_class_counts(paths, reader, 3, cache)
    assert reader.calls == []
