"""``prepare("voc", ...)``: per-task image filters, the padded one-task-per-chunk index scheme and errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llseg.cli import main
from llseg.data.imageio import read_label_png
from llseg.data.indexfile import read_index
from llseg.data.labels import IGNORE_INDEX, voc_colormap
from llseg.data.manifest import Manifest
from llseg.data.prepare import prepare
from llseg.data.splits import get_preset
from llseg.data.voc.layout import find_voc_samples, load_voc_label
from llseg.data.voc.synthetic import generate_objects_dataset
from llseg.errors import ConfigError, DataError
from llseg.runner.splitting import fwt_chunks

RATIO = 0.8
TASKS = get_preset("voc-15-1").tasks  # type: ignore[union-attr]  # {1..15}, {16}, {17}, {18}, {19}, {20}
# train-list images and their classes (besides background 0 and void 255)
TRAIN: dict[str, tuple[int, ...]] = {
    "b1": (1, 2), "b2": (3, 4, 5), "b3": (15,), "b4": (6, 15), "b5": (7,), "b6": (15, 16),
    "p1": (16,), "p2": (16, 8), "s1": (17,), "s2": (17, 20), "s3": (17,),
    "f1": (18,), "f2": (18, 19), "f3": (18,), "t1": (19,), "t2": (19, 1),
    "v1": (20,), "v2": (20, 16), "bg": (),
}
TEST: dict[str, tuple[int, ...]] = {"x1": (1,), "x2": (16, 20), "x3": ()}
# counted by hand: overlap keeps an image in every task one of its classes belongs to; disjoint
# drops it from a task when it also holds a class of a later task (b6, p2, t2 from task 1, ...)
EXPECTED = {
    "voc-15-1": [
        {"b1", "b2", "b3", "b4", "b5", "b6", "p2", "t2"}, {"b6", "p1", "p2", "v2"}, {"s1", "s2", "s3"},
        {"f1", "f2", "f3"}, {"f2", "t1", "t2"}, {"s2", "v1", "v2"},
    ],
    "voc-15-1-disjoint": [
        {"b1", "b2", "b3", "b4", "b5"}, {"b6", "p1", "p2"}, {"s1", "s3"},
        {"f1", "f3"}, {"f2", "t1", "t2"}, {"s2", "v1", "v2"},
    ],
}


def _label(classes: tuple[int, ...]) -> np.ndarray:
    """``uint8 (8, 8)``: background, two rows per class, a void run on the last row."""
    label = np.zeros((8, 8), np.uint8)
    for j, c in enumerate(classes):
        label[2 * j : 2 * j + 2, :] = c
    label[7, :3] = IGNORE_INDEX
    return label


def make_voc_tree(root: Path, lists: dict[str, dict[str, tuple[int, ...]]]) -> Path:
    """JPEG images, labels (palette PNGs, every other one mode L) and one list file per entry of ``lists``."""
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    images = {i: c for ids in lists.values() for i, c in ids.items()}
    for k, (i, classes) in enumerate(sorted(images.items())):
        Image.fromarray(np.full((8, 8, 3), 30 * k % 256, np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
        png = Image.fromarray(_label(classes))
        if k % 2 == 0:
            png.putpalette(voc_colormap().ravel().tolist())
        png.save(root / "SegmentationClass" / f"{i}.png")
    for name, ids in lists.items():
        (root / "ImageSets" / "Segmentation" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    return make_voc_tree(tmp_path / "voc", {"train": TRAIN, "val": TEST})


def _ids(lines: list[str], column: int = 0) -> list[str]:
    return [Path(line.split(" ")[column]).stem for line in lines]


def _chunks(out: Path, manifest: Manifest) -> list[tuple[list[str], list[str]]]:
    """Ianvs' fwt_splitting of train_index.txt: pair 0 (first line) and one (train, eval) pair per round."""
    lines = (out / "train_index.txt").read_text().splitlines()
    return fwt_chunks(lines, manifest.train_ratio, len(manifest.tasks))


@pytest.mark.parametrize("split", list(EXPECTED))
def test_task_images_overlap_and_disjoint(voc: Path, tmp_path: Path, split: str) -> None:
    out = tmp_path / "out"
    manifest = prepare("voc", root=voc, split=split, out=out)
    expected = EXPECTED[split]
    assert [t.available for t in manifest.tasks] == [len(e) for e in expected]
    assert [t.available for t in manifest.tasks] == ([8, 4, 3, 3, 3, 3] if split == "voc-15-1" else [5, 3, 2, 2, 3, 3])
    assert manifest.mode == ("overlap" if split == "voc-15-1" else "disjoint") and manifest.train_list == "train"
    assert (manifest.dataset, manifest.num_classes, manifest.background_id) == ("voc", 21, 0)
    assert [list(t.classes) for t in manifest.tasks] == TASKS and manifest.tasks[1].class_names == ("pottedplant",)
    for t, (train, evaluation) in zip(manifest.tasks, _chunks(out, manifest)[1:]):
        assert set(_ids(train + evaluation)) == expected[t.task - 1]
        assert (t.train_images, t.eval_images) == (len(set(_ids(train))), len(set(_ids(evaluation))))
        assert t.train_images + t.eval_images == t.available and t.used == manifest.chunk_size
        assert t.repeated == manifest.chunk_size - t.available
        assert len(list((out / "labels" / f"task{t.task}").glob("*.png"))) == t.available
    in_tasks = set().union(*expected)
    assert manifest.files == {
        "train_index.txt": 6 * manifest.chunk_size, "val_index.txt": manifest.validation.images, "test_index.txt": 3,
        "labels/full": len(in_tasks) + 3, **{f"labels/task{k + 1}": len(e) for k, e in enumerate(expected)},
    }
    assert Manifest.load(out) == manifest
    for name in ("train_index.txt", "val_index.txt", "test_index.txt"):  # every token resolves, Ianvs-style
        read_index(out / name, columns=3, check_exists=True)


@pytest.mark.parametrize("split", list(EXPECTED))
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_one_task_per_chunk_and_no_eval_image_trained_on(voc: Path, tmp_path: Path, split: str, seed: int) -> None:
    out = tmp_path / "out"
    manifest = prepare("voc", root=voc, split=split, out=out, seed=seed)
    size, pairs = manifest.chunk_size, _chunks(out, manifest)
    n_train = int(size * RATIO)
    assert pairs[0] == (pairs[1][0][:1], pairs[1][0][:1])  # round 0: the first line alone
    for k, (train, evaluation) in enumerate(pairs[1:], start=1):
        assert (len(train), len(evaluation)) == (n_train, size - n_train)
        assert {Path(line.split(" ")[2]).parent.name for line in train + evaluation} == {f"task{k}"}
        t = manifest.tasks[k - 1]
        assert len(set(_ids(train))) == t.train_images >= 1 and len(set(_ids(evaluation))) == t.eval_images >= 1
    trained = {i for train, _ in pairs[1:] for i in _ids(train)}
    evaluated = {i for _, evaluation in pairs[1:] for i in _ids(evaluation)}
    assert not trained & evaluated
    for (train, evaluation), expected in zip(pairs[1:], EXPECTED[split]):  # each side complete in every chunk
        assert (set(_ids(train)), set(_ids(evaluation))) == (expected & trained, expected & evaluated)
    val = (out / "val_index.txt").read_text().splitlines()
    assert _ids(val) == sorted(evaluated, key=list(TRAIN).index) and manifest.validation.images == len(val)
    assert all(line.split(" ")[1] == line.split(" ")[2] == f"labels/full/{i}.png" for line, i in zip(val, _ids(val)))
    assert manifest.validation.split == "train" and manifest.test.split == "val"


def test_training_labels_keep_the_task_classes_only(voc: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = prepare("voc", root=voc, split="voc-15-1", out=out)
    for k, (train, evaluation) in enumerate(_chunks(out, manifest)[1:]):
        for line in set(train + evaluation):
            image, full, task = line.split(" ")
            full_map, task_map = read_label_png(out / full), read_label_png(out / task)
            source = voc / "SegmentationClass" / f"{Path(image).stem}.png"
            np.testing.assert_array_equal(full_map, load_voc_label(source))
            keep = np.isin(full_map, [*TASKS[k], 0, IGNORE_INDEX])
            np.testing.assert_array_equal(task_map, np.where(keep, full_map, 0))
    # b6 holds person (task 1) and pottedplant (task 2): each task sees the other's class as background
    b6_task1, b6_task2 = read_label_png(out / "labels/task1/b6.png"), read_label_png(out / "labels/task2/b6.png")
    assert (b6_task1[0, 0], b6_task1[2, 0], b6_task1[7, 0]) == (15, 0, IGNORE_INDEX)
    assert (b6_task2[0, 0], b6_task2[2, 0], b6_task2[7, 0]) == (0, 16, IGNORE_INDEX)
    test = (out / "test_index.txt").read_text().splitlines()
    assert _ids(test) == list(TEST) and all(line.split(" ")[1] == line.split(" ")[2] for line in test)
    x2 = read_label_png(out / test[1].split(" ")[1])
    assert set(np.unique(x2).tolist()) == {0, 16, 20, IGNORE_INDEX}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_first_line_shows_the_most_task1_classes(voc: Path, tmp_path: Path, seed: int) -> None:
    out = tmp_path / "out"
    manifest = prepare("voc", root=voc, split="voc-15-1", out=out, seed=seed)
    first_train = _chunks(out, manifest)[1][0]
    n_classes = {i: len(set(TRAIN[i]) & set(TASKS[0])) for i in _ids(first_train)}
    first = _ids(first_train)[0]
    assert n_classes[first] == max(n_classes.values())
    names = manifest.class_names
    assert manifest.first_line_missing == tuple(names[c] for c in TASKS[0] if c not in TRAIN[first])
    if manifest.first_line_missing:  # the summary tells how to keep step 0 one class group
        assert "hyperparameter split: voc-15-1" in manifest.summary()


def test_deterministic_for_a_seed(voc: Path, tmp_path: Path) -> None:
    def files(out: Path) -> dict[str, bytes]:
        return {n: (out / n).read_bytes() for n in ("train_index.txt", "val_index.txt", "test_index.txt")}

    first = prepare("voc", root=voc, split="voc-15-1", out=tmp_path / "a", seed=5)
    labels = sorted((tmp_path / "a" / "labels").rglob("*.png"))
    mtimes = [p.stat().st_mtime_ns for p in labels]
    assert prepare("voc", root=voc, split="voc-15-1", out=tmp_path / "b", seed=5) == first
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert prepare("voc", root=voc, split="voc-15-1", out=tmp_path / "a", seed=5) == first  # re-run: labels reused
    assert [p.stat().st_mtime_ns for p in labels] == mtimes
    prepare("voc", root=voc, split="voc-15-1", out=tmp_path / "c", seed=6)
    assert files(tmp_path / "c")["train_index.txt"] != files(tmp_path / "a")["train_index.txt"]


def test_errors_name_the_problem(voc: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"nowhere/JPEGImages is missing"):
        prepare("voc", root=tmp_path / "nowhere", split="voc-15-1", out=out)
    with pytest.raises(ConfigError, match=r"'voc-15-2' is an unknown voc split; valid: voc-15-5, voc-15-5-disjoint, "):
        prepare("voc", root=voc, split="voc-15-2", out=out)
    with pytest.raises(ConfigError, match=r"'cil-3' is not a voc split; valid: .*voc-19-1-disjoint$"):
        prepare("voc", root=voc, split="cil-3", out=out)
    lists = voc / "ImageSets" / "Segmentation"
    (lists / "small.txt").write_text("".join(f"{i}\n" for i in TRAIN if i not in ("s1", "s3")))
    too_few = r"at least 2 images per task in the small list .* task 3 \(sheep\): 1 image\(s\) with its classes "
    with pytest.raises(ConfigError, match=too_few + r"\(all tasks: 8, 4, 1, 3, 3, 3\)"):
        prepare("voc", root=voc, split="voc-15-1", out=out, train_list="small")
    (lists / "tiny.txt").write_text("".join(f"{i}\n" for i in TRAIN if i not in ("s1",)))
    with pytest.raises(ConfigError, match=r"task 3 \(sheep\): 1 image\(s\) with its classes and no future class"):
        prepare("voc", root=voc, split="voc-15-1-disjoint", out=out, train_list="tiny")
    (lists / "leaky.txt").write_text("b1\nx1\n")
    with pytest.raises(ConfigError, match=r"1 ids are in both the leaky and the val list .*\(e\.g\. x1\)"):
        prepare("voc", root=voc, split="voc-15-1", out=out, train_list="leaky")
    with pytest.raises(ConfigError, match=r"train_ratio must be strictly between 0 and 1"):
        prepare("voc", root=voc, split="voc-15-1", out=out, train_ratio=1.0)
    with pytest.raises(ConfigError, match=r"apply to dataset voc only"):
        prepare("cityscapes", root=voc, split="cil-3", out=out, train_list="train_aug")


def test_cli(voc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["prepare", "--dataset", "voc", "--root", str(voc), "--split", "voc-15-1-disjoint", "--out", str(out)]
    assert main([*argv, "--train-list", "train", "--test-list", "val", "--seed", "2"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"split voc-15-1-disjoint of voc at {voc.as_posix()} (seed 2")
    assert "task 2: 1 class (pottedplant); images: 3 of the train list (disjoint)" in text
    assert "padding: every chunk is as long as the largest task needs" in text
    assert "test: test_index.txt, 3 images of the val list" in text
    assert Manifest.load(out).summary() == text.rstrip("\n")
    bad = ["prepare", "--dataset", "cityscapes", "--root", str(voc), "--split", "cil-3", "--out", str(out)]
    assert main([*bad, "--test-list", "val"]) == 2
    assert "--train-list, --test-list) apply to dataset voc only" in capsys.readouterr().err


def test_synthetic_objects_counts_match_the_label_files(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    generate_objects_dataset(root, seed=0, size=(32, 32), images=80)
    manifest = prepare("voc", root=root, split="voc-15-5", out=tmp_path / "out")
    present = [set(np.unique(load_voc_label(s.label)).tolist()) for s in find_voc_samples(root, "train")]
    tasks = [set(range(1, 16)), set(range(16, 21))]
    expected = [sum(1 for p in present if p & task) for task in tasks]
    assert [t.available for t in manifest.tasks] == expected and min(expected) >= 2
    assert [t.train_images + t.eval_images for t in manifest.tasks] == expected
    assert [manifest.files[f"labels/task{k}"] for k in (1, 2)] == expected
    assert manifest.files["labels/full"] == sum(1 for p in present if p - {0, IGNORE_INDEX}) + 20
    assert manifest.test.images == 20 and manifest.validation.split == "train"
    for t, (train, evaluation) in zip(manifest.tasks, _chunks(tmp_path / "out", manifest)[1:]):
        assert len(set(_ids(train))) == t.train_images and len(set(_ids(evaluation))) == t.eval_images
