"""The synthetic aerial generator writes deterministic ISPRS-layout tiles: two band mappings of one scene distribution."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from llseg.cli import main
from llseg.data.isprs.layout import find_isprs_tiles, load_isprs_label, tile_sides
from llseg.data.isprs.synthetic import BANDS, SIDECAR_NAME, generate_aerial_dataset, render_scene, synthetic_keys
from llseg.data.labels import ISPRS_SOURCE_CLASSES
from llseg.data.prepare import prepare
from llseg.errors import ConfigError, DataError

H, W = 128, 160
NAMES = [name for name, _ in ISPRS_SOURCE_CLASSES]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("aerial")
    generate_aerial_dataset(root, seed=0, size=(H, W))
    return root


def test_layout_sides_and_modes(dataset: Path) -> None:
    keys = synthetic_keys()
    assert keys["potsdam"] == {"train": ("2_10", "2_11", "2_12", "3_10", "3_11", "3_12", "4_10", "4_11", "4_12", "5_10",
                                         "5_11", "5_12"), "test": ("2_13", "2_14", "3_13", "3_14")}
    assert keys["vaihingen"]["train"][:3] == ("1", "3", "5") and keys["vaihingen"]["test"] == ("2", "4", "6", "8")
    tiles = find_isprs_tiles(dataset)
    assert len(tiles) == 32 and len(_files(dataset)) == 2 * 32 + 1
    sides = tile_sides(tiles, seed=0)
    for domain in ("potsdam", "vaihingen"):
        assert sorted(sides[t.id] for t in tiles if t.domain == domain) == ["test"] * 4 + ["train"] * 12
    image = Image.open(dataset / "vaihingen" / "top" / "top_mosaic_09cm_area1.tif")
    label = Image.open(dataset / "potsdam" / "5_Labels_all" / "top_potsdam_2_10_label.tif")
    assert (image.format, image.mode, image.size) == ("TIFF", "RGB", (W, H))
    assert (label.format, label.mode, label.size) == ("TIFF", "RGB", (W, H))


def test_every_class_in_both_domains_with_the_same_statistics(dataset: Path) -> None:
    counts = {"potsdam": np.zeros(6, np.int64), "vaihingen": np.zeros(6, np.int64)}
    tiles_with = {"potsdam": np.zeros(6, np.int64), "vaihingen": np.zeros(6, np.int64)}
    for tile in find_isprs_tiles(dataset):
        ids = load_isprs_label(tile.label)  # strict decoding: only table colours
        c = np.bincount(ids.ravel(), minlength=256)
        assert c[6:].sum() == 0
        counts[tile.domain] += c[:6]
        tiles_with[tile.domain] += c[:6] > 0
    shares = {d: c / c.sum() for d, c in counts.items()}
    for domain, share in shares.items():
        assert (tiles_with[domain][:5] >= 8).all(), (domain, tiles_with[domain].tolist())  # of 16 small tiles
        # sizeable classes: impervious, building, low vegetation, tree; cars and clutter small but present
        assert 0.1 <= share[0] <= 0.35 and 0.08 <= share[1] <= 0.35 and 0.3 <= share[2] <= 0.65, share.round(3).tolist()
        assert 0.04 <= share[3] <= 0.2 and 0.005 <= share[4] <= 0.05 and 0.001 <= share[5] <= 0.03, share.round(3).tolist()
    assert np.abs(shares["potsdam"] - shares["vaihingen"]).max() < 0.06
    side = json.loads((dataset / SIDECAR_NAME).read_text())
    assert side["class_pixels"] == {d: dict(zip(NAMES, c.tolist())) for d, c in counts.items()}
    assert side["class_tiles"] == {d: dict(zip(NAMES, c.tolist())) for d, c in tiles_with.items()}
    assert side["args"] == {"seed": 0, "size": [H, W]} and side["complete"] is True


def test_two_band_mappings_of_one_scene() -> None:
    bands, label = render_scene(np.random.default_rng(1), 384, 384)
    assert (np.bincount(label.ravel(), minlength=6) > 500).all()  # a default-size scene with every class
    potsdam, vaihingen = bands[..., list(BANDS["potsdam"])], bands[..., list(BANDS["vaihingen"])]
    np.testing.assert_array_equal(vaihingen[..., 1:], potsdam[..., :2])  # IRRG: red and green move one channel on
    mean = {cls: bands[label == cls].mean(axis=0) for cls in range(6)}  # R, G, B, NIR per class
    for cls in (2, 3):  # vegetation: green in RGB, red (bright near-infrared) in IRRG
        r, g, _, nir = mean[cls]
        assert g > r + 20 and nir > r + 60 and nir > g + 30
    assert (mean[3] < mean[2] - 10).all()  # tree crowns are darker than the grass in every band
    r, g, b, nir = mean[0]  # impervious: grey, no near-infrared peak
    assert max(r, g, b) - min(r, g, b) < 25 and abs(nir - r) < 25
    # objects are not one or two pixels wide: an opening with a 5 x 5 square keeps almost every pixel
    for cls in range(6):
        assert _opened_share(label == cls, 5) > 0.85, cls


def _opened_share(mask: np.ndarray, k: int) -> float:
    """Share of ``mask``'s pixels that a morphological opening with a k x k square keeps."""
    eroded = sliding_window_view(np.pad(mask, k // 2), (k, k)).all(axis=(-1, -2))
    opened = sliding_window_view(np.pad(eroded, k // 2), (k, k)).any(axis=(-1, -2))
    return float((opened & mask).sum() / mask.sum())


def test_deterministic_and_reused(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_aerial_dataset(a, seed=3, size=(32, 48))
    generate_aerial_dataset(b, seed=3, size=(32, 48))
    generate_aerial_dataset(c, seed=4, size=(32, 48))
    files = _files(a)
    tile = "potsdam/2_Ortho_RGB/top_potsdam_2_10_RGB.tif"
    assert files == _files(b) and files[tile] != _files(c)[tile]
    mtime = (a / tile).stat().st_mtime_ns
    again = generate_aerial_dataset(a, seed=3, size=(32, 48))
    assert again.reused and again.tiles == {"potsdam": {"train": 12, "test": 4}, "vaihingen": {"train": 12, "test": 4}}
    assert (a / tile).stat().st_mtime_ns == mtime
    generate_aerial_dataset(a, seed=3, size=(32, 64))  # other arguments: regenerated
    assert Image.open(a / tile).size == (64, 32)


def test_bad_arguments_and_foreign_trees(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="seed must be an integer >= 0"):
        generate_aerial_dataset(tmp_path / "x", seed=-1)
    with pytest.raises(ConfigError, match="too small"):
        generate_aerial_dataset(tmp_path / "x", size=(8, 64))
    real = tmp_path / "real"
    (real / "potsdam").mkdir(parents=True)
    with pytest.raises(
        DataError, match=r"already holds ISPRS folders \(potsdam/, vaihingen/\) but no llseg_synthetic_aerial\.json"
    ):
        generate_aerial_dataset(real)
    assert (real / "potsdam").is_dir()


def test_cli_and_prepare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "aerial"
    assert main(["synth", "--kind", "aerial", "--out", str(root), "--size", "96x96"]) == 0
    text = capsys.readouterr().out
    assert "synthetic aerial dataset (ISPRS Potsdam + Vaihingen layout)" in text
    assert "tiles 96x96 (HxW), seed 0: potsdam 12 train + 4 test; vaihingen 12 train + 4 test" in text
    assert main(["synth", "--kind", "aerial", "--out", str(root), "--images-per-city", "2"]) == 2
    assert "--images-per-city and --class-tint do not apply to --kind aerial" in capsys.readouterr().err
    # the real-data command works on it; default patch size 512 > tile: one patch per tile
    manifest = prepare("isprs", root=root, split="isprs-2-2-1", out=tmp_path / "whole")
    assert manifest.domains["potsdam"] == {"train_tiles": 12, "test_tiles": 4, "train_patches": 12, "test_patches": 4}
    manifest = prepare("isprs", root=root, split="isprs-2-2-1", out=tmp_path / "out", isprs_options={"patch_size": 48})
    labels = {t.id: load_isprs_label(t.label) for t in find_isprs_tiles(root)}
    quarters = {
        (tile, y, x): set(np.unique(ids[y : y + 48, x : x + 48]).tolist()) for tile, ids in labels.items()
        for y in (0, 48) for x in (0, 48)
    }
    domain_of = {t.id: t.domain for t in find_isprs_tiles(root)}
    sides = tile_sides(find_isprs_tiles(root), seed=0)
    expected = [
        sum(1 for (tile, _, _), c in quarters.items() if sides[tile] == "train" and domain_of[tile] == domain and c & classes)
        for domain, classes in (("potsdam", {1}), ("vaihingen", {2, 3}), ("vaihingen", {4}))
    ]
    assert [t.available for t in manifest.tasks] == expected and min(expected) >= 2
    assert manifest.test.images == 2 * 4 * 4
