"""ADE20K: the generated ADEChallengeData2016 tree, the reader, the ade-* presets and prepare."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llseg.data.ade20k.layout import find_ade_samples, load_ade_label
from llseg.data.ade20k.prepare import prepare_ade20k
from llseg.data.ade20k.synthetic import generate_ade_tree
from llseg.data.imageio import read_label_png
from llseg.data.indexfile import read_index
from llseg.data.labels import ADE20K
from llseg.data.splits import PRESETS, train_label_lut
from llseg.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def ade(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ade") / "ADEChallengeData2016"
    generate_ade_tree(root, size=(32, 32), train_images=60, val_images=6)
    return root


def test_label_table() -> None:
    assert ADE20K.num_classes == 151 and ADE20K.class_names[0] == "other" and ADE20K.background_id == 0
    assert ADE20K.class_names[1] == "wall" and ADE20K.class_names[150] == "flag"
    assert ADE20K.unscored == frozenset({0}) and len(set(ADE20K.palette)) == 151


def test_tree_in_the_real_layout(ade: Path) -> None:
    train, val = find_ade_samples(ade, "training"), find_ade_samples(ade, "validation")
    assert [s.id for s in train[:2]] == ["ADE_train_00000001", "ADE_train_00000002"] and len(train) == 60
    assert val[0].image == ade / "images/validation/ADE_val_00000001.jpg"
    assert val[0].label == ade / "annotations/validation/ADE_val_00000001.png"
    with Image.open(train[0].label) as img:
        assert img.mode == "L"
    counts = np.stack([np.bincount(load_ade_label(s.label, s.image).ravel(), minlength=151) for s in train])
    images_per_class = (counts[:, 1:] > 0).sum(axis=0)
    assert images_per_class.min() == 2 and (counts[:, 0] > 0).all()  # 60 x 5 rectangles: each class twice


def test_presets() -> None:
    expected = {"ade-100-50": (100, 50), "ade-50-50": (50, 50, 50), "ade-100-10": (100,) + (10,) * 5,
                "ade-100-5": (100,) + (5,) * 10}
    for name, steps in expected.items():
        spec = PRESETS[name]
        assert spec.increments == steps and spec.mode == "overlap" and spec.background_id == 0  # type: ignore[union-attr]
        assert spec.tasks[0][0] == 1 and spec.tasks[-1][-1] == 150  # type: ignore[union-attr]


@pytest.mark.parametrize("split", ["ade-100-50", "ade-100-5"])
def test_prepare_one_chunk_per_step(ade: Path, tmp_path: Path, split: str) -> None:
    manifest = prepare_ade20k(root=ade, split=split, out=tmp_path, seed=1)
    spec = PRESETS[split]
    rows = read_index(tmp_path / "train_index.txt", columns=3)
    assert len(rows) == manifest.chunk_size * spec.num_steps
    n_train = int(manifest.chunk_size * manifest.train_ratio)
    val = {str(r[0]) for r in read_index(tmp_path / "val_index.txt", columns=3)}
    for t in range(spec.num_steps):
        chunk = rows[t * manifest.chunk_size : (t + 1) * manifest.chunk_size]
        assert not {str(r[0]) for r in chunk[:n_train]} & val  # eval-side images are never trained on
        lut = train_label_lut(spec, t)  # type: ignore[arg-type]
        for _, full, task in chunk[:3]:
            full_ids, task_ids = read_label_png(full), read_label_png(task)
            np.testing.assert_array_equal(task_ids, lut[full_ids])
            assert set(np.unique(task_ids)) <= {0, *spec.tasks[t]}  # type: ignore[union-attr]
            assert set(np.unique(full_ids)) & set(spec.tasks[t])  # type: ignore[union-attr]  # overlap filter
    test = read_index(tmp_path / "test_index.txt", columns=3)
    assert len(test) == 6
    np.testing.assert_array_equal(read_label_png(test[0][1]), load_ade_label(ade / "annotations/validation/ADE_val_00000001.png"))
    assert manifest.dataset == "ade20k" and manifest.test.split == "validation"


def test_errors_name_the_file(ade: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ade-100-50, ade-50-50"):
        prepare_ade20k(root=ade, split="voc-15-1", out=tmp_path)
    with pytest.raises(DataError, match="ADEChallengeData2016"):
        find_ade_samples(tmp_path, "training")
    bad = tmp_path / "bad.png"
    Image.fromarray(np.full((4, 4), 151, np.uint8), mode="L").save(bad)
    with pytest.raises(DataError, match=r"bad.png: contains ids \[151\]"):
        load_ade_label(bad)
    tree = tmp_path / "tree"
    generate_ade_tree(tree, size=(16, 16), train_images=60, val_images=1)
    (tree / "annotations/training/ADE_train_00000003.png").unlink()
    with pytest.raises(DataError, match="ADE_train_00000003.jpg"):
        find_ade_samples(tree, "training")
    with pytest.raises(ConfigError, match="150 classes twice"):
        generate_ade_tree(tmp_path / "small", train_images=10)


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from llseg.cli import main
    from llseg.methods.learner import ContinualLearner

    root, prepared, run = tmp_path / "ADEChallengeData2016", tmp_path / "prepared", tmp_path / "run"
    generate_ade_tree(root, size=(16, 16), train_images=60, val_images=4)
    assert main(["prepare", "--dataset", "ade20k", "--root", str(root), "--split", "ade-100-50", "--out", str(prepared)]) == 0
    assert "2 chunks of" in capsys.readouterr().out
    assert main(["train", "--prepared", str(prepared), "--recipe", "finetune", "--out", str(run), "--set", "epochs=1",
                 "--set", "input_size=16x16", "--set", "batch_size=8"]) == 0
    out = capsys.readouterr().out
    assert "| stage 2 |" in out
    learner = ContinualLearner.from_checkpoint(run / "stage2.pt", device="cpu")
    assert learner.groups[0][:2] == [0, 1] and learner.groups[1] == list(range(101, 151))
    prediction = next(learner.predict([str(root / "images/validation/ADE_val_00000001.jpg")]))
    assert prediction.unscored == (0,) and prediction.pred.shape == (16, 16)


def test_synth_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from llseg.cli import main

    assert main(["synth", "--kind", "ade20k", "--out", str(tmp_path), "--size", "16x24", "--seed", "3"]) == 0
    assert "60 training + 20 validation images of 16x24" in capsys.readouterr().out
    assert len(find_ade_samples(tmp_path, "validation")) == 20


def test_list_splits(capsys: pytest.CaptureFixture[str]) -> None:
    from llseg.cli import main

    assert main(["prepare", "--list-splits"]) == 0
    out = capsys.readouterr().out
    assert "ade-100-5: dataset ade20k, overlap, 11 steps (100-5-5-5-5-5-5-5-5-5-5 classes), background other" in out
    assert "voc-15-1-disjoint: dataset voc, disjoint, 6 steps (15-1-1-1-1-1 classes)" in out
    assert "  step 1: 1 class (16 pottedplant)" in out
    assert "isprs-2-2-1: dataset isprs, overlap, 3 steps" in out and "[domain vaihingen]" in out
    assert out.count("\n") == len(PRESETS) + sum(s.num_steps for s in PRESETS.values())


def test_all_train_trains_on_every_image(ade: Path, tmp_path: Path) -> None:
    """The papers' protocol: each step's train part holds all its images; the eval part repeats trained ones."""
    manifest = prepare_ade20k(root=ade, split="ade-50-50", out=tmp_path, all_train=True)
    spec = PRESETS["ade-50-50"]
    rows = read_index(tmp_path / "train_index.txt", columns=3)
    n, n_train = manifest.chunk_size, int(manifest.chunk_size * manifest.train_ratio)
    counts = np.stack([np.bincount(load_ade_label(s.label).ravel(), minlength=151) for s in find_ade_samples(ade, "training")])
    for t, classes in enumerate(spec.tasks):  # type: ignore[union-attr]
        chunk = rows[t * n : (t + 1) * n]
        trained = {Path(str(r[0])).stem for r in chunk[:n_train]}
        wanted = {f"ADE_train_{i + 1:08d}" for i in np.flatnonzero(counts[:, classes].sum(axis=1) > 0)}
        assert trained == wanted and {Path(str(r[0])).stem for r in chunk[n_train:]} <= trained
    assert not (tmp_path / "val_index.txt").exists() and manifest.options == {"all_train": True}
    assert "validation (checkpoint selection): none" in manifest.summary()
