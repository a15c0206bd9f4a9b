"""PLOP's components on hand-made tensors (docs/methods.md §6), against the formulas written out here."""
from __future__ import annotations

import math

import pytest
import torch

from llseg.methods.recipes import plop


def regions_embedding(x: torch.Tensor, scales) -> torch.Tensor:
    """PLOP's definition for one image C×H×W, region by region: for each s×s region its
    width-pooled then height-pooled means (s divides H and W)."""
    _, h, w = x.shape
    parts = []
    for s in scales:
        for i in range(s):
            for j in range(s):
                region = x[:, i * h // s : (i + 1) * h // s, j * w // s : (j + 1) * w // s]
                parts += [region.mean(2).flatten(), region.mean(1).flatten()]
    return torch.cat(parts)


def test_pod_embedding_of_a_one_channel_map():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    emb = plop.local_pod_embedding(x, scales=(1, 2))
    expected = [1.5, 5.5, 9.5, 13.5, 6, 7, 8, 9,  # s=1: row means, column means
                0.5, 2.5, 4.5, 6.5, 8.5, 10.5, 12.5, 14.5,  # s=2: per row, the two column blocks
                2, 3, 4, 5, 10, 11, 12, 13]  # s=2: per row block, every column
    assert emb.shape == (1, 24) and emb[0].tolist() == expected
    # same values as PLOP's region-by-region construction, in another order
    assert sorted(emb[0].tolist()) == sorted(regions_embedding(x[0], (1, 2)).tolist())
    # default scales 1, 2, 4: D = Σ_s C·s·(H + W)
    assert plop.local_pod_embedding(torch.rand(2, 3, 8, 8)).shape == (2, 3 * (1 + 2 + 4) * 16)


def test_pod_distance_and_loss():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 3, 8, 8, generator=gen), torch.randn(2, 3, 8, 8, generator=gen)
    assert plop.pod_distance(a, a).item() == 0.0
    per_image = [(regions_embedding(a[n] ** 2, (1, 2, 4)) - regions_embedding(b[n] ** 2, (1, 2, 4))).norm()
                 for n in range(2)]
    distance = sum(per_image).item() / 2
    assert plop.pod_distance(a, b).item() == pytest.approx(distance, rel=1e-5)
    # (1/L) Σ λ_l · sqrt(|C_1:t| / |C_t|) · distance_l, here 21 classes of which 1 new
    got = plop.pod_loss([a, a], [b, a], [0.01, 0.0005], channels=21, new_channels=1)
    assert got.item() == pytest.approx(0.01 * math.sqrt(21) * distance / 2, rel=1e-5)
    assert plop.pod_loss([a, b], [a, b], [0.01, 0.0005], channels=21, new_channels=5).item() == 0.0


def test_extra_logit_channels_are_summed_into_background():
    logits = torch.tensor([1.0, 2.0, 3.0, 0.5, -4.0]).view(1, 5, 1, 1)
    assert plop.sum_extra_channels(logits, 3).flatten().tolist() == [1.0 + 0.5 - 4.0, 2.0, 3.0]
    assert torch.equal(plop.sum_extra_channels(logits, 5), logits)


def test_normalized_entropy():
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3)], [0.0, 50.0]]).T.reshape(1, 2, 1, 3)
    u = plop.normalized_entropy(logits)[0, 0]
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)) / math.log(2)
    assert u.tolist() == pytest.approx([1.0, expected, 0.0], abs=1e-6)
    assert plop.normalized_entropy(torch.zeros(1, 1, 2, 2)).sum().item() == 0.0


def test_median_thresholds_from_histogram_with_floor():
    histogram = torch.tensor([[2, 2, 0, 0], [0, 1, 3, 0], [0, 0, 0, 0], [10, 0, 0, 0]])
    thresholds = plop.median_thresholds(histogram, floor=0.2)
    # class 0: half = 2 reached in bin 0 -> (0 + 2/2)/4; class 1: half = 2 in bin 2 after 1 -> (2 + 1/3)/4;
    # class 2: no pixel -> floor; class 3: (0 + 5/10)/4 = 0.125 < floor
    assert thresholds.tolist() == pytest.approx([0.25, (2 + 1 / 3) / 4, 0.2, 0.2])
    assert plop.median_thresholds(histogram, floor=0.001)[3].item() == pytest.approx(0.125)


def test_entropy_histogram_counts_known_pixels_per_predicted_class():
    # old = 2 channels; pixels: predicted class 1 with u ≈ 0.811, bg with u = 1 (last bin),
    # class 1 confidently (u ≈ 0), and two pixels that do not count (new label 2, ignore 255)
    logits = torch.tensor([[0.0, math.log(3)], [0.0, 0.0], [0.0, 50.0], [0.0, 50.0], [0.0, 50.0]]).T.reshape(1, 2, 1, 5)
    target = torch.tensor([[[0, 0, 1, 2, 255]]])
    hist = plop.entropy_histogram(target, logits, bins=10)
    expected = torch.zeros(2, 10, dtype=torch.long)
    expected[1, 8] = 1  # u = 0.811 -> bin 8
    expected[0, 9] = 1  # argmax of a tie is channel 0; u = 1 -> last bin
    expected[1, 0] = 1
    assert torch.equal(hist, expected)


def test_pseudo_labels_and_adaptive_factor():
    # old = 2 (bg, class 1), new channel 2. Image 0: four background pixels and one new-class pixel.
    logits = torch.zeros(2, 2, 1, 5)
    logits[0, 1] = torch.tensor([5.0, 0.1, -5.0, 5.0, 5.0])
    target = torch.tensor([[[0, 0, 0, 0, 2]], [[2, 2, 2, 2, 2]]])
    u = plop.normalized_entropy(logits)
    thresholds = torch.tensor([0.5, 0.5])
    labels, nu = plop.entropy_pseudo_labels(target, logits, thresholds)
    assert (u[0, 0, :4] < 0.5).tolist() == [True, False, True, True]
    # confident class 1 -> 1; uncertain -> 255; confident background -> 0; new label kept
    assert labels[0, 0].tolist() == [1, 255, 0, 1, 2]
    assert labels[1].tolist() == target[1].tolist()  # no background pixel: nothing changes
    assert nu.tolist() == pytest.approx([3 / 4, 1.0])
    # a per-class threshold: class 1 needs u < 0.0001, which the 5.0 logits do not reach
    labels, nu = plop.entropy_pseudo_labels(target, logits, torch.tensor([0.5, 1e-4]))
    assert labels[0, 0].tolist() == [255, 255, 0, 255, 2] and nu[0].item() == pytest.approx(1 / 4)


def test_weighted_cross_entropy_averages_over_all_pixels():
    logits = torch.tensor([[[[0.0, 1.0]], [[1.0, 0.0]]], [[[2.0, 0.0]], [[0.0, 0.0]]]])  # N=2, C=2, 1×2
    target = torch.tensor([[[1, 255]], [[0, 1]]])
    nu = torch.tensor([0.5, 1.0])
    ce = lambda z, c: -math.log(math.exp(z[c]) / sum(math.exp(v) for v in z))  # noqa: E731
    expected = (0.5 * ce([0.0, 1.0], 1) + 0.0 + ce([2.0, 0.0], 0) + ce([0.0, 0.0], 1)) / 4
    assert plop.weighted_cross_entropy(logits, target, nu).item() == pytest.approx(expected, rel=1e-6)


# ---- mode: released (PLOP's released code; cross-checked against it by benchmarks/parity.py)


def test_released_entropy_is_the_codes_scale():
    logits = torch.tensor([[0.0, 1.0, 2.0]]).reshape(1, 3, 1, 1)
    p = torch.softmax(logits[0, :, 0, 0], 0)
    h = -(p * p.log()).sum()
    # mean over channels (1e-8 inside the log), / log C_old, / log |C_1:t|
    expected = -(p * (p + 1e-8).log()).mean() / math.log(3 + 1e-8) / math.log(5)
    got = plop.released_entropy(logits, channels=5)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    assert got.item() == pytest.approx((h / math.log(3) / (3 * math.log(5))).item(), rel=1e-4)


def test_released_median_adds_bin_indices_to_the_running_sum():
    # one class, 10 bins, counts 4, 4, 4, 4: total 16, half 8.
    # The true median is at the end of bin 1 (0.2). The released loop adds indices 0, 1, 2 to the
    # running sum: S = 0, 0, 1, 3 at bins 0..3; bin 0 holds [0, 4], bin 1 [0, 4], bin 2 [1, 5],
    # bin 3 [3, 7] -- none reaches 8 -- then bin 4 (count 0) at S = 6 fails too, ... until the
    # running sum passes 8 at bin 5 (S = 10): no bin qualifies, the loop ends at k = 9 with
    # S = 0+1+...+8 = 36 and count_9 = 0: (8 - 36) / 0 = -inf, so max(-inf, floor) = floor.
    hist = torch.tensor([[4, 4, 4, 4, 0, 0, 0, 0, 0, 0]])
    assert plop.median_thresholds(hist, 0.001).item() == pytest.approx(0.2)
    assert plop.released_median_thresholds(hist, 0.001).item() == pytest.approx(0.001)
    # 100 pixels in bin 3 of 10: S = 0, 0, 1, 3 -> bin 3 holds [3, 103] ∋ 50: 0.3 + (50 - 3) / 100 / 10
    hist = torch.zeros(1, 10, dtype=torch.long)
    hist[0, 3] = 100
    assert plop.released_median_thresholds(hist, 0.001).item() == pytest.approx(0.3 + 0.047)
    assert plop.median_thresholds(hist, 0.001).item() == pytest.approx(0.35)
    # a bin reached exactly with count 0: 0/0 = NaN, kept by max(); an empty class gets the floor
    hist = torch.tensor([[0, 2, 0, 0], [0, 0, 0, 0]])  # half = 1: bin 0 holds [0, 0]; bin 1 [0, 2] ∋ 1
    out = plop.released_median_thresholds(hist, 0.01)
    assert out[0].item() == pytest.approx(0.25 + 1 / 2 / 4) and out[1].item() == pytest.approx(0.01)
    hist = torch.tensor([[1, 0, 0, 0, 0]])  # half 0.5: bin 0 holds [0, 1] ∋ 0.5
    assert plop.released_median_thresholds(hist, 0.0).item() == pytest.approx(0.5 / 5)
    exact = torch.tensor([[0, 0, 2, 0]])  # half 1: S = 0, 0, 1 -> bin 2 holds [1, 3] ∋ 1 -> 2/4 + 0
    assert plop.released_median_thresholds(exact, 0.0).item() == pytest.approx(0.5)
    zero_count = torch.tensor([[0, 0, 0, 2, 0]])  # half 1: S = 0, 0, 1 at bin 2 with count 0: 0/0
    assert math.isnan(plop.released_median_thresholds(zero_count, 0.001).item())


def test_released_adaptive_factor_is_zero_without_background():
    teacher = torch.zeros(2, 2, 1, 2)
    teacher[:, 1] = 10.0  # confident old class 1 everywhere
    target = torch.tensor([[[0, 2]], [[2, 255]]])  # image 1: no background pixel
    thresholds = torch.ones(2)
    labels, nu = plop.entropy_pseudo_labels(target, teacher, thresholds)
    assert nu.tolist() == [1.0, 1.0]
    labels_r, nu_r = plop.entropy_pseudo_labels(target, teacher, thresholds, channels=3)
    assert torch.equal(labels, labels_r) and labels[0, 0].tolist() == [1, 2]
    assert nu_r[0].item() == pytest.approx(1 / (1 + 1e-6)) and nu_r[1].item() == 0.0


def test_released_pod_regions_are_square_of_side_w_over_s():
    x = torch.arange(36.0).reshape(1, 1, 6, 6)
    # s = 4: k = 1, only the top-left 4x4 block is pooled (rows/columns 4, 5 dropped)
    emb = plop.released_local_pod_embedding(x, scales=(4,))
    block = x[0, 0, :4, :4]
    assert sorted(emb[0].tolist()) == sorted(block.flatten().tolist() * 2)
    # square maps that every scale divides: the same values as the adaptive regions
    y = torch.rand(2, 3, 8, 8)
    a, b = plop.released_local_pod_embedding(y), plop.local_pod_embedding(y)
    assert torch.allclose(a.sort(1).values, b.sort(1).values)
    # taller than wide: the extra rows are ignored; wider than tall: refused (the code fails there)
    assert plop.released_local_pod_embedding(torch.rand(1, 1, 10, 8)).shape == plop.released_local_pod_embedding(
        torch.rand(1, 1, 8, 8)).shape
    with pytest.raises(ValueError, match="mode: corrected"):
        plop.released_local_pod_embedding(torch.rand(1, 1, 6, 8))


def test_mode_option_is_checked():
    assert plop.PlopOptions().mode == "corrected"
    with pytest.raises(Exception, match="mode must be"):
        plop.PlopOptions(mode="paper")
