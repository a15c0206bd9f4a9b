"""``prepare("isprs", ...)``: per-step domain and class filters, class handling options, padded chunks, errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llseg.cli import main
from llseg.data.imageio import read_label_png
from llseg.data.indexfile import read_index
from llseg.data.isprs.prepare import clutter_lut, isprs_spec
from llseg.data.labels import IGNORE_INDEX
from llseg.data.manifest import Manifest
from llseg.data.prepare import prepare
from llseg.data.splits import PRESETS, ClassDomainIncrementalSpec, get_preset, isprs_split, train_label_lut
from llseg.errors import ConfigError, DataError
from llseg.runner.splitting import fwt_chunks

from .trees import BUILDING, CAR, CLUTTER, IMPERVIOUS, LOW_VEGETATION, TREE, quadrants, write_tile

IMP, BLD, LOW, TRE = IMPERVIOUS, BUILDING, LOW_VEGETATION, TREE
# Tiles of 32 x 32 px cut into four 16 px patches: top-left (tl), top-right (tr), bottom-left (bl), bottom-right (br).
TRAIN_TILES = {
    ("potsdam", "2_10"): [[IMP], [BLD, IMP], [LOW], [TRE, CAR]],
    ("potsdam", "2_11"): [[BLD], [CLUTTER], [IMP, LOW], [CAR]],
    ("vaihingen", "1"): [[LOW], [TRE], [CAR, IMP], [BLD]],
    ("vaihingen", "3"): [[LOW, TRE], [CAR], [IMP], [CLUTTER]],
}
TEST_TILES = {
    ("potsdam", "2_13"): [[IMP], [BLD], [LOW, CLUTTER], [CAR]],
    ("vaihingen", "2"): [[TRE], [CAR], [BLD], [IMP]],
}
CORNERS = ("00000_00000", "00000_00016", "00016_00000", "00016_00016")


def _patch(domain: str, key: str, q: int) -> str:
    tile = f"potsdam_{key}" if domain == "potsdam" else f"vaihingen_area{key}"
    return f"{tile}_{CORNERS[q]}"


P10, P11, V1, V3 = (lambda q, d=d, k=k: _patch(d, k, q) for d, k in TRAIN_TILES)  # type: ignore[misc]
# Counted by hand from TRAIN_TILES: step 0 = Potsdam patches with a step-0 class (the background alone
# never qualifies a patch), later steps = Vaihingen patches with a class of the step.
EXPECTED = {
    ("isprs-2-2-1", "impervious"): [{P10(1), P11(0)}, {V1(0), V1(1), V3(0)}, {V1(2), V3(1)}],
    ("isprs-2-2-1", "none"): [{P10(0), P10(1), P11(0), P11(2)}, {V1(0), V1(1), V3(0)}, {V1(2), V3(1)}],
    ("isprs-4-1", "impervious"): [{P10(1), P10(2), P10(3), P11(0), P11(2)}, {V1(2), V3(1)}],
    ("isprs-4-1", "none"): [{P10(0), P10(1), P10(2), P10(3), P11(0), P11(2)}, {V1(2), V3(1)}],
    ("isprs-2-3", "impervious"): [{P10(1), P11(0)}, {V1(0), V1(1), V1(2), V3(0), V3(1)}],
    ("isprs-2-1", "impervious"): [{P10(1), P11(0)}, {V1(0), V3(0)}, {V1(1), V3(0)}, {V1(2), V3(1)}],
}


@pytest.fixture
def isprs(tmp_path: Path) -> Path:
    root = tmp_path / "isprs"
    for (domain, key), parts in {**TRAIN_TILES, **TEST_TILES}.items():
        write_tile(root, domain, key, quadrants(parts))
    return root


def _chunks(out: Path, manifest: Manifest) -> list[tuple[list[str], list[str]]]:
    lines = (out / "train_index.txt").read_text().splitlines()
    return fwt_chunks(lines, manifest.train_ratio, len(manifest.tasks))


def _ids(lines: list[str]) -> set[str]:
    return {Path(line.split(" ")[0]).stem for line in lines}


def test_presets_and_spec() -> None:
    names = [n for n, s in PRESETS.items() if isinstance(s, ClassDomainIncrementalSpec)]
    assert names == ["isprs-4-1", "isprs-2-3", "isprs-2-2-1", "isprs-2-1"]
    spec = get_preset("isprs-2-2-1")
    assert isinstance(spec, ClassDomainIncrementalSpec) and spec.dataset == "isprs"
    assert (spec.background_id, spec.tasks, spec.step_domains) == (0, [[1], [2, 3], [4]], ("potsdam", "vaihingen", "vaihingen"))
    nobg = isprs_spec("isprs-2-2-1", "none")
    assert (nobg.background_id, nobg.tasks, nobg.dataset) == (None, [[0, 1], [2, 3], [4]], "isprs-nobg")
    assert isprs_split("2-1").increments == (1, 1, 1, 1) and isprs_split("2-1", "none").increments == (2, 1, 1, 1)
    assert isprs_split("4-1", "none").tasks == [[0, 1, 2, 3], [4]]
    # training labels: other steps' classes become the background 0, or 255 without a background
    assert train_label_lut(spec, 1)[:5].tolist() == [0, 0, 2, 3, 0]
    assert train_label_lut(nobg, 1)[:5].tolist() == [255, 255, 2, 3, 255]
    assert clutter_lut("background")[:7].tolist() == [0, 1, 2, 3, 4, 0, 255]
    assert clutter_lut("ignore")[:7].tolist() == [0, 1, 2, 3, 4, 255, 255]
    with pytest.raises(ConfigError, match=r"4 class groups but 2 step domains"):
        ClassDomainIncrementalSpec(num_classes=5, increments="2-1", step_domains=("a", "b"))
    member = spec.membership(np.array([[5, 1, 0, 0, 0], [5, 0, 1, 0, 0], [5, 0, 1, 0, 0], [5, 0, 0, 0, 0]]),
                             ["potsdam", "potsdam", "vaihingen", "vaihingen"])
    assert member.tolist() == [[True, False, False], [False, False, False], [False, True, False], [False, False, False]]


@pytest.mark.parametrize("split, background", list(EXPECTED))
def test_step_patches_per_domain(isprs: Path, tmp_path: Path, split: str, background: str) -> None:
    out = tmp_path / "out"
    manifest = prepare("isprs", root=isprs, split=split, out=out, isprs_options={"patch_size": 16, "background": background})
    expected = EXPECTED[(split, background)]
    assert [t.available for t in manifest.tasks] == [len(e) for e in expected]
    assert [t.domain for t in manifest.tasks] == ["potsdam"] + ["vaihingen"] * (len(expected) - 1)
    assert manifest.dataset == ("isprs" if background == "impervious" else "isprs-nobg")
    assert manifest.background_id == (0 if background == "impervious" else None)
    assert manifest.options == {"background": background, "clutter": "background" if background == "impervious" else "ignore",
                                "patch_size": 16, "eroded": False, "colour_tolerance": 0}
    assert manifest.domains == {
        "potsdam": {"train_tiles": 2, "test_tiles": 1, "train_patches": 8, "test_patches": 4},
        "vaihingen": {"train_tiles": 2, "test_tiles": 1, "train_patches": 8, "test_patches": 4},
    }
    for t, (train, evaluation) in zip(manifest.tasks, _chunks(out, manifest)[1:]):
        assert _ids(train) | _ids(evaluation) == expected[t.task - 1]
        assert (t.train_images, t.eval_images) == (len(_ids(train)), len(_ids(evaluation)))
        assert not _ids(train) & _ids(evaluation) and t.used == manifest.chunk_size
        assert {Path(line.split(" ")[0]).parent.name for line in train + evaluation} == {t.domain}
    assert manifest.files["test_index.txt"] == manifest.test.images == 8
    assert Manifest.load(out) == manifest
    for name in ("train_index.txt", "val_index.txt", "test_index.txt"):
        read_index(out / name, columns=3, check_exists=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_eval_patch_trained_on_and_test_covers_both_domains(isprs: Path, tmp_path: Path, seed: int) -> None:
    out = tmp_path / "out"
    manifest = prepare("isprs", root=isprs, split="isprs-2-1", out=out, seed=seed, isprs_options={"patch_size": 16})
    pairs = _chunks(out, manifest)
    n_train = int(manifest.chunk_size * manifest.train_ratio)
    assert pairs[0] == (pairs[1][0][:1], pairs[1][0][:1])
    for k, (train, evaluation) in enumerate(pairs[1:], start=1):
        assert (len(train), len(evaluation)) == (n_train, manifest.chunk_size - n_train)
        assert {Path(line.split(" ")[2]).parent.parent.name for line in train + evaluation} == {f"task{k}"}
    trained = set().union(*(_ids(train) for train, _ in pairs[1:]))
    evaluated = set().union(*(_ids(evaluation) for _, evaluation in pairs[1:]))
    assert not trained & evaluated
    assert _ids((out / "val_index.txt").read_text().splitlines()) == evaluated
    test = (out / "test_index.txt").read_text().splitlines()
    assert test == [
        f"images/{d}/{p}.png labels/full/{d}/{p}.png labels/full/{d}/{p}.png"
        for d, k in TEST_TILES for p in (_patch(d, k, q) for q in range(4))
    ]


def test_labels_background_and_clutter_options(isprs: Path, tmp_path: Path) -> None:
    def label(out: Path, kind: str, domain: str, patch: str) -> np.ndarray:
        return read_label_png(out / "labels" / kind / domain / f"{patch}.png")

    lag = tmp_path / "lag"  # impervious background, clutter folded into it (LAG)
    prepare("isprs", root=isprs, split="isprs-2-2-1", out=lag, isprs_options={"patch_size": 16})
    # full labels: train ids, clutter ignored; the test patch with low vegetation over clutter
    np.testing.assert_array_equal(label(lag, "full", "potsdam", _patch("potsdam", "2_13", 2))[[0, 8]], [[LOW] * 16, [255] * 16])
    # step 1 on the Potsdam patch with building over impervious: both kept (impervious = background)
    assert np.unique(label(lag, "task1", "potsdam", P10(1))[:8]).tolist() == [BLD]
    assert np.unique(label(lag, "task1", "potsdam", P10(1))[8:]).tolist() == [IMP]
    # step 3 (car) on the Vaihingen patch with car over impervious
    assert np.unique(label(lag, "task3", "vaihingen", V1(2))[:8]).tolist() == [CAR]
    # step 2 (low vegetation, tree) on V1(0): kept; V3 tiles' clutter-only patch is in no step
    assert np.unique(label(lag, "task2", "vaihingen", V1(0))).tolist() == [LOW]
    assert not (lag / "labels" / "full" / "vaihingen" / f"{V3(3)}.png").exists()

    nobg = tmp_path / "nobg"  # no background: other classes and clutter ignored
    prepare("isprs", root=isprs, split="isprs-2-2-1", out=nobg, isprs_options={"patch_size": 16, "background": "none"})
    assert np.unique(label(nobg, "task1", "potsdam", P11(2))).tolist() == [IMP, 255]  # low vegetation ignored
    assert np.unique(label(nobg, "task1", "potsdam", P10(1))).tolist() == [IMP, BLD]  # impervious: a step-0 class
    assert np.unique(label(lag, "task1", "potsdam", P11(0))).tolist() == [BLD]

    four = tmp_path / "four"  # 4-1: the Potsdam patch with tree over car; car is step 2's class
    prepare("isprs", root=isprs, split="isprs-4-1", out=four, isprs_options={"patch_size": 16})
    assert np.unique(label(four, "full", "potsdam", P10(3))).tolist() == [TRE, CAR]
    assert np.unique(label(four, "task1", "potsdam", P10(3))).tolist() == [IMP, TRE]  # car -> background


def test_clutter_in_training_labels(tmp_path: Path) -> None:
    root = tmp_path / "isprs"
    tiles = {**TRAIN_TILES, ("potsdam", "2_10"): [[IMP], [BLD, CLUTTER], [LOW], [TRE, CAR]]}
    for (domain, key), parts in {**tiles, **TEST_TILES}.items():
        write_tile(root, domain, key, quadrants(parts))
    for clutter, expected in (("background", IMP), ("ignore", IGNORE_INDEX)):
        out = tmp_path / clutter
        prepare("isprs", root=root, split="isprs-2-2-1", out=out, isprs_options={"patch_size": 16, "clutter": clutter})
        task = read_label_png(out / "labels" / "task1" / "potsdam" / f"{P10(1)}.png")
        full = read_label_png(out / "labels" / "full" / "potsdam" / f"{P10(1)}.png")
        assert (task[0, 0], task[15, 0], full[15, 0]) == (BLD, expected, IGNORE_INDEX)


def test_deterministic_and_reused(isprs: Path, tmp_path: Path) -> None:
    def files(out: Path) -> dict[str, bytes]:
        return {n: (out / n).read_bytes() for n in ("train_index.txt", "val_index.txt", "test_index.txt")}

    options = {"patch_size": 16}
    first = prepare("isprs", root=isprs, split="isprs-2-1", out=tmp_path / "a", seed=4, isprs_options=options)
    pngs = sorted((tmp_path / "a").rglob("*.png"))
    mtimes = [p.stat().st_mtime_ns for p in pngs]
    assert prepare("isprs", root=isprs, split="isprs-2-1", out=tmp_path / "b", seed=4, isprs_options=options) == first
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert prepare("isprs", root=isprs, split="isprs-2-1", out=tmp_path / "a", seed=4, isprs_options=options) == first
    assert [p.stat().st_mtime_ns for p in pngs] == mtimes


def test_errors_name_the_problem(isprs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(
        ConfigError, match=r"'isprs-3-2' is an unknown isprs split; valid: isprs-4-1, isprs-2-3, isprs-2-2-1, isprs-2-1$"
    ):
        prepare("isprs", root=isprs, split="isprs-3-2", out=out)
    with pytest.raises(ConfigError, match=r"'voc-15-1' is not an isprs split"):
        prepare("isprs", root=isprs, split="voc-15-1", out=out)
    with pytest.raises(ConfigError, match=r"clutter 'background' folds clutter into the background class, but background 'none'"):
        prepare("isprs", root=isprs, split="isprs-2-1", out=out, isprs_options={"background": "none", "clutter": "background"})
    with pytest.raises(ConfigError, match=r"background must be one of impervious, none, got 'road'"):
        prepare("isprs", root=isprs, split="isprs-2-1", out=out, isprs_options={"background": "road"})
    with pytest.raises(ConfigError, match=r"train_list and test_list .* apply to dataset voc only; isprs takes"):
        prepare("isprs", root=isprs, split="isprs-2-1", out=out, train_list="train")
    with pytest.raises(
        ConfigError, match=r"^patch_size, eroded \(--patch-size --eroded\) apply to dataset isprs only; drop them for voc"
    ):
        prepare("voc", root=isprs, split="voc-15-1", out=out, isprs_options={"patch_size": 16, "eroded": True})
    (isprs / "vaihingen" / "top" / "top_mosaic_09cm_area3.tif").unlink()
    with pytest.raises(ConfigError, match=r"split isprs-2-1 needs at least 2 patches per task \(one for the train part and one "
                       r"for the eval part of its chunk\), got task 2 \(low vegetation\): 1 vaihingen patch\(es\) with its "
                       r"classes; task 3 \(tree\): 1 .*; task 4 \(car\): 1 .* \(all tasks: 2, 1, 1, 1\); add train tiles"):
        prepare("isprs", root=isprs, split="isprs-2-1", out=out, isprs_options={"patch_size": 16})
    # without a Potsdam test tile the test set would miss a domain
    (isprs / "potsdam" / "2_Ortho_RGB" / "top_potsdam_2_13_RGB.tif").unlink()
    with pytest.raises(DataError, match=r"no potsdam tile is on the test side .*: add potsdam tiles"):
        prepare("isprs", root=isprs, split="isprs-2-1", out=out, isprs_options={"patch_size": 16})


def test_cli(isprs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["prepare", "--dataset", "isprs", "--root", str(isprs), "--split", "isprs-2-2-1", "--out", str(out)]
    assert main([*argv, "--patch-size", "16", "--background", "none", "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"split isprs-2-2-1 of isprs-nobg at {isprs.as_posix()} (seed 1")
    assert "task 1: 2 classes (impervious surfaces, building); images: 4 patches of the potsdam train tiles (overlap)" in text
    assert "task 3: 1 class (car); images: 2 patches of the vaihingen train tiles (overlap)" in text
    assert "options: background none, clutter ignore, patch_size 16, eroded False, colour_tolerance 0" in text
    assert "vaihingen: 2 train tiles, 1 test tiles, 8 train patches, 4 test patches" in text
    assert "test: test_index.txt, 8 images of the test split (potsdam, vaihingen)" in text
    assert Manifest.load(out).summary() == text.rstrip("\n")
    assert main([*argv, "--background", "none", "--clutter", "background"]) == 2
    assert "clutter 'background' folds clutter into the background class" in capsys.readouterr().err
    voc = ["prepare", "--dataset", "voc", "--root", str(isprs), "--split", "voc-15-1", "--out", str(out)]
    assert main([*voc, "--patch-size", "16"]) == 2
    assert "patch_size (--patch-size) apply to dataset isprs only; drop them for voc" in capsys.readouterr().err
