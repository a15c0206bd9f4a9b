"""The VOC reader pairs listed ids with images and palette labels, and names the file on bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llseg.data.labels import IGNORE_INDEX, VOC, get_dataset_info, voc_colormap
from llseg.data.voc.layout import find_voc_samples, load_voc_label, read_id_list
from llseg.errors import DataError

PALETTE = voc_colormap().ravel().tolist()


def _label(value: int, shape: tuple[int, int] = (6, 8)) -> np.ndarray:
    """Background with a ``value`` square and a void outline row, ``uint8 (6, 8)``."""
    lab = np.zeros(shape, np.uint8)
    lab[2:5, 3:6] = value
    lab[1, 3:6] = IGNORE_INDEX
    return lab


def _write_png(path: Path, label: np.ndarray, mode: str = "P") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(label)
    if mode == "P":
        img.putpalette(PALETTE)
    img.save(path)
    return path


def make_voc(root: Path, splits: dict[str, list[str]], aug: list[str] | None = None) -> Path:
    """A tiny VOC tree: a JPEG and a palette label (class = position + 1) per listed id;
    ``aug`` ids get a mode-L label in SegmentationClassAug/ (and no SegmentationClass label)."""
    ids = sorted({i for ids in splits.values() for i in ids} | set(aug or []))
    for k, i in enumerate(ids):
        (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((6, 8, 3), 40 * k % 256, np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
        if i in (aug or []):
            _write_png(root / "SegmentationClassAug" / f"{i}.png", _label(k + 1), mode="L")
        else:
            _write_png(root / "SegmentationClass" / f"{i}.png", _label(k + 1))
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    for name, split_ids in splits.items():
        (lists / f"{name}.txt").write_text("".join(f"{i}\n" for i in split_ids))
    return root


def test_voc_dataset_info() -> None:
    assert get_dataset_info("voc") is VOC
    assert (VOC.num_classes, VOC.background_id) == (21, 0)
    assert VOC.class_names[0] == "background" and VOC.class_index("person") == 15 and VOC.class_index("tvmonitor") == 20
    assert VOC.palette[:3] == ((0, 0, 0), (128, 0, 0), (0, 128, 0))
    assert VOC.palette[15] == (192, 128, 128) and VOC.palette[20] == (0, 64, 128)
    assert tuple(voc_colormap()[IGNORE_INDEX]) == (224, 224, 192)
    assert VOC.valid_ids == frozenset(range(21)) | {255}


def test_finds_samples_in_list_order(tmp_path: Path) -> None:
    root = make_voc(tmp_path, {"train": ["2007_000005", "2007_000001"], "val": ["2008_000002"]})
    train = find_voc_samples(root, "train")
    assert [s.id for s in train] == ["2007_000005", "2007_000001"]
    assert train[0].image == root / "JPEGImages" / "2007_000005.jpg"
    assert train[0].label == root / "SegmentationClass" / "2007_000005.png"
    assert [s.id for s in find_voc_samples(root, "val")] == ["2008_000002"]


def test_palette_indices_are_class_ids(tmp_path: Path) -> None:
    path = _write_png(tmp_path / "a.png", _label(15))
    assert Image.open(path).mode == "P"
    lab = load_voc_label(path)
    assert lab.dtype == np.uint8 and lab.shape == (6, 8)
    assert np.bincount(lab.ravel(), minlength=256)[[0, 15, 255]].tolist() == [36, 9, 3]
    grey = load_voc_label(_write_png(tmp_path / "b.png", _label(20), mode="L"))
    assert set(np.unique(grey).tolist()) == {0, 20, 255}


def test_label_errors_name_the_file(tmp_path: Path) -> None:
    rgb = tmp_path / "colour.png"
    Image.fromarray(voc_colormap()[_label(15)]).save(rgb)
    with pytest.raises(DataError, match=r"colour\.png.*palette \(mode P\) PNG"):
        load_voc_label(rgb)
    bad = _write_png(tmp_path / "bad.png", _label(21))
    with pytest.raises(DataError, match=r"bad\.png: contains ids \[21\]"):
        load_voc_label(bad)
    with pytest.raises(DataError, match=r"missing\.png: file not found"):
        load_voc_label(tmp_path / "missing.png")


def test_aug_list_detects_or_takes_the_label_folder(tmp_path: Path) -> None:
    root = make_voc(tmp_path, {"train": ["a1", "a2"]}, aug=["b1"])
    lists = root / "ImageSets" / "Segmentation"
    (lists / "train_aug.txt").write_text("/JPEGImages/a1.jpg /SegmentationClassAug/a1.png\n\nb1\n")
    _write_png(root / "SegmentationClassAug" / "a1.png", _label(7), mode="L")
    aug = find_voc_samples(root, "train_aug")  # b1 has no SegmentationClass label -> the Aug folder
    assert [(s.id, s.label.parent.name) for s in aug] == [("a1", "SegmentationClassAug"), ("b1", "SegmentationClassAug")]
    assert set(np.unique(load_voc_label(aug[0].label)).tolist()) == {0, 7, 255}
    plain = find_voc_samples(root, "train")  # every id in SegmentationClass -> that folder
    assert {s.label.parent.name for s in plain} == {"SegmentationClass"}
    forced = find_voc_samples(
        root, "unused", list_file="ImageSets/Segmentation/train_aug.txt", labels_dir=root / "SegmentationClassAug"
    )
    assert [s.id for s in forced] == ["a1", "b1"]
    with pytest.raises(DataError, match=r"1 label\(s\) listed in .*train\.txt are missing: .*SegmentationClassAug/a2\.png"):
        find_voc_samples(root, "train", labels_dir="SegmentationClassAug")


def test_layout_errors_name_the_file_and_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere/JPEGImages is missing; pass the folder that holds"):
        find_voc_samples(tmp_path / "nowhere", "train")
    root = make_voc(tmp_path / "voc", {"train": ["a", "b", "c"]})
    with pytest.raises(DataError, match=r"split list .*Segmentation/val\.txt not found"):
        find_voc_samples(root, "val")
    with pytest.raises(DataError, match=r"label folder .*labels not found"):
        find_voc_samples(root, "train", labels_dir="labels")
    (root / "JPEGImages" / "b.jpg").unlink()
    with pytest.raises(DataError, match=r"1 image\(s\) listed in .*train\.txt are missing: .*JPEGImages/b\.jpg; restore"):
        find_voc_samples(root, "train")
    (root / "SegmentationClass" / "c.png").unlink()
    (root / "ImageSets" / "Segmentation" / "ac.txt").write_text("a\nc\n")
    with pytest.raises(DataError, match=r"SegmentationClass/c\.png; restore the labels, pass labels_dir"):
        find_voc_samples(root, "ac")
    lists = root / "ImageSets" / "Segmentation"
    (lists / "dup.txt").write_text("a\nb\na\n")
    with pytest.raises(DataError, match=r"dup\.txt repeats ids a; remove the duplicate lines"):
        read_id_list(lists / "dup.txt")
    (lists / "empty.txt").write_text("\n  \n")
    with pytest.raises(DataError, match=r"empty\.txt holds no ids"):
        find_voc_samples(root, "empty")
