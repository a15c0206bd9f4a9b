from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llseg.data.imageio import image_size, read_label_png, read_rgb, write_label_png
from llseg.errors import DataError

LABEL = np.array([[0, 7, 7, 26], [255, 8, 23, 33]], dtype=np.uint8)


def test_read_rgb_png_grey_and_jpeg(tmp_path: Path) -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = read_rgb(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out, rgb)

    Image.fromarray(np.full((4, 5), 9, np.uint8)).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "g.png"), np.full((4, 5, 3), 9, np.uint8))

    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(tmp_path / "j.jpg", quality=95)
    jpg = read_rgb(tmp_path / "j.jpg")
    assert jpg.shape == (8, 8, 3) and abs(int(jpg.mean()) - 128) <= 2


def test_read_label_modes_l_and_p(tmp_path: Path) -> None:
    Image.fromarray(LABEL).save(tmp_path / "l.png")
    np.testing.assert_array_equal(read_label_png(tmp_path / "l.png"), LABEL)
    pal = Image.fromarray(LABEL, mode="L").convert("P")
    pal.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    pal.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    np.testing.assert_array_equal(read_label_png(tmp_path / "p.png"), LABEL)


def test_rgb_label_is_rejected_with_explanation(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "x_gtFine_color.png")
    with pytest.raises(DataError, match=r"x_gtFine_color\.png.*single-channel.*mode RGB"):
        read_label_png(tmp_path / "x_gtFine_color.png")


def test_16bit_and_jpeg_labels_are_rejected(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((2, 2), np.uint16)).save(tmp_path / "i16.png")
    with pytest.raises(DataError, match=r"i16\.png.*mode I;16"):
        read_label_png(tmp_path / "i16.png")
    Image.fromarray(LABEL).save(tmp_path / "lab.jpg")
    with pytest.raises(DataError, match=r"lab\.jpg.*lossless PNG"):
        read_label_png(tmp_path / "lab.jpg")


def test_truncated_and_corrupt_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.png.*re-download or regenerate"):
        read_rgb(tmp_path / "cut.png")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"junk\.png.*re-download or regenerate"):
        read_label_png(tmp_path / "junk.png")
    with pytest.raises(DataError, match=r"junk\.png"):
        image_size(tmp_path / "junk.png")


def test_missing_file(tmp_path: Path) -> None:
    for reader in (read_rgb, read_label_png, image_size):
        with pytest.raises(DataError, match=r"nope\.png: file not found"):
            reader(tmp_path / "nope.png")


def test_write_label_roundtrip_and_size(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "dir" / "lab.png"
    write_label_png(target, LABEL)
    assert Image.open(target).mode == "L"
    np.testing.assert_array_equal(read_label_png(target), LABEL)
    assert image_size(target) == (2, 4)
    assert [p.name for p in target.parent.iterdir()] == ["lab.png"]  # no temp file left
    with pytest.raises(ValueError, match="uint8 H x W"):
        write_label_png(target, LABEL.astype(np.int32))
