"""MiB's components on hand-made tensors (docs/methods.md §5), against the formulas written out here."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from llseg.methods.recipes import mib
from llseg.models.registry import grow_classifier


def softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def test_unbiased_cross_entropy_merges_old_classes_into_background():
    # C = 3: channel 0 background, 1 an old class (old_channels = 2), 2 the new class
    pixels = [[0.5, 1.0, -0.5], [2.0, 0.0, 1.0], [0.0, 0.3, 0.2], [1.0, 1.0, 1.0]]
    logits = torch.tensor(pixels).T.reshape(1, 3, 1, 4)
    target = torch.tensor([[[0, 2, 1, 255]]])  # bg, new, an old class (counts as bg), ignored
    q = [softmax(p) for p in pixels]
    expected = -(math.log(q[0][0] + q[0][1]) + math.log(q[1][2]) + math.log(q[2][0] + q[2][1]) + 0.0) / 4
    assert mib.unbiased_cross_entropy(logits, target, 2).item() == pytest.approx(expected, rel=1e-6)
    # one old channel (the background): plain cross-entropy, averaged over all pixels
    plain = -(math.log(q[0][0]) + math.log(q[1][2]) + math.log(q[2][1])) / 4
    assert mib.unbiased_cross_entropy(logits, target, 1).item() == pytest.approx(plain, rel=1e-6)
    with pytest.raises(ValueError, match="old_channels must be >= 1"):
        mib.unbiased_cross_entropy(logits, target, 0)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_unbiased_distillation_folds_new_classes_into_the_student_background(alpha):
    # student: bg, old 1, old 2, new 3, new 4; teacher: bg, old 1, old 2
    student = [[0.2, 1.0, -1.0, 0.5, 0.1], [1.5, -0.5, 0.0, 2.0, -1.0]]
    teacher = [[1.0, 0.0, -2.0], [-1.0, 2.0, 0.5]]
    logits = torch.tensor(student).T.reshape(1, 5, 1, 2)
    teacher_logits = torch.tensor(teacher).T.reshape(1, 3, 1, 2)
    total = 0.0
    for s, t in zip(student, teacher):
        q, p = softmax(s), softmax([alpha * v for v in t])
        folded = [q[0] + q[3] + q[4], q[1], q[2]]
        total += -sum(p[c] * math.log(folded[c]) for c in range(3)) / 3
    got = mib.unbiased_distillation(logits, teacher_logits, alpha=alpha).item()
    assert got == pytest.approx(total / 2, rel=1e-6)


def test_unbiased_distillation_is_minimal_when_the_student_matches_the_teacher():
    teacher = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    # new channel at -inf-like: the student's folded distribution equals the teacher's
    matched = torch.cat([teacher, torch.full((2, 1, 4, 4), -30.0)], 1)
    other = matched.clone()
    other[:, 1] += 1.0
    p = torch.softmax(teacher, 1)
    entropy = -(p * p.log()).sum(1).mean() / 3
    assert mib.unbiased_distillation(matched, teacher).item() == pytest.approx(entropy.item(), rel=1e-4)
    assert mib.unbiased_distillation(other, teacher).item() > entropy.item()


def test_init_balanced_copies_background_weights_and_splits_its_bias():
    conv = nn.Conv2d(4, 2, 1)
    with torch.no_grad():
        conv.bias.copy_(torch.tensor([0.7, -0.2]))
    old_weight = conv.weight.detach().clone()
    grown = grow_classifier(conv, 3)
    mib.init_balanced(grown, 3)
    w, b = grown.weight.detach(), grown.bias.detach()
    assert all(torch.equal(w[k], old_weight[0]) for k in (2, 3, 4))
    assert torch.equal(w[:2], old_weight)  # old weights untouched
    balanced = 0.7 - math.log(4)  # β_b − log(|C_t| + 1)
    assert b.tolist() == pytest.approx([balanced, -0.2, balanced, balanced, balanced])
    # the background's probability mass is split evenly among b and the new classes
    logits = torch.zeros(5) + b
    p_old_bg = torch.softmax(torch.tensor([0.7, -0.2]), 0)[0]
    p = torch.softmax(logits, 0)
    assert p[[0, 2, 3, 4]].sum().item() == pytest.approx(p_old_bg.item(), rel=1e-6)
