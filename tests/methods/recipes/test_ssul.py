"""SSUL's components on hand-made tensors (docs/methods.md §2)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from llseg.data.dataset import channel_lut
from llseg.methods import losses
from llseg.methods.recipes import ssul
from llseg.models import create_model


def test_bce_sums_channels_and_averages_labelled_pixels():
    logits = torch.tensor([[[[0.0, 2.0]], [[1.0, -1.0]]]])  # N=1, C=2, H=1, W=2
    target = torch.tensor([[[1, 255]]])
    # pixel 0: BCE(σ(0), 0) + BCE(σ(1), 1) = log 2 + log(1 + e^-1); pixel 1 ignored
    expected = math.log(2) + math.log(1 + math.exp(-1))
    assert losses.bce_with_ignore(logits, target).item() == pytest.approx(expected, rel=1e-6)
    assert losses.bce_with_ignore(logits, torch.full((1, 1, 2), 255)).item() == 0.0


def test_merge_unknown_adds_unknown_to_background_and_drops_it():
    probs = torch.tensor([0.5, 0.2, 0.6, 0.1]).view(1, 4, 1, 1)  # unknown, bg, class 1, class 2
    merged = ssul.merge_unknown(probs)
    assert merged.flatten().tolist() == pytest.approx([0.7, 0.6, 0.1])
    assert merged.argmax(1).item() == 0  # bg wins only because the unknown mass joins it


def test_pseudo_labels_take_confident_old_foreground_on_background_only():
    # unknown layout: channel 0 unknown, 1 bg, 2-3 old foreground, 4 new (student only)
    target = torch.tensor([[[0, 1, 1, 4, 255, 1]]])
    teacher = torch.full((1, 4, 1, 6), -5.0)
    teacher[0, 2, 0, 0] = 3.0  # unknown pixel, confident class 2 -> 2
    teacher[0, 3, 0, 1] = 3.0  # bg pixel, confident class 3 -> 3
    teacher[0, 2, 0, 2] = 0.1  # bg pixel, σ(0.1) = 0.52 < τ -> stays bg
    teacher[0, 2, 0, 3] = 3.0  # labelled new class: kept
    teacher[0, 2, 0, 4] = 3.0  # ignore: kept
    teacher[0, 1, 0, 5] = 3.0  # confident background: not old foreground -> stays
    out = ssul.pseudo_label(target, teacher, loss_type="bce", threshold=0.7, unknown=True)
    assert out.tolist() == [[[2, 3, 1, 4, 255, 1]]]
    # without unknown, channel 0 is the background
    out = ssul.pseudo_label(torch.tensor([[[0, 0]]]), torch.tensor([[[[-9.0, 0.0]], [[9.0, 0.0]]]]),
                            loss_type="ce", threshold=0.9, unknown=False)
    assert out.tolist() == [[[1, 0]]]  # softmax: pixel 0 is class 1 with p ≈ 1; pixel 1 has p = 0.5


def test_unknown_lut_shifts_classes_and_makes_background_unknown():
    base = channel_lut([0, 5, 7])  # bg (train id 0) -> channel 0, 5 -> 1, 7 -> 2
    lut = ssul.unknown_lut(base, 0)
    assert lut[0] == ssul.UNKNOWN and lut[5] == 2 and lut[7] == 3
    assert lut[255] == 255 and lut[3] == 255


def test_memory_is_class_balanced_and_deterministic():
    present = np.zeros((12, 4), dtype=bool)
    present[:8, 1] = True  # class 1 is common
    present[8:10, 2] = True
    present[10:, 3] = True
    chosen = ssul.select_memory(present, [1, 2, 3], 6, seed=7)
    assert chosen == ssul.select_memory(present, [1, 2, 3], 6, seed=7)
    assert len(set(chosen)) == 6
    per_class = [int(present[chosen, c].sum()) for c in (1, 2, 3)]
    assert per_class == [2, 2, 2]  # two rounds, one image per class each
    assert ssul.select_memory(present, [1, 2, 3], 6, seed=8) != chosen
    # asking for more than exists: every image once, then stop
    assert sorted(ssul.select_memory(present, [1, 2, 3], 50, seed=0)) == list(range(12))


def test_weight_transfer_copies_the_unknown_head():
    model = create_model("deeplabv3_mobilenet_v3_large", num_classes=3, head="per_step", unknown=True)
    model.add_classes(2)
    heads = model.classifier.heads
    with torch.no_grad():
        heads[0][1].running_mean.uniform_()
    ssul.transfer_unknown_head(heads)
    unknown, new = heads[0], heads[-1]
    assert torch.equal(new[0].weight, unknown[0].weight)
    assert torch.equal(new[1].running_mean, unknown[1].running_mean)
    assert torch.equal(new[-1].weight, unknown[-1].weight.expand(2, -1, -1, -1))
    assert torch.equal(new[-1].bias, unknown[-1].bias.expand(2))
    assert not torch.equal(heads[1][0].weight, unknown[0].weight)  # other heads untouched


def test_frozen_step_groups_and_bn_freeze():
    model = create_model("deeplabv3_mobilenet_v3_large", num_classes=3, head="per_step", unknown=True)
    model.add_classes(1)
    groups = ssul.frozen_step_groups(model.classifier.heads, lr=0.01, unknown=True)
    assert [g["lr"] for g in groups] == [0.01, 0.01, pytest.approx(1e-6)]
    assert groups[0]["params"][0] is model.classifier.heads[-1][0].weight
    model.train()
    ssul.freeze_batchnorm(model)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training and not m.weight.requires_grad for m in bns)
    kept = ssul.trainable(groups)
    assert all(p.requires_grad for g in kept for p in g["params"])
    assert sum(len(g["params"]) for g in kept) == 3 * 3  # 3 heads x (conv3x3 w, conv1x1 w and b); BN frozen
