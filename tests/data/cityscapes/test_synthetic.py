"""The synthetic city generator writes a valid, deterministic Cityscapes-layout dataset."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llseg.cli import main
from llseg.data.cityscapes.synthetic import DOMAINS, SIDECAR_NAME, domain_of, generate_city_dataset, render_scene
from llseg.data.labels import CITYSCAPES, CITYSCAPES_TRAIN_CITIES, CITYSCAPES_VAL_CITIES, IGNORE_INDEX
from llseg.errors import ConfigError, DataError

H, W, N = 64, 128, 2
LUT = CITYSCAPES.id_to_train_id
SPLITS = {"train": CITYSCAPES_TRAIN_CITIES, "val": CITYSCAPES_VAL_CITIES}


def _expected_stems() -> dict[tuple[str, str], list[str]]:
    return {(s, c): [f"{c}_{i:06d}_000019" for i in range(N)] for s, cities in SPLITS.items() for c in cities}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _train_labels(root: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted((root / "gtFine" / "train").rglob("*_gtFine_labelIds.png"))]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate_city_dataset(root, seed=0, size=(H, W), images_per_city=N)
    return root


def test_layout_names_sizes_and_label_ids(dataset: Path) -> None:
    expected = set()
    for (split, city), stems in _expected_stems().items():
        for stem in stems:
            expected.add(f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png")
            expected.add(f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png")
    expected.add(SIDECAR_NAME)
    assert set(_files(dataset)) == expected

    seen_ids: set[int] = set()
    for (split, city), stems in _expected_stems().items():
        for stem in stems:
            img = Image.open(dataset / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            lab = Image.open(dataset / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
            assert (img.mode, img.size) == ("RGB", (W, H))
            assert (lab.mode, lab.size) == ("L", (W, H))
            seen_ids |= set(np.unique(np.asarray(lab)).tolist())
    assert seen_ids <= CITYSCAPES.valid_ids
    assert {7, 23, 26} <= seen_ids  # road, sky, car as raw ids, not train ids
    assert {0, 1, 4} <= seen_ids  # void ids that must map to ignore
    assert {int(LUT[i]) for i in (0, 1, 4)} == {IGNORE_INDEX}


def test_every_class_present_and_layout_plausible(dataset: Path) -> None:
    train_ids = np.stack([LUT[lab] for lab in _train_labels(dataset)])  # (n, H, W)
    counts = np.bincount(train_ids.ravel(), minlength=256)
    assert (counts[: CITYSCAPES.num_classes] > 20).all(), dict(zip(CITYSCAPES.class_names, counts.tolist()))
    # Fraction of images containing each class: even rare ones are common.
    present = np.stack([np.bincount(t.ravel(), minlength=256)[: CITYSCAPES.num_classes] > 0 for t in train_ids])
    assert present.mean(0).min() >= 0.2
    rows = np.broadcast_to(np.arange(H)[None, :, None], train_ids.shape)
    sky_row = rows[train_ids == CITYSCAPES.class_index("sky")].mean() / H
    road_row = rows[train_ids == CITYSCAPES.class_index("road")].mean() / H
    assert sky_row < 0.3 and road_row > 0.7


def test_sidecar_records_args_domains_and_pixels(dataset: Path) -> None:
    side = json.loads((dataset / SIDECAR_NAME).read_text())
    assert side["args"] == {"seed": 0, "size": [H, W], "images_per_city": N} and side["complete"] is True
    keys = {f"{s}/{c}/{stem}" for (s, c), stems in _expected_stems().items() for stem in stems}
    assert set(side["images"]) == keys
    assert set(side["images"].values()) == set(DOMAINS)
    pixels = side["class_pixels"]["train"]
    assert sum(pixels.values()) == len(CITYSCAPES_TRAIN_CITIES) * N * H * W
    counts = np.bincount(np.concatenate([LUT[lab].ravel() for lab in _train_labels(dataset)]), minlength=256)
    assert pixels["car"] == counts[CITYSCAPES.class_index("car")] and pixels["ignore"] == counts[IGNORE_INDEX]


def test_domains_change_colour_not_geometry(dataset: Path) -> None:
    side = json.loads((dataset / SIDECAR_NAME).read_text())
    stats: dict[str, list[tuple[float, float]]] = {d: [] for d in DOMAINS}
    for key, domain in side["images"].items():
        split, city, stem = key.split("/")
        rgb = np.asarray(Image.open(dataset / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"), np.float32)
        stats[domain].append((rgb.mean(), rgb.std()))
    mean = {d: np.mean(v, axis=0) for d, v in stats.items()}
    assert mean["dusk"][0] < 0.75 * mean["clear"][0]  # darker
    assert mean["fog"][1] < 0.75 * mean["clear"][1]  # lower contrast
    # Same rng state, different domain: identical labels, different pixels.
    rgb_a, lab_a = render_scene(np.random.default_rng(5), H, W, "clear")
    rgb_b, lab_b = render_scene(np.random.default_rng(5), H, W, "fog")
    assert np.array_equal(lab_a, lab_b) and not np.array_equal(rgb_a, rgb_b)


def test_domain_mix_is_the_same_in_every_city() -> None:
    for pos in range(len(CITYSCAPES_TRAIN_CITIES)):
        domains = [domain_of(i, pos) for i in range(12)]
        assert (domains.count("clear"), domains.count("dusk"), domains.count("fog")) == (8, 2, 2)


def test_deterministic_and_seed_dependent(dataset: Path, tmp_path: Path) -> None:
    generate_city_dataset(tmp_path / "same", seed=0, size=(H, W), images_per_city=N)
    assert _files(tmp_path / "same") == _files(dataset)
    generate_city_dataset(tmp_path / "other", seed=1, size=(H, W), images_per_city=N)
    a, b = _files(dataset), _files(tmp_path / "other")
    assert a.keys() == b.keys()
    differing = [k for k in a if k.endswith(".png") and a[k] != b[k]]
    assert len(differing) == len(a) - 1  # every PNG differs


def test_rerun_skips_or_regenerates(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    first = generate_city_dataset(out, seed=3, size=(32, 64), images_per_city=2)
    assert not first.reused
    label = out / "gtFine" / "val" / "lindau" / "lindau_000001_000019_gtFine_labelIds.png"
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = generate_city_dataset(out, seed=3, size=(32, 64), images_per_city=2)
    assert again.reused and again.images == first.images
    assert list(again.class_share.items()) == list(first.class_share.items())  # same values, same order
    assert list(first.class_share)[:2] == ["road", "sidewalk"] and sum(first.class_share.values()) == pytest.approx(1)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == mtimes

    # A missing file or an unfinished run (complete: false) forces a regeneration.
    label.unlink()
    assert not generate_city_dataset(out, seed=3, size=(32, 64), images_per_city=2).reused
    assert label.is_file()
    sidecar = out / SIDECAR_NAME
    sidecar.write_text(sidecar.read_text().replace('"complete": true', '"complete": false'))
    assert not generate_city_dataset(out, seed=3, size=(32, 64), images_per_city=2).reused
    assert json.loads(sidecar.read_text())["complete"] is True

    # Other arguments: old trees are removed (stale files too), other files under out are kept.
    stale = out / "gtFine" / "train" / "ulm" / "stale.png"
    stale.write_bytes(b"x")
    keep = out / "notes.txt"
    keep.write_text("mine")
    changed = generate_city_dataset(out, seed=3, size=(32, 64), images_per_city=1)
    assert not changed.reused and changed.images == {"train": 18, "val": 3}
    assert not stale.exists() and not label.exists() and keep.read_text() == "mine"


def test_refuses_to_delete_foreign_data_and_bad_args(tmp_path: Path) -> None:
    real = tmp_path / "cityscapes"
    (real / "leftImg8bit" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no llseg_synthetic.json"):
        generate_city_dataset(real, size=(32, 64), images_per_city=1)
    assert (real / "leftImg8bit" / "train").is_dir()
    with pytest.raises(ConfigError, match="size"):
        generate_city_dataset(tmp_path / "a", size=(8, 64))
    with pytest.raises(ConfigError, match="images_per_city"):
        generate_city_dataset(tmp_path / "a", images_per_city=0)
    with pytest.raises(ConfigError, match="seed"):
        generate_city_dataset(tmp_path / "a", seed=-1)
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="is a file"):
        generate_city_dataset(tmp_path / "file")


def test_cli_synth_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "--out", str(tmp_path), "--size", "32x64", "--images-per-city", "1", "--seed", "7"]) == 0
    text = capsys.readouterr().out
    assert str(tmp_path) in text and "train 18" in text and "val 3" in text and "32x64" in text and "seed 7" in text
    assert "road" in text and "bicycle" in text
    side = json.loads((tmp_path / SIDECAR_NAME).read_text())
    assert side["args"] == {"seed": 7, "size": [32, 64], "images_per_city": 1}
