import math

import torch

from llseg.methods.losses import entropy_weighted_distillation, labelled_cross_entropy


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
