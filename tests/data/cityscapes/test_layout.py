from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llseg.data.cityscapes.layout import CityscapesSample, find_samples, load_train_ids
from llseg.errors import ConfigError, DataError
from tests.data.cityscapes.trees import write_pair

# labelIds -> trainIds: 7 road -> 0, 8 sidewalk -> 1, 26 car -> 13, 33 bicycle -> 18, 0/4 void -> 255
IDS = np.array([[7, 8, 26, 33], [0, 4, 23, 7]], dtype=np.uint8)
TRAIN_IDS = np.array([[0, 1, 13, 18], [255, 255, 10, 0]], dtype=np.uint8)


def test_find_samples_pairs_sorted_and_records_kind(tmp_path: Path) -> None:
    write_pair(tmp_path, "train", "jena", "jena_000001_000019", IDS)
    write_pair(tmp_path, "train", "jena", "jena_000000_000019", IDS)
    write_pair(tmp_path, "train", "aachen", "aachen_000000_000019", TRAIN_IDS, kind="labelTrainIds")
    # both kinds for one stem: labelIds wins
    write_pair(tmp_path, "train", "ulm", "ulm_000000_000019", TRAIN_IDS, kind="labelTrainIds")
    write_pair(tmp_path, "train", "ulm", "ulm_000000_000019", IDS)
    (tmp_path / "gtFine/train/jena/jena_000000_000019_gtFine_color.png").write_bytes(b"ignored")

    samples = find_samples(tmp_path, "train")
    assert [(s.city, s.stem, s.kind) for s in samples] == [
        ("aachen", "aachen_000000_000019", "labelTrainIds"),
        ("jena", "jena_000000_000019", "labelIds"),
        ("jena", "jena_000001_000019", "labelIds"),
        ("ulm", "ulm_000000_000019", "labelIds"),
    ]
    s = samples[1]
    assert s.image == tmp_path / "leftImg8bit/train/jena/jena_000000_000019_leftImg8bit.png"
    assert s.label == tmp_path / "gtFine/train/jena/jena_000000_000019_gtFine_labelIds.png"
    assert s.split == "train"
    assert [x.city for x in find_samples(tmp_path, "train", cities=["ulm", "jena"])] == ["jena", "jena", "ulm"]


def test_image_without_label(tmp_path: Path) -> None:
    write_pair(tmp_path, "train", "jena", "jena_000000_000019", IDS)
    _, label = write_pair(tmp_path, "train", "jena", "jena_000001_000019", IDS)
    label.unlink()
    with pytest.raises(DataError, match=r"1 image\(s\) have no label: .*jena_000001_000019_leftImg8bit\.png"):
        find_samples(tmp_path, "train")


def test_label_without_image(tmp_path: Path) -> None:
    image, _ = write_pair(tmp_path, "train", "jena", "jena_000000_000019", IDS)
    image.unlink()
    write_pair(tmp_path, "train", "ulm", "ulm_000000_000019", IDS)
    with pytest.raises(DataError, match=r"1 label\(s\) have no image: .*jena_000000_000019_gtFine_labelIds\.png"):
        find_samples(tmp_path, "train")


def test_missing_root_split_and_city(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"dataset root .*nowhere does not exist"):
        find_samples(tmp_path / "nowhere", "train")
    write_pair(tmp_path, "train", "jena", "jena_000000_000019", IDS)
    with pytest.raises(DataError, match=r"missing .*leftImg8bit/val, .*gtFine/val.*splits present: train"):
        find_samples(tmp_path, "val")
    with pytest.raises(DataError, match=r"cities atlantis not found .*available: jena"):
        find_samples(tmp_path, "train", cities=["jena", "atlantis"])


def test_load_train_ids_maps_label_ids(tmp_path: Path) -> None:
    image, label = write_pair(tmp_path, "train", "jena", "jena_000000_000019", IDS)
    sample = CityscapesSample(image, label, "train", "jena", "jena_000000_000019")
    out = load_train_ids(sample)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, TRAIN_IDS)
    np.testing.assert_array_equal(load_train_ids(label, "labelIds"), TRAIN_IDS)
    with pytest.raises(ConfigError, match="kind="):
        load_train_ids(label)


def test_load_train_ids_keeps_valid_train_ids(tmp_path: Path) -> None:
    image, label = write_pair(tmp_path, "train", "jena", "s", TRAIN_IDS, kind="labelTrainIds")
    sample = CityscapesSample(image, label, "train", "jena", "s", "labelTrainIds")
    np.testing.assert_array_equal(load_train_ids(sample), TRAIN_IDS)


def test_unknown_ids_are_named(tmp_path: Path) -> None:
    bad = IDS.copy()
    bad[0, 0], bad[1, 1] = 40, 200
    _, label = write_pair(tmp_path, "train", "jena", "s", bad)
    with pytest.raises(DataError, match=r"s_gtFine_labelIds\.png: contains ids \[40, 200\] that are not Cityscapes"):
        load_train_ids(label, "labelIds")
    bad_train = TRAIN_IDS.copy()
    bad_train[0, 0] = 19
    _, label = write_pair(tmp_path, "train", "jena", "t", bad_train, kind="labelTrainIds")
    with pytest.raises(DataError, match=r"t_gtFine_labelTrainIds\.png: contains ids \[19\].*0\.\.18 and 255"):
        load_train_ids(label, "labelTrainIds")


def test_size_mismatch_names_both_files(tmp_path: Path) -> None:
    image, label = write_pair(tmp_path, "train", "jena", "s", IDS)
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(image)
    sample = CityscapesSample(image, label, "train", "jena", "s")
    with pytest.raises(DataError, match=r"label .*s_gtFine_labelIds\.png is 2x4 but image .*s_leftImg8bit\.png is 3x4"):
        load_train_ids(sample)
