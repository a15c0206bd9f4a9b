"""ISPRS readers: colour decoding, tile discovery in the official layouts, tile sides and patch cutting."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llseg.data.imageio import read_label_png, read_rgb
from llseg.data.isprs.layout import (
    STANDARD_TEST,
    STANDARD_TRAIN,
    cut_tiles,
    decode_label_colours,
    find_isprs_tiles,
    load_isprs_label,
    patch_origins,
    tile_sides,
)
from llseg.data.labels import IGNORE_INDEX, ISPRS, ISPRS_NOBG, get_dataset_info
from llseg.errors import ConfigError, DataError

from .trees import BUILDING, CAR, CLUTTER, COLOURS, IMPERVIOUS, LOW_VEGETATION, TREE, quadrants, write_tile

WHITE, BLUE, CYAN, GREEN, YELLOW, RED, BLACK = (
    (255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0), (0, 0, 0)
)


def _rgb(rows: list[list[tuple[int, int, int]]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.uint8)


def test_dataset_info() -> None:
    assert get_dataset_info("isprs") is ISPRS and get_dataset_info("isprs-nobg") is ISPRS_NOBG
    assert ISPRS.class_names == ("impervious surfaces", "building", "low vegetation", "tree", "car")
    assert (ISPRS.background_id, ISPRS_NOBG.background_id) == (0, None)
    assert ISPRS.palette == (WHITE, BLUE, CYAN, GREEN, YELLOW) and ISPRS_NOBG.class_names == ISPRS.class_names
    assert ISPRS.id_to_train_id is not None
    assert ISPRS.id_to_train_id[:7].tolist() == [0, 1, 2, 3, 4, IGNORE_INDEX, IGNORE_INDEX]  # clutter is ignored
    assert ISPRS.valid_ids == frozenset(range(6)) | {IGNORE_INDEX}


def test_decode_every_table_colour() -> None:
    rgb = _rgb([[WHITE, BLUE, CYAN], [GREEN, YELLOW, RED]])
    ids = decode_label_colours(rgb, "x.tif")
    assert ids.dtype == np.uint8 and ids.tolist() == [[0, 1, 2], [3, 4, 5]]
    np.testing.assert_array_equal(decode_label_colours(COLOURS[ids], "x.tif"), ids)


def test_black_is_a_boundary_only_in_eroded_labels() -> None:
    rgb = _rgb([[WHITE, BLACK, BLACK], [GREEN, BLACK, RED]])
    assert decode_label_colours(rgb, "e.tif", eroded=True).tolist() == [[0, 255, 255], [3, 255, 5]]
    with pytest.raises(DataError, match=r"^full\.tif: 3 of 6 pixels have colours outside the ISPRS table: \(0, 0, 0\) x 3; "
                       r"expected impervious surfaces \(255, 255, 255\), .* clutter \(255, 0, 0\); black \(0, 0, 0\) marks "
                       r"the boundaries of the eroded \*_noBoundary labels: pass eroded \(--eroded\)"):
        decode_label_colours(rgb, "full.tif")


def test_other_colours_are_errors_with_counts() -> None:
    magenta, grey = (255, 0, 255), (128, 128, 128)
    rgb = _rgb([[magenta, grey, magenta, WHITE], [grey, magenta, BLUE, (254, 0, 0)]])
    message = (r"bad\.tif: 6 of 8 pixels have colours outside the ISPRS table: \(255, 0, 255\) x 3, \(128, 128, 128\) x 2, "
               r"\(254, 0, 0\) x 1; expected .*; for a re-encoded label file, a colour tolerance \(--colour-tolerance\)")
    with pytest.raises(DataError, match=message):
        decode_label_colours(rgb, "bad.tif", eroded=True)
    many = np.arange(3 * 7, dtype=np.uint8).reshape(1, 7, 3) + 1
    with pytest.raises(DataError, match=r"7 of 7 pixels .* x 1 and 2 other colours"):
        decode_label_colours(many, "many.tif")


def test_colour_tolerance() -> None:
    rgb = _rgb([[(250, 3, 2), (2, 252, 251)], [(0, 0, 255), (255, 255, 250)]])
    assert decode_label_colours(rgb, "t.tif", tolerance=5).tolist() == [[CLUTTER, LOW_VEGETATION], [BUILDING, IMPERVIOUS]]
    with pytest.raises(DataError, match=r"2 of 4 pixels .*: \(250, 3, 2\) x 1, \(255, 255, 250\) x 1; expected [^;]*$"):
        decode_label_colours(rgb, "t.tif", tolerance=4)  # 250 and 251 are off by 5 and 4
    # 127 thresholds every channel at 128: never ambiguous, every colour is near exactly one table colour
    assert decode_label_colours(_rgb([[(128, 0, 127), (127, 200, 200)]]), "t.tif", tolerance=127).tolist() == [
        [CLUTTER, LOW_VEGETATION]
    ]
    with pytest.raises(ConfigError, match=r"colour tolerance must be an integer in 0\.\.127, got 128"):
        decode_label_colours(rgb, "t.tif", tolerance=128)


@pytest.mark.parametrize(
    "length, size, expected",
    [
        (1024, 512, [0, 512]),  # exact fit
        (1000, 512, [0, 488]),  # the last patch ends at the border, overlapping by 24 px
        (6000, 600, list(range(0, 6000, 600))),  # Potsdam at IDEC's 600 px: 10 x 10 patches
        (6000, 512, [*range(0, 5632, 512), 5488]),  # 12 per side at 512
        (300, 512, [0]),  # shorter than a patch: one patch of the side's length
        (512, 512, [0]),
    ],
)
def test_patch_origins(length: int, size: int, expected: list[int]) -> None:
    assert patch_origins(length, size) == expected


def _layout(root: Path) -> None:
    write_tile(root, "potsdam", "2_10", quadrants([[IMPERVIOUS], [BUILDING], [TREE], [CAR]]))
    # only in the participants' folder: found there
    write_tile(root, "potsdam", "2_13", quadrants([[CLUTTER], [BUILDING], [TREE], [CAR]]),
               label_rel="5_Labels_for_participants/top_potsdam_2_13_label.tif", compression="tiff_lzw")
    write_tile(root, "vaihingen", "1", quadrants([[LOW_VEGETATION], [TREE], [CAR], [BUILDING]]), compression="tiff_deflate")
    write_tile(root, "vaihingen", "10", quadrants([[LOW_VEGETATION], [TREE], [CAR], [BUILDING]]))
    write_tile(root, "vaihingen", "2", quadrants([[LOW_VEGETATION], [TREE], [CAR], [BUILDING]]),
               label_rel="gts_for_participants/top_mosaic_09cm_area2.tif")


def test_find_tiles_in_the_official_layouts(tmp_path: Path) -> None:
    _layout(tmp_path)
    tiles = find_isprs_tiles(tmp_path)
    assert [(t.domain, t.id) for t in tiles] == [
        ("potsdam", "potsdam_2_10"), ("potsdam", "potsdam_2_13"),
        ("vaihingen", "vaihingen_area1"), ("vaihingen", "vaihingen_area2"), ("vaihingen", "vaihingen_area10"),
    ]
    rel = [(t.image.relative_to(tmp_path).as_posix(), t.label.relative_to(tmp_path).as_posix()) for t in tiles]
    assert rel[1] == (
        "potsdam/2_Ortho_RGB/top_potsdam_2_13_RGB.tif", "potsdam/5_Labels_for_participants/top_potsdam_2_13_label.tif"
    )
    assert rel[3] == ("vaihingen/top/top_mosaic_09cm_area2.tif", "vaihingen/gts_for_participants/top_mosaic_09cm_area2.tif")
    assert rel[4][1] == "vaihingen/ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE/top_mosaic_09cm_area10.tif"
    # Pillow reads the TIFF variants (uncompressed, LZW, deflate)
    for tile in tiles:
        assert load_isprs_label(tile.label).shape == (32, 32)


def test_find_tiles_errors_and_eroded_variant(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"ISPRS layout not found: .*potsdam is missing; pass the folder that holds potsdam/ and vaihingen/"
    ):
        find_isprs_tiles(tmp_path)
    _layout(tmp_path)
    with pytest.raises(DataError, match=r"2 potsdam tile\(s\) have no label in .*potsdam \(5_Labels_all_noBoundary/, \./\): "
                       r"top_potsdam_2_10_label_noBoundary\.tif, top_potsdam_2_13_label_noBoundary\.tif"):
        find_isprs_tiles(tmp_path, eroded=True)
    (tmp_path / "potsdam" / "5_Labels_for_participants" / "top_potsdam_2_13_label.tif").unlink()
    with pytest.raises(DataError, match=r"1 potsdam tile\(s\) have no label .* top_potsdam_2_13_label\.tif; the benchmark "
                       r"needs the labels of the test tiles too: unpack the complete ground truth \(5_Labels_all\) there"):
        find_isprs_tiles(tmp_path)
    eroded = tmp_path / "eroded"
    ids = quadrants([[IMPERVIOUS], [BUILDING], [TREE], [CAR]])
    ids[0, :] = IGNORE_INDEX
    write_tile(eroded, "potsdam", "2_10", ids, label_rel="5_Labels_all_noBoundary/top_potsdam_2_10_label_noBoundary.tif")
    write_tile(eroded, "vaihingen", "1", ids,
               label_rel="ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE/top_mosaic_09cm_area1_noBoundary.tif")
    tiles = find_isprs_tiles(eroded, eroded=True)
    assert [t.label.name for t in tiles] == ["top_potsdam_2_10_label_noBoundary.tif", "top_mosaic_09cm_area1_noBoundary.tif"]
    np.testing.assert_array_equal(load_isprs_label(tiles[0].label, eroded=True), ids)
    (tmp_path / "potsdam" / "2_Ortho_RGB" / "top_potsdam_2_13_RGB.tif").unlink()
    (tmp_path / "vaihingen" / "top" / "top_mosaic_09cm_area1.tif").rename(tmp_path / "vaihingen" / "area1.tif")
    for name in ("top_mosaic_09cm_area2.tif", "top_mosaic_09cm_area10.tif"):
        (tmp_path / "vaihingen" / "top" / name).unlink()
    with pytest.raises(DataError, match=r"no vaihingen tile \(top_mosaic_09cm_area<N>\.tif\) in .*vaihingen/top"):
        find_isprs_tiles(tmp_path)


def test_flat_potsdam_folder(tmp_path: Path) -> None:
    ids = quadrants([[IMPERVIOUS], [BUILDING], [TREE], [CAR]])
    write_tile(tmp_path, "potsdam", "3_12", ids, label_rel="top_potsdam_3_12_label.tif")
    (tmp_path / "potsdam" / "2_Ortho_RGB" / "top_potsdam_3_12_RGB.tif").rename(tmp_path / "potsdam" / "top_potsdam_3_12_RGB.tif")
    (tmp_path / "potsdam").rename(tmp_path / "Potsdam")  # capitalised, images and labels side by side
    write_tile(tmp_path, "vaihingen", "5", ids)
    tiles = find_isprs_tiles(tmp_path)
    assert [(t.id, t.image.parent.name, t.label.parent.name) for t in tiles] == [
        ("potsdam_3_12", "Potsdam", "Potsdam"),
        ("vaihingen_area5", "top", "ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE"),
    ]


def test_tile_sides_standard_lists_then_seeded(tmp_path: Path) -> None:
    assert (len(STANDARD_TRAIN), len(STANDARD_TEST)) == (24 + 16, 14 + 17)
    assert {"potsdam_7_10", "vaihingen_area1", "vaihingen_area37"} <= STANDARD_TRAIN
    assert {"potsdam_2_13", "potsdam_7_13", "vaihingen_area2", "vaihingen_area38"} <= STANDARD_TEST
    ids = quadrants([[IMPERVIOUS], [BUILDING], [TREE], [CAR]])
    for key in ("2_10", "2_13", "9_1", "9_2", "9_3", "9_4", "9_5", "9_6"):
        write_tile(tmp_path, "potsdam", key, ids)
    write_tile(tmp_path, "vaihingen", "1", ids)
    tiles = find_isprs_tiles(tmp_path)
    sides = tile_sides(tiles, seed=0)
    assert (sides["potsdam_2_10"], sides["potsdam_2_13"], sides["vaihingen_area1"]) == ("train", "test", "train")
    unknown = [f"potsdam_9_{k}" for k in range(1, 7)]
    assert sorted(sides[t] for t in unknown) == ["test"] * 2 + ["train"] * 4  # round(6 / 3) to the test side
    assert tile_sides(tiles, seed=0) == sides
    draws = {tuple(tile_sides(tiles, seed=s)[t] for t in unknown) for s in range(8)}
    assert len(draws) > 1  # the seed picks which


def test_cut_tiles_counts_files_and_reuse(tmp_path: Path) -> None:
    root, out = tmp_path / "root", tmp_path / "out"
    ids = np.full((40, 24), LOW_VEGETATION, dtype=np.uint8)
    ids[:16, :16] = BUILDING
    ids[30:, 20:] = CAR
    write_tile(root, "potsdam", "2_10", ids)
    write_tile(root, "vaihingen", "1", quadrants([[IMPERVIOUS, CLUTTER], [TREE], [CAR], [BUILDING]], size=8))
    tiles = find_isprs_tiles(root)
    patches = cut_tiles(tiles, out, 16)
    # potsdam 40 x 24 at 16 px: rows 0, 16, 24 (overlapping) x columns 0, 8 (overlapping); vaihingen 16 x 16: one patch
    assert [p.id for p in patches] == [
        "potsdam_2_10_00000_00000", "potsdam_2_10_00000_00008", "potsdam_2_10_00016_00000", "potsdam_2_10_00016_00008",
        "potsdam_2_10_00024_00000", "potsdam_2_10_00024_00008", "vaihingen_area1_00000_00000",
    ]
    assert patches[0].counts == (0, 256, 0, 0, 0, 0, 0)
    assert patches[1].counts == (0, 128, 128, 0, 0, 0, 0)
    assert patches[5].counts == (0, 0, 216, 0, 40, 0, 0)
    assert patches[6].counts == (32, 64, 0, 64, 64, 32, 0)
    image = read_rgb(out / "images" / "potsdam" / "potsdam_2_10_00024_00008.png")
    np.testing.assert_array_equal(image, read_rgb(tiles[0].image)[24:40, 8:24])
    label = read_label_png(out / "labels" / "source" / "potsdam" / "potsdam_2_10_00024_00008.png")
    np.testing.assert_array_equal(label, ids[24:40, 8:24])
    assert patches[6].label == out / "labels" / "source" / "vaihingen" / "vaihingen_area1_00000_00000.png"

    written = sorted(p for p in out.rglob("*.png"))
    mtimes = [p.stat().st_mtime_ns for p in written]
    assert cut_tiles(tiles, out, 16) == patches  # unchanged tiles are not re-read or rewritten
    assert [p.stat().st_mtime_ns for p in written] == mtimes
    bigger = cut_tiles(tiles, out, 24)  # another patch size: re-cut, old patches removed
    assert [p.id for p in bigger] == ["potsdam_2_10_00000_00000", "potsdam_2_10_00016_00000", "vaihingen_area1_00000_00000"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == sorted(
        f"{kind}/{p.domain}/{p.id}.png" for p in bigger for kind in ("images", "labels/source")
    )
    assert read_label_png(bigger[1].label).shape == (24, 24)


def test_cut_tiles_errors(tmp_path: Path) -> None:
    root, out = tmp_path / "root", tmp_path / "out"
    image, label = write_tile(root, "potsdam", "2_10", quadrants([[IMPERVIOUS], [BUILDING], [TREE], [CAR]]))
    write_tile(root, "vaihingen", "1", quadrants([[IMPERVIOUS], [BUILDING], [TREE], [CAR]]))
    with pytest.raises(ConfigError, match=r"patch size must be an integer >= 16 px, got 8"):
        cut_tiles(find_isprs_tiles(root), out, 8)
    Image.fromarray(np.zeros((32, 30, 3), np.uint8)).save(image, format="TIFF")
    with pytest.raises(
        DataError, match=r"top_potsdam_2_10_label\.tif: label is 32x32 \(HxW\) but its tile .*top_potsdam_2_10_RGB\.tif is 32x30"
    ):
        cut_tiles(find_isprs_tiles(root), out, 16)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(label, format="TIFF")
    with pytest.raises(
        DataError, match=r"top_potsdam_2_10_label\.tif: mode L is not a colour-coded RGB label; use the original ISPRS file"
    ):
        cut_tiles(find_isprs_tiles(root), out, 16)
    label.write_bytes(b"not a TIFF")
    with pytest.raises(DataError, match=r"top_potsdam_2_10_label\.tif: unreadable or truncated label"):
        cut_tiles(find_isprs_tiles(root), out, 16)
