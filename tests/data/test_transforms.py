"""Training transforms and the (image, label) dataset: exact geometry, label dtypes, the hue formula."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from llseg.data.dataset import SegmentationPairs, channel_lut
from llseg.data.imageio import write_label_png
from llseg.data.transforms import TrainAugment, adjust_hue, normalize, resize_pair, to_unit_float, upsample_scores
from llseg.errors import ConfigError
from llseg.methods.config import TrainConfig


def hue_test_image() -> torch.Tensor:
    """Random colours plus the cases the hexcone formula must get right: grey pixels (no chroma),
    pure primaries, and ties for the largest channel (r = g, g = b, r = b)."""
    image = torch.rand(3, 40, 64, generator=torch.Generator().manual_seed(0))
    image[:, :4] = torch.rand(1, 4, 64, generator=torch.Generator().manual_seed(1))  # greys
    image[:, 4:6] = 0.0
    image[0, 4] = 1.0  # red
    image[1, 5] = 1.0  # green
    image[2, 6:8] = 1.0  # blue
    image[0, 6:8] = 0.0
    image[1, 6:8] = 0.0
    image[1, 8:10] = image[0, 8:10]
    image[2, 10:12] = image[1, 10:12]
    image[2, 12:14] = image[0, 12:14]
    return image


@pytest.mark.parametrize("factor", [-0.5, -0.31, -0.1, 0.0, 0.05, 1 / 6, 0.37, 0.5])
def test_adjust_hue_equals_torchvision(factor: float) -> None:
    image = hue_test_image()
    ours, theirs = adjust_hue(image, factor), TF.adjust_hue(image, factor)
    assert ours.shape == image.shape and ours.dtype == torch.float32
    torch.testing.assert_close(ours, theirs, atol=2e-6, rtol=0)


def test_adjust_hue_by_hand() -> None:
    red = torch.tensor([1.0, 0.2, 0.2]).view(3, 1, 1)
    # a third of a turn takes red to green, two thirds to blue; value and saturation stay
    torch.testing.assert_close(adjust_hue(red, 1 / 3).flatten(), torch.tensor([0.2, 1.0, 0.2]), atol=1e-6, rtol=0)
    torch.testing.assert_close(adjust_hue(red, -1 / 3).flatten(), torch.tensor([0.2, 0.2, 1.0]), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="not in"):
        adjust_hue(red, 0.6)


def test_resize_pair_keeps_the_label_dtype_and_values() -> None:
    gen = torch.Generator().manual_seed(2)
    image = torch.rand(3, 12, 20, generator=gen)
    label8 = torch.randint(0, 256, (12, 20), generator=gen, dtype=torch.uint8)
    _, small8 = resize_pair(image, label8, (5, 7))
    _, small64 = resize_pair(image, label8.long(), (5, 7))
    assert small8.dtype == torch.uint8 and small64.dtype == torch.int64
    assert torch.equal(small8.long(), small64)
    # nearest: every output value is one of the input's, at the rows/columns nearest picks
    rows, cols = (torch.arange(5) * 12 // 5), (torch.arange(7) * 20 // 7)
    assert torch.equal(small8, label8[rows][:, cols])


def test_augment_takes_uint8_and_float_images_alike() -> None:
    gen = torch.Generator().manual_seed(3)
    rgb = torch.randint(0, 256, (3, 24, 32), generator=gen, dtype=torch.uint8)
    label = torch.randint(0, 19, (24, 32), generator=gen, dtype=torch.uint8)
    augment = TrainAugment(base_size=(16, 24), scale=(1.0, 1.5), jitter=0.2)
    for seed in range(6):  # flipped and unflipped samples
        a_img, a_lab = augment(rgb, label, torch.Generator().manual_seed(seed))
        b_img, b_lab = augment(to_unit_float(rgb), label.long(), torch.Generator().manual_seed(seed))
        assert a_img.dtype == torch.float32 and a_lab.dtype == torch.uint8 and b_lab.dtype == torch.int64
        torch.testing.assert_close(a_img, b_img, atol=1e-6, rtol=0)
        assert torch.equal(a_lab.long(), b_lab)


def test_augment_flip_and_padding_exactly() -> None:
    rgb = torch.arange(3 * 4 * 6, dtype=torch.uint8).view(3, 4, 6)
    label = torch.arange(4 * 6, dtype=torch.uint8).view(4, 6)
    flip_only = TrainAugment(scale=(1.0, 1.0), jitter=0.0)
    seen = set()
    for seed in range(8):
        image, out = flip_only(rgb, label, torch.Generator().manual_seed(seed))
        flipped = bool(torch.equal(out, label.flip(-1)))
        assert flipped or torch.equal(out, label)
        assert torch.equal(image, to_unit_float(rgb.flip(-1) if flipped else rgb))
        seen.add(flipped)
    assert seen == {True, False}
    # shrinking by 2 and cropping back to the old size pads: image 0, label 255 (ignore)
    halve = TrainAugment(scale=(2.0, 2.0), flip=False, jitter=0.0)
    image, out = halve(rgb, label, torch.Generator().manual_seed(0))
    assert image.shape == (3, 4, 6) and out.shape == (4, 6)
    assert int((out == 255).sum()) == 4 * 6 - 2 * 3 and float(image[:, out == 255].abs().sum()) == 0.0


def test_segmentation_pairs_map_ids_and_saliency(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
    raw = rng.choice(np.array([0, 3, 7, 255], np.uint8), (8, 10))
    salient = (rng.random((8, 10)) < 0.5).astype(np.uint8) * 255
    Image.fromarray(rgb).save(tmp_path / "img.png")
    write_label_png(tmp_path / "lab.png", raw)
    write_label_png(tmp_path / "sal.png", salient)
    lut = channel_lut([0, 7])  # train id 0 -> channel 0, 7 -> 1, everything else ignored
    data = SegmentationPairs([tmp_path / "img.png"], [tmp_path / "lab.png"], lut=lut)
    image, label = data[0]
    assert label.dtype == torch.int64 and image.dtype == torch.float32
    expected = np.where(raw == 0, 0, np.where(raw == 7, 1, 255))
    np.testing.assert_array_equal(label.numpy(), expected)
    torch.testing.assert_close(image, normalize(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255))
    # SSUL-style: non-salient pixels of channel 0 get channel 5, whichever train id the lut mapped there
    lut_bg = lut.copy()
    lut_bg[3] = 0  # train id 3 (an old class of the step) is background too
    with_saliency = SegmentationPairs([tmp_path / "img.png"], [tmp_path / "lab.png"], lut=lut_bg,
                                      saliency=[tmp_path / "sal.png"], relabel=(0, 5))
    _, label = with_saliency[0]
    step_labels = np.where(np.isin(raw, [0, 3]), 0, expected)
    np.testing.assert_array_equal(label.numpy(), np.where((step_labels == 0) & (salient == 0), 5, step_labels))
    assert ((raw == 3) & (salient == 0)).any()
    with pytest.raises(ValueError, match="channel_lut"):
        SegmentationPairs([tmp_path / "img.png"], [tmp_path / "lab.png"], lut=np.arange(300))


def test_upsample_scores_bilinear_or_nearest() -> None:
    scores = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    nearest = upsample_scores(scores, (4, 4), mode="nearest")
    assert nearest[0, 0].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    bilinear = upsample_scores(scores, (4, 4))
    assert bilinear[0, 0, 0].tolist() == [0.0, 0.25, 0.75, 1.0]  # half-pixel centres, edges clamped
    assert upsample_scores(scores, (2, 2), mode="nearest") is scores
    with pytest.raises(ValueError, match="bilinear, nearest"):
        upsample_scores(scores, (4, 4), mode="bicubic")
    assert TrainConfig.from_hyperparameters({"eval_upsample": "nearest"}).eval_upsample == "nearest"
    with pytest.raises(ConfigError, match="eval_upsample must be one of bilinear, nearest"):
        TrainConfig.from_hyperparameters({"eval_upsample": "area"})
