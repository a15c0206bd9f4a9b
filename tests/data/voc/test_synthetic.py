"""The synthetic objects generator writes a deterministic VOC-layout dataset with VOC-like structure."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llseg.cli import main
from llseg.data.labels import IGNORE_INDEX, VOC, voc_colormap
from llseg.data.splits import ClassIncrementalSpec, get_preset, membership
from llseg.data.voc.layout import find_voc_samples, load_voc_label
from llseg.data.voc.objects import CLASS_HUES
from llseg.data.voc.synthetic import SIDECAR_NAME, generate_objects_dataset, render_objects
from llseg.errors import ConfigError, DataError

H, W, N = 64, 64, 160  # N train images, N // 4 val


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("objects")
    generate_objects_dataset(root, seed=0, size=(H, W), images=N)
    return root


@pytest.fixture(scope="module")
def train_counts(dataset: Path) -> np.ndarray:
    """``int (N, 256)``: pixels per id of each train label, read back through the VOC reader."""
    return np.stack([np.bincount(load_voc_label(s.label).ravel(), minlength=256) for s in find_voc_samples(dataset, "train")])


def test_layout_modes_and_lists(dataset: Path) -> None:
    ids = {"train": [f"train_{i:06d}" for i in range(N)], "val": [f"val_{i:06d}" for i in range(N // 4)]}
    expected = {SIDECAR_NAME, *(f"ImageSets/Segmentation/{s}.txt" for s in ("train", "val", "trainval"))}
    for i in ids["train"] + ids["val"]:
        expected |= {f"JPEGImages/{i}.jpg", f"SegmentationClass/{i}.png"}
    assert set(_files(dataset)) == expected
    for split in ("train", "val"):
        assert [s.id for s in find_voc_samples(dataset, split)] == ids[split]
    assert [s.id for s in find_voc_samples(dataset, "trainval")] == ids["train"] + ids["val"]
    img, lab = Image.open(dataset / "JPEGImages" / "val_000003.jpg"), Image.open(dataset / "SegmentationClass" / "val_000003.png")
    assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (W, H))
    assert (lab.format, lab.mode, lab.size) == ("PNG", "P", (W, H))
    assert lab.getpalette() == voc_colormap().ravel().tolist()


def test_every_class_in_train_with_cluttered_background(dataset: Path, train_counts: np.ndarray) -> None:
    present = train_counts[:, : VOC.num_classes] > 0
    assert present[:, 0].all() and (present[:, 1:].sum(axis=0) >= 7).all(), present.sum(axis=0).tolist()
    assert present[:, VOC.class_index("person")].sum() == present[:, 1:].sum(axis=0).max()  # the most frequent
    objects = present[:, 1:].sum(axis=1)
    assert objects.min() >= 1 and objects.max() >= 4 and 1.3 <= objects.mean() <= 2.5
    assert set(np.flatnonzero(train_counts.sum(axis=0)).tolist()) <= set(range(21)) | {IGNORE_INDEX}
    shares = train_counts.sum(axis=0) / train_counts.sum()
    assert 0.6 <= shares[0] <= 0.9 and 0.01 <= shares[IGNORE_INDEX] <= 0.1
    # Clutter: the background of an image is not one flat colour but many distinct ones.
    rgb = np.asarray(Image.open(dataset / "JPEGImages" / "train_000000.jpg"), dtype=np.float32)
    bg = load_voc_label(dataset / "SegmentationClass" / "train_000000.png") == 0
    assert rgb[bg].std(axis=0).min() > 15


def test_void_pixels_outline_objects(dataset: Path) -> None:
    for i in range(5):
        lab = load_voc_label(dataset / "SegmentationClass" / f"train_{i:06d}.png")
        void = lab == IGNORE_INDEX
        assert void.any()
        padded = np.pad(lab, 1, constant_values=0)
        neighbours = np.stack([padded[1 + dy : 1 + dy + H, 1 + dx : 1 + dx + W] for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))])
        touches_object = ((neighbours > 0) & (neighbours < IGNORE_INDEX)).any(axis=0)
        assert touches_object[void].mean() > 0.9  # a band along object outlines, not random pixels


def test_voc_15_1_steps_overlap_vs_disjoint(train_counts: np.ndarray) -> None:
    overlap = get_preset("voc-15-1")
    assert isinstance(overlap, ClassIncrementalSpec)
    disjoint = dataclasses.replace(overlap, mode="disjoint")
    counts = train_counts[:, : VOC.num_classes]
    ov, dj = membership(overlap, counts).sum(axis=0), membership(disjoint, counts).sum(axis=0)
    assert ov.shape == dj.shape == (6,)
    assert (ov >= dj).all() and ov[0] > dj[0]  # future classes remove base images in disjoint
    assert ov[-1] == dj[-1]  # the last step has no future class
    assert ov[0] == ov.max() and ov[0] >= 0.85 * N and (dj[1:] >= 5).all(), (ov.tolist(), dj.tolist())


def test_sidecar_matches_labels(dataset: Path, train_counts: np.ndarray) -> None:
    side = json.loads((dataset / SIDECAR_NAME).read_text())
    assert side["args"] == {"seed": 0, "size": [H, W], "images": N, "class_tint": 0.0} and side["complete"] is True
    assert side["splits"] == {"train": N, "val": N // 4}
    names = VOC.class_names
    assert side["class_images"]["train"] == {n: int((train_counts[:, k] > 0).sum()) for k, n in enumerate(names)}
    assert side["class_pixels"]["train"]["ignore"] == int(train_counts[:, IGNORE_INDEX].sum())


def test_deterministic_and_reused(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_objects_dataset(a, seed=3, size=(32, 48), images=8)
    generate_objects_dataset(b, seed=3, size=(32, 48), images=8)
    generate_objects_dataset(c, seed=4, size=(32, 48), images=8)
    files = _files(a)
    assert len(files) == 2 * 10 + 4 and files == _files(b)
    assert files["JPEGImages/train_000000.jpg"] != _files(c)["JPEGImages/train_000000.jpg"]
    mtime = (a / "JPEGImages" / "train_000000.jpg").stat().st_mtime_ns
    again = generate_objects_dataset(a, seed=3, size=(32, 48), images=8)
    assert again.reused and again.images == {"train": 8, "val": 2}
    assert (a / "JPEGImages" / "train_000000.jpg").stat().st_mtime_ns == mtime


def test_class_tint_moves_object_colours_to_their_class_hue_only() -> None:
    """Same draws with and without the tint: labels and background pixels are identical, and every
    class's pixels move towards its own hue (the hues are distinct)."""
    closer = []
    for index in range(12):
        plain_rgb, plain_label = render_objects(np.random.default_rng([7, index]), 96, 96)
        rgb, label = render_objects(np.random.default_rng([7, index]), 96, 96, class_tint=0.5)
        assert np.array_equal(label, plain_label)
        assert np.array_equal(rgb[label == 0], plain_rgb[label == 0])
        for c in set(np.unique(label).tolist()) - {0, IGNORE_INDEX}:
            mask = label == c
            distance = [np.abs(x[mask].astype(np.float32) - CLASS_HUES[c]).mean() for x in (rgb, plain_rgb)]
            closer.append(distance[0] < distance[1])
    assert len(closer) >= 20 and all(closer)
    hues = CLASS_HUES[1:]
    gaps = np.linalg.norm(hues[:, None] - hues[None], axis=-1) + np.eye(len(hues)) * 1e9
    assert hues.shape == (20, 3) and gaps.min() > 40


def test_class_tint_is_part_of_the_dataset_identity(tmp_path: Path) -> None:
    plain = generate_objects_dataset(tmp_path, seed=1, size=(32, 32), images=4)
    tinted = generate_objects_dataset(tmp_path, seed=1, size=(32, 32), images=4, class_tint=0.5)
    assert not tinted.reused and json.loads((tmp_path / SIDECAR_NAME).read_text())["args"]["class_tint"] == 0.5
    assert plain.class_images == tinted.class_images  # same scenes, other colours
    with pytest.raises(ConfigError, match="class_tint must be a number in 0..1"):
        generate_objects_dataset(tmp_path / "x", class_tint=1.5)


def test_bad_arguments_and_foreign_trees(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="images must be an integer >= 4"):
        generate_objects_dataset(tmp_path / "x", images=3)
    with pytest.raises(ConfigError, match="seed must be an integer >= 0"):
        generate_objects_dataset(tmp_path / "x", seed=-1)
    with pytest.raises(ConfigError, match="too small"):
        generate_objects_dataset(tmp_path / "x", size=(8, 64))
    real = tmp_path / "real"
    (real / "JPEGImages").mkdir(parents=True)
    with pytest.raises(DataError, match="already holds VOC folders but no llseg_synthetic_objects.json"):
        generate_objects_dataset(real, images=4)
    assert (real / "JPEGImages").is_dir()


def test_cli_kind_objects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "--kind", "objects", "--out", str(tmp_path / "o"), "--size", "16x16"]) == 0
    assert "VOC layout" in capsys.readouterr().out
    assert len(find_voc_samples(tmp_path / "o", "train")) == 400
    assert main(["synth", "--kind", "objects", "--out", str(tmp_path / "p"), "--images-per-city", "2"]) == 2
    assert "--images-per-city applies to --kind city only" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "q"), "--class-tint", "0.5"]) == 2
    assert "--class-tint applies to --kind objects only" in capsys.readouterr().err
    assert main(["synth", "--kind", "objects", "--out", str(tmp_path / "t"), "--size", "16x16", "--class-tint", "0.4"]) == 0
    assert json.loads((tmp_path / "t" / SIDECAR_NAME).read_text())["args"]["class_tint"] == 0.4
