from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from llseg.data.imageio import read_label_png
from llseg.data.labels import CITYSCAPES, CITYSCAPES_VAL_CITIES
from llseg.data.manifest import Manifest
from llseg.data.prepare import prepare
from llseg.data.splits import get_preset
from llseg.errors import ConfigError, DataError
from tests.data.cityscapes.trees import make_tree

CIL3 = get_preset("cil-3")
GROUPS = CIL3.domains.tasks  # type: ignore[union-attr]
TASK_CLASSES = CIL3.classes.tasks  # type: ignore[union-attr]
# raw label ids of each task's classes
RAW = [[7, 8, 21, 22, 23], [11, 12, 13, 17, 19, 20], [24, 25, 26, 27, 28, 31, 32, 33]]
ALL_CITIES = {"train": [c for g in GROUPS for c in g] + ["erfurt"], "val": list(CITYSCAPES_VAL_CITIES)}


def street(split: str, city: str, j: int) -> np.ndarray | None:
    """8x16 labelIds map: one band per task group, a void band; krefeld has a 3rd, road-only image."""
    if j == 2:
        return np.full((8, 16), 7, np.uint8) if city == "krefeld" else None
    k = sum(map(ord, city)) + j
    label = np.zeros((8, 16), np.uint8)
    label[0:2], label[2:4], label[4:6] = RAW[0][k % 5], RAW[1][k % 6], RAW[2][k % 8]
    label[7, :3] = 4  # "static" -> ignore
    return label


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    make_tree(tmp_path / "cs", ALL_CITIES, per_city=3, label_fn=street)
    return tmp_path / "cs"


def _lines(path: Path) -> list[list[str]]:
    return [line.split(" ") for line in path.read_text().splitlines()]


def _ianvs_rewrite(index: str) -> list[list[str]]:
    """Ianvs' process_dataset: any relative first token -> every token becomes abspath(join(dirname, token))."""
    with open(index) as f:
        lines = [line.strip().split(" ") for line in f.readlines()]
    assert any(not os.path.isabs(t[0]) for t in lines)
    return [[os.path.abspath(os.path.join(os.path.dirname(index), t)) for t in line] for line in lines]


def _city(image_token: str) -> str:
    return Path(image_token).parent.name


def test_prepare_end_to_end(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = prepare("cityscapes", root=Path("cs"), split="cil-3", out=Path("out"), seed=3)
    out = tmp_path / "out"

    assert manifest.root == "cs" and manifest.seed == 3 and manifest.chunk_size == 8
    counts = [(t.available, t.skipped, t.used, t.dropped) for t in manifest.tasks]
    assert counts == [(8, 0, 8, 0), (14, 0, 8, 6), (13, 1, 8, 4)]
    assert [list(t.classes) for t in manifest.tasks] == TASK_CLASSES
    assert [list(t.cities) for t in manifest.tasks] == GROUPS
    assert manifest.files == {
        "train_index.txt": 24, "val_index.txt": 2, "test_index.txt": 6,
        "labels/full": 32, "labels/task1": 8, "labels/task2": 8, "labels/task3": 8,
    }
    assert Manifest.load(out / "manifest.json") == manifest == Manifest.load(out)
    text = manifest.summary()
    assert "task 3: 8 classes" in text and "13 available, 1 without task pixels, 8 used, 4 dropped" in text

    # Ianvs' line-order splitting with incremental_rounds = 3: step = int(N / R) lines per round
    lines = _lines(out / "train_index.txt")
    assert len(lines) == 24 and {len(t) for t in lines} == {3}
    step, n_train = len(lines) // 3, int(8 * 0.8)
    for k in range(3):
        chunk = lines[k * step : (k + 1) * step]
        assert {_city(t[0]) for t in chunk} <= set(GROUPS[k])
        parts = {"train": chunk[:n_train], "eval": chunk[n_train:]}
        for part, rows in parts.items():
            seen: set[int] = set()
            for _image, full, task in rows:
                task_map, full_map = read_label_png(out / task), read_label_png(out / full)
                assert set(np.unique(task_map).tolist()) <= set(TASK_CLASSES[k]) | {255}
                # task map = full map with every non-task class set to 255
                np.testing.assert_array_equal(task_map, np.where(np.isin(full_map, TASK_CLASSES[k]), full_map, 255))
                seen |= set(np.unique(task_map).tolist()) - {255}
            assert seen, f"task {k + 1} {part} part has no task pixel"
            missing = [CITYSCAPES.class_names[c] for c in TASK_CLASSES[k] if c not in seen]
            assert list(getattr(manifest.tasks[k], f"{part}_part_missing")) == missing

    # full labels are the trainId conversion of the source files
    image, full, _ = lines[0]
    src = Path(image.replace("leftImg8bit", "gtFine", 1).replace("_leftImg8bit.png", "_gtFine_labelIds.png"))
    np.testing.assert_array_equal(read_label_png(out / full), CITYSCAPES.id_to_train_id[read_label_png(out / src)])

    val, test = _lines(out / "val_index.txt"), _lines(out / "test_index.txt")
    assert {_city(t[0]) for t in val} == {"erfurt"} and all(t[1] == t[2] for t in val + test)
    assert {_city(t[0]) for t in test} == set(CITYSCAPES_VAL_CITIES)

    # Ianvs rewrites relative tokens against the index folder, from any working directory
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    for name in ("train_index.txt", "val_index.txt", "test_index.txt"):
        for tokens in _ianvs_rewrite(os.path.join("..", "out", name)):
            assert all(os.path.isfile(t) for t in tokens)


def test_prepare_is_idempotent_and_cleans_stale_labels(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = prepare("cityscapes", root=tree, split="cil-3", out=out)
    labels = sorted((out / "labels").rglob("*.png"))
    mtimes = [p.stat().st_mtime_ns for p in labels]
    index = (out / "train_index.txt").read_text()

    again = prepare("cityscapes", root=tree, split="cil-3", out=out)
    assert again == first and (out / "train_index.txt").read_text() == index
    assert [p.stat().st_mtime_ns for p in sorted((out / "labels").rglob("*.png"))] == mtimes

    other = prepare("cityscapes", root=tree, split="cil-3", out=out, seed=1)
    assert (out / "train_index.txt").read_text() != index and other.seed == 1
    referenced = {
        (out / t).resolve() for name in ("train", "val", "test") for line in _lines(out / f"{name}_index.txt") for t in line[1:]
    }
    assert {p.resolve() for p in (out / "labels").rglob("*.png")} == referenced


def test_prepare_bad_arguments(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown dataset 'coco'; valid: cityscapes, voc, isprs, ade20k"):
        prepare("coco", root=tree, split="cil-3", out=tmp_path / "o")
    with pytest.raises(ConfigError, match=r"'cil-9' is an unknown cityscapes split; valid: cil-3"):
        prepare("cityscapes", root=tree, split="cil-9", out=tmp_path / "o")
    with pytest.raises(ConfigError, match=r"'voc-15-1' is not a cityscapes split; valid: cil-3"):
        prepare("cityscapes", root=tree, split="voc-15-1", out=tmp_path / "o")
    with pytest.raises(DataError, match=r"dataset root .*missing does not exist"):
        prepare("cityscapes", root=tmp_path / "missing", split="cil-3", out=tmp_path / "o")


def test_prepare_task_without_usable_images(tmp_path: Path) -> None:
    def no_task2(split: str, city: str, j: int) -> np.ndarray | None:
        label = street(split, city, j)
        if label is not None and city in GROUPS[1]:
            label[2:4] = 7
        return label

    make_tree(tmp_path / "cs", ALL_CITIES, per_city=2, label_fn=no_task2)
    with pytest.raises(ConfigError, match=r"task 2: 14 images in its cities, 0 with its classes"):
        prepare("cityscapes", root=tmp_path / "cs", split="cil-3", out=tmp_path / "o")


def test_prepare_reports_missing_city(tmp_path: Path) -> None:
    cities = {"train": [c for c in ALL_CITIES["train"] if c != "ulm"], "val": ALL_CITIES["val"]}
    make_tree(tmp_path / "cs", cities, per_city=1, label_fn=street)
    with pytest.raises(DataError, match=r"cities ulm not found"):
        prepare("cityscapes", root=tmp_path / "cs", split="cil-3", out=tmp_path / "o")


def test_prepare_on_synthetic_dataset(tmp_path: Path) -> None:
    from llseg.data.cityscapes.synthetic import generate_city_dataset

    generate_city_dataset(tmp_path / "syn", seed=0, size=(32, 64), images_per_city=3)
    manifest = prepare("cityscapes", root=tmp_path / "syn", split="cil-3", out=tmp_path / "out")
    assert manifest.chunk_size >= 2 and manifest.files["train_index.txt"] == 3 * manifest.chunk_size
    assert [t.available for t in manifest.tasks] == [12, 21, 18]
    assert manifest.validation.images == 3 and manifest.test.images == 9
    for k, rows in enumerate(np.array_split(_lines(tmp_path / "out" / "train_index.txt"), 3)):
        assert {_city(r[0]) for r in rows} <= set(GROUPS[k])


def test_first_train_line_shows_every_task1_class(tmp_path: Path) -> None:
    """Ianvs' fwt_splitting trains round 0 on the first line alone; its classes become the first group."""
    from llseg.data.cityscapes.synthetic import generate_city_dataset
    from llseg.data.imageio import read_label_png

    generate_city_dataset(tmp_path / "syn", seed=1, size=(32, 64), images_per_city=4)
    manifest = prepare("cityscapes", root=tmp_path / "syn", split="cil-3", out=tmp_path / "out")
    first = _lines(tmp_path / "out" / "train_index.txt")[0]
    present = set(np.unique(read_label_png(tmp_path / "out" / first[2]))) - {255}
    assert present == set(manifest.tasks[0].classes)
    assert manifest.first_line_missing == ()
    assert "first line" not in manifest.summary()
