"""DecodedCache: decoded and resized arrays in memory and on disk, keyed by content, bounded (LRU)."""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import llseg.data.dataset as dataset
from llseg.data.dataset import DecodedCache, SegmentationPairs, channel_lut, default_cache_dir
from llseg.data.imageio import read_label_png, read_rgb, write_label_png
from llseg.data.transforms import resize_label, resize_pair
from llseg.errors import ConfigError, DataError


def write_pair(folder: Path, seed: int = 0, shape: tuple[int, int] = (24, 40)) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    image, label = folder / f"img{seed}.png", folder / f"lab{seed}.png"
    Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(image)
    write_label_png(label, rng.integers(0, 19, shape, dtype=np.uint8))
    return image, label


def entries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.npy"))


def test_resized_entries_equal_resizing_the_decoded_arrays(tmp_path: Path) -> None:
    image, label = write_pair(tmp_path)
    cache = DecodedCache(directory=tmp_path / "cache")
    rgb = cache.get("rgb", image, (12, 16))
    expected, _ = resize_pair(torch.from_numpy(read_rgb(image).copy()).permute(2, 0, 1).float(), None, (12, 16))
    assert rgb.dtype == np.uint8 and rgb.shape == (12, 16, 3)
    np.testing.assert_array_equal(rgb, expected.round().permute(1, 2, 0).numpy().astype(np.uint8))
    lab = cache.get("label", label, (12, 16))
    np.testing.assert_array_equal(lab, resize_label(torch.from_numpy(read_label_png(label).copy()), (12, 16)).numpy())
    np.testing.assert_array_equal(cache.get("rgb", image), read_rgb(image))  # no size: as decoded
    assert len(entries(tmp_path / "cache")) == 3


def test_disk_entries_serve_a_new_process_without_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image, label = write_pair(tmp_path)
    first = DecodedCache(directory=tmp_path / "cache")
    rgb, lab = first.get("rgb", image, (12, 16)), first.get("label", label)

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded although the disk cache holds the entry")

    monkeypatch.setattr(dataset, "read_rgb", no_decoding)
    monkeypatch.setattr(dataset, "read_label_png", no_decoding)
    second = DecodedCache(directory=tmp_path / "cache")  # an empty memory: a new process
    np.testing.assert_array_equal(second.get("rgb", image, (12, 16)), rgb)
    np.testing.assert_array_equal(second.get("label", label), lab)


def test_an_edited_file_is_decoded_again(tmp_path: Path) -> None:
    image, _ = write_pair(tmp_path)
    cache = DecodedCache(directory=tmp_path / "cache")
    before = cache.get("rgb", image)
    Image.fromarray(255 - before).save(image)
    os.utime(image, ns=(1, 1))  # a different mtime even on coarse file systems
    np.testing.assert_array_equal(cache.get("rgb", image), 255 - before)
    np.testing.assert_array_equal(DecodedCache(directory=tmp_path / "cache").get("rgb", image), 255 - before)


def test_damaged_entries_are_replaced(tmp_path: Path) -> None:
    image, _ = write_pair(tmp_path)
    DecodedCache(directory=tmp_path / "cache").get("rgb", image)
    (entry,) = entries(tmp_path / "cache")
    entry.write_bytes(entry.read_bytes()[:100])  # truncated, e.g. by a full disk
    np.testing.assert_array_equal(DecodedCache(directory=tmp_path / "cache").get("rgb", image), read_rgb(image))
    assert np.load(entry).shape == read_rgb(image).shape  # rewritten whole


def test_unwritable_folder_is_reported_once_and_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    image, label = write_pair(tmp_path)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    cache = DecodedCache(directory=blocker / "cache")
    with caplog.at_level(logging.WARNING, logger="llseg.data.dataset"):
        np.testing.assert_array_equal(cache.get("rgb", image), read_rgb(image))
        np.testing.assert_array_equal(cache.get("label", label), read_label_png(label))
    warnings = [r for r in caplog.records if "LLSEG_CACHE_DIR" in r.getMessage()]
    assert len(warnings) == 1 and cache.directory is None


def test_cache_folder_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLSEG_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" and DecodedCache().directory == tmp_path / "c"
    monkeypatch.setenv("LLSEG_CACHE_DIR", "off")
    assert default_cache_dir() is None
    monkeypatch.delenv("LLSEG_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "llseg" / "decoded"


def read_in_process(args: tuple[str, str, str]) -> bytes:
    folder, image, label = args
    cache = DecodedCache(directory=folder)
    return cache.get("rgb", Path(image), (12, 16)).tobytes() + cache.get("label", Path(label), (12, 16)).tobytes()


def test_concurrent_processes_share_whole_entries(tmp_path: Path) -> None:
    pairs = [write_pair(tmp_path, seed) for seed in range(3)]
    jobs = [(str(tmp_path / "cache"), str(i), str(lab)) for i, lab in pairs] * 4
    with mp.get_context("spawn").Pool(4) as pool:
        results = pool.map(read_in_process, jobs)
    expected = [read_in_process((str(tmp_path / "fresh"), str(i), str(lab))) for i, lab in pairs]
    assert results == expected * 4
    assert len(entries(tmp_path / "cache")) == 6 and not list((tmp_path / "cache").rglob("*.tmp"))


def test_pairs_of_different_sizes_are_refused_before_resizing(tmp_path: Path) -> None:
    image, _ = write_pair(tmp_path, 0, (24, 40))
    _, label = write_pair(tmp_path, 1, (24, 32))
    data = SegmentationPairs([image], [label], lut=channel_lut(range(19)), size=(12, 16))
    with pytest.raises(DataError, match=r"img0.png is \(24, 40\) but label .*lab1.png is \(24, 32\)"):
        data[0]


def test_two_checkouts_of_the_same_data_share_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image, label = write_pair(tmp_path)
    DecodedCache(directory=tmp_path / "cache").get("rgb", image, (12, 16))
    other = tmp_path / "checkout2"
    other.mkdir()
    copy = other / image.name
    copy.write_bytes(image.read_bytes())
    os.utime(copy, ns=(5, 5))  # another path and another mtime, the same content
    monkeypatch.setattr(dataset, "read_rgb", lambda *args: pytest.fail("decoded although the entry exists"))
    DecodedCache(directory=tmp_path / "cache").get("rgb", copy, (12, 16))
    assert len(entries(tmp_path / "cache")) == 1


def test_the_disk_cache_is_bounded_and_evicts_the_least_recently_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = [write_pair(tmp_path, seed) for seed in range(4)]
    one = 8 * 8 * 3 + 128  # a 8x8 RGB entry with its .npy header
    cache = DecodedCache(directory=tmp_path / "cache", disk_bytes=int(2.5 * one), max_bytes=0)
    first = cache.get("rgb", pairs[0][0], (8, 8))
    cache.get("rgb", pairs[1][0], (8, 8))
    (entry0,) = [e for e in entries(tmp_path / "cache") if np.array_equal(np.load(e), first)]
    os.utime(entry0, (1, 1))
    cache.get("rgb", pairs[0][0], (8, 8))  # memory is off (max_bytes=0): a disk hit renews entry 0
    assert entry0.stat().st_mtime > 1
    for other in (entries(tmp_path / "cache")):
        if other != entry0:
            os.utime(other, (2, 2))  # entry 1: used longest ago
    cache.get("rgb", pairs[2][0], (8, 8))  # 3 entries > 2.5: evict down to 2.25, the oldest first
    left = entries(tmp_path / "cache")
    assert len(left) == 2 and entry0 in left
    assert sum(e.stat().st_size for e in left) <= 2.5 * one

    monkeypatch.setenv("LLSEG_CACHE_MAX_GB", "0.5")
    assert DecodedCache(directory=tmp_path / "c2").disk_bytes == 500_000_000
    monkeypatch.setenv("LLSEG_CACHE_MAX_GB", "lots")
    with pytest.raises(ConfigError, match="LLSEG_CACHE_MAX_GB='lots': expected a number of GB"):
        DecodedCache(directory=tmp_path / "c3")
