import math

import torch

from llseg.methods.losses import labelled_cross_entropy
from llseg.methods.recipes.klingner import entropy_weighted_distillation


def test_cross_entropy_averages_over_labelled_pixels_only():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # N=1, C=2, H=1, W=2
    target = torch.tensor([[[0, 255]]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert math.isclose(float(labelled_cross_entropy(logits, target)), expected, rel_tol=1e-6)


def test_cross_entropy_without_labels_is_zero_and_differentiable():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = labelled_cross_entropy(logits, torch.full((1, 2, 2), 255))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(logits.grad == 0)


def _manual_kd(student, teacher, mask, temperature, lambda_gs):
    total, count = 0.0, 0
    n_old = teacher.shape[1]
    for n in range(student.shape[0]):
        for h in range(student.shape[2]):
            for w in range(student.shape[3]):
                if not mask[n, h, w]:
                    continue
                t = torch.softmax(teacher[n, :, h, w] / temperature, 0)
                logp = torch.log_softmax(student[n, :, h, w] / temperature, 0)[:n_old]
                entropy = -sum(float(p) * math.log2(float(p)) for p in t)
                total += (1 + lambda_gs * entropy) * float(-(t * logp).sum())
                count += 1
    return temperature**2 * total / count


def test_distillation_matches_the_formula():
    torch.manual_seed(0)
    student = torch.randn(2, 4, 2, 3)
    teacher = torch.randn(2, 3, 2, 3)
    mask = torch.tensor([[[1, 0, 1], [0, 0, 1]], [[1, 1, 1], [0, 0, 0]]], dtype=torch.bool)
    for temperature, lambda_gs in [(1.0, 1.0), (2.0, 0.5), (1.0, 0.0)]:
        got = entropy_weighted_distillation(student, teacher, mask, temperature=temperature, lambda_gs=lambda_gs)
        assert math.isclose(float(got), _manual_kd(student, teacher, mask, temperature, lambda_gs), rel_tol=1e-5)


def test_distillation_is_zero_without_unlabelled_pixels():
    student = torch.randn(1, 3, 2, 2)
    assert float(entropy_weighted_distillation(student, torch.randn(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.bool))) == 0.0


def test_distillation_pushes_new_class_probability_down():
    """The softmax runs over all student channels, so matching old targets lowers the new logit."""
    student = torch.zeros(1, 3, 1, 1, requires_grad=True)
    teacher = torch.tensor([[[[3.0]], [[0.0]]]])
    entropy_weighted_distillation(student, teacher, torch.ones(1, 1, 1, dtype=torch.bool)).backward()
    grad = student.grad[0, :, 0, 0]
    assert grad[2] > 0  # gradient descent lowers the new channel's logit
    assert grad[0] < 0  # and raises the teacher's favourite old class


def test_losses_agree_across_memory_formats_and_with_torch():
    """The learner trains channels_last; the losses read those maps as pixel rows without a copy."""
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 6, 7), torch.randn(2, 3, 6, 7)
    target = torch.randint(0, 5, (2, 6, 7))
    target[0, :2] = 255
    mask = target == 255
    results = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        s = student.contiguous(memory_format=fmt).clone().requires_grad_()
        t = teacher.contiguous(memory_format=fmt)
        ce, kd = labelled_cross_entropy(s, target), entropy_weighted_distillation(s, t, mask, temperature=2.0)
        (ce + kd).backward()
        results.append((float(ce.detach()), float(kd.detach()), s.grad.contiguous()))
    (ce0, kd0, g0), (ce1, kd1, g1) = results
    assert math.isclose(ce0, float(torch.nn.functional.cross_entropy(student, target, ignore_index=255)), rel_tol=1e-6)
    assert math.isclose(kd0, _manual_kd(student, teacher, mask, 2.0, 1.0), rel_tol=1e-5)
    assert math.isclose(ce0, ce1, rel_tol=1e-6) and math.isclose(kd0, kd1, rel_tol=1e-6)
    torch.testing.assert_close(g0, g1)
