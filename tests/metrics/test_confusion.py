"""Confusion-matrix metrics against hand-computed values."""
from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch

from llseg.metrics import (
    ConfusionMatrix,
    class_accuracy,
    confusion_matrix,
    hiou,
    iou_per_class,
    mean_iou,
    old_new_all,
    pixel_accuracy,
    restrict_target,
    restricted_argmax,
)
from llseg.metrics.confusion import confusion_stack

# One 2×3 image, C = 3. Pixel (1, 1) is ignored (its prediction 0 must not count).
TARGET = np.array([[0, 0, 1], [1, 255, 2]], dtype=np.uint8)
PRED = np.array([[0, 1, 1], [2, 0, 2]], dtype=np.int64)
# rows = ground truth, columns = prediction
CONF = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1]])


def test_confusion_matrix_by_hand_and_ignore() -> None:
    conf = confusion_matrix(PRED, TARGET, 3)
    assert conf.dtype == np.int64 and conf.shape == (3, 3)
    np.testing.assert_array_equal(conf, CONF)
    assert conf.sum() == 5  # 6 pixels, 1 ignored


def test_iou_accuracies_by_hand() -> None:
    # IoU0 = 1/(2+1-1), IoU1 = 1/(2+2-1), IoU2 = 1/(1+2-1)
    np.testing.assert_allclose(iou_per_class(CONF), [1 / 2, 1 / 3, 1 / 2])
    assert mean_iou(CONF) == pytest.approx(4 / 9)
    assert mean_iou(CONF, [1, 2]) == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert pixel_accuracy(CONF) == pytest.approx(3 / 5)
    np.testing.assert_allclose(class_accuracy(CONF), [1 / 2, 1 / 2, 1])


def test_absent_class_is_nan_and_skipped() -> None:
    conf = confusion_matrix(PRED, TARGET, 4)  # class 3 neither labelled nor predicted
    iou = iou_per_class(conf)
    assert np.isnan(iou[3])
    assert mean_iou(conf) == pytest.approx(4 / 9)
    assert np.isnan(class_accuracy(conf)[3])
    with pytest.raises(ValueError, match=r"no pixel of classes \[3\]"):
        mean_iou(conf, [3])


def test_predicted_but_unlabelled_class_counts_as_zero() -> None:
    pred = PRED.copy()
    pred[0, 0] = 3  # a false positive of class 3, which has no ground truth
    conf = confusion_matrix(pred, TARGET, 4)
    iou = iou_per_class(conf)
    # IoU0 = 0/(2+0-0), IoU1 = 1/3, IoU2 = 1/2, IoU3 = 0/(0+1-0)
    np.testing.assert_allclose(iou, [0, 1 / 3, 1 / 2, 0])
    assert mean_iou(conf) == pytest.approx((1 / 3 + 1 / 2) / 4)
    assert np.isnan(class_accuracy(conf)[3])


def test_empty_matrix_raises_instead_of_nan() -> None:
    conf = confusion_matrix(np.zeros((2, 2), np.int64), np.full((2, 2), 255), 3)
    assert conf.sum() == 0
    with pytest.raises(ValueError, match="no pixel"):
        mean_iou(conf)
    with pytest.raises(ValueError, match="empty"):
        pixel_accuracy(conf)


def test_torch_equals_numpy_batched_and_brute_force() -> None:
    rng = np.random.default_rng(0)
    c = 5
    target = rng.integers(0, c, size=(3, 7, 9)).astype(np.uint8)
    target[rng.random(target.shape) < 0.2] = 255
    pred = rng.integers(0, c, size=(3, 7, 9)).astype(np.int64)
    brute = np.zeros((c, c), np.int64)
    for t, p in zip(target.ravel(), pred.ravel()):
        if t != 255:
            brute[t, p] += 1
    from_np = confusion_matrix(pred, target, c)
    from_torch = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), c)
    assert isinstance(from_torch, np.ndarray) and from_torch.dtype == np.int64
    np.testing.assert_array_equal(from_np, brute)
    np.testing.assert_array_equal(from_torch, brute)
    # single H×W image and mixed numpy/torch inputs
    np.testing.assert_array_equal(
        confusion_matrix(torch.from_numpy(pred[0]), target[0], c), confusion_matrix(pred[0], target[0], c)
    )


def test_accumulator_update_merge_reset() -> None:
    rng = np.random.default_rng(1)
    target = rng.integers(0, 4, size=(4, 5, 6))
    target[0, 0, :3] = 255
    pred = rng.integers(0, 4, size=(4, 5, 6))
    whole = confusion_matrix(pred, target, 4)

    acc = ConfusionMatrix(4)
    acc.update(torch.from_numpy(pred[:2]), torch.from_numpy(target[:2]))
    acc.update(pred[2], target[2])  # numpy batch mixed in
    other = ConfusionMatrix(4)
    other.update(torch.from_numpy(pred[3]), torch.from_numpy(target[3]))
    acc.merge(other)
    np.testing.assert_array_equal(acc.matrix, whole)

    m = acc.matrix
    m[0, 0] += 100  # .matrix is a copy
    np.testing.assert_array_equal(acc.matrix, whole)

    acc.reset()
    assert acc.matrix.sum() == 0
    with pytest.raises(ValueError, match="num_classes=5"):
        acc.merge(ConfusionMatrix(5))


@pytest.mark.parametrize("to_torch", [False, True])
def test_bad_values_raise(to_torch: bool) -> None:
    conv = torch.from_numpy if to_torch else (lambda a: a)
    target = np.array([[0, 19, 254], [255, 1, 2]])
    pred = np.zeros((2, 3), np.int64)
    with pytest.raises(ValueError, match=r"target has values \[19, 254\] outside \[0, 19\)"):
        confusion_matrix(conv(pred), conv(target), 19)
    pred[1, 1] = 3
    with pytest.raises(ValueError, match=r"pred has values \[3\] outside \[0, 3\)"):
        confusion_matrix(conv(pred), conv(np.zeros((2, 3), np.int64)), 3)
    with pytest.raises(ValueError, match="integer class ids"):
        confusion_matrix(conv(pred.astype(np.float32)), conv(target), 19)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(conv(pred[:1]), conv(target), 19)


def test_uint8_targets_check_every_value_above_the_classes() -> None:
    """uint8 label maps take a clamp fast path: values >= C are ignore_index or an error, for any ignore_index."""
    pred = np.zeros((2, 3), np.uint8)
    target = np.array([[0, 19, 254], [255, 1, 2]], np.uint8)
    with pytest.raises(ValueError, match=r"target has values \[19, 254\] outside \[0, 19\)"):
        confusion_matrix(pred, target, 19)
    with pytest.raises(ValueError, match=r"target has values \[19, 255\] outside \[0, 19\)"):
        confusion_matrix(pred, target, 19, ignore_index=254)
    ok = np.array([[0, 250, 3], [250, 1, 2]], np.uint8)
    expected = confusion_matrix(pred.astype(np.int64), ok.astype(np.int64), 4, ignore_index=250)
    assert expected.sum() == 4 and np.array_equal(confusion_matrix(pred, ok, 4, ignore_index=250), expected)
    with pytest.raises(ValueError, match=r"target has values \[250\] outside \[0, 4\)"):
        confusion_matrix(pred, ok, 4, ignore_index=-1)  # an ignore_index no uint8 can hold


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="ignore_index=0 is a real class id"):
        confusion_matrix(PRED, TARGET, 3, ignore_index=0)
    with pytest.raises(ValueError, match="square"):
        iou_per_class(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="outside"):
        mean_iou(CONF, [0, 3])
    with pytest.raises(ValueError, match="more than once"):
        mean_iou(CONF, [0, 0])


def test_restricted_argmax_picks_best_inside_subset() -> None:
    # 1×4×1×3 logits; channel 1 holds the global maximum at every pixel.
    logits = torch.tensor(
        [[0.1, 5.0, 0.3, 0.2], [9.0, 10.0, 1.0, 4.0], [0.0, 3.0, 0.5, 0.5]]
    ).T.reshape(1, 4, 1, 3)
    assert logits.argmax(1).tolist() == [[[1, 1, 1]]]
    out = restricted_argmax(logits, [3, 2])
    assert out.dtype == torch.int64
    # pixel 0: 0.3 > 0.2 -> 2; pixel 1: 4 > 1 -> 3; pixel 2: tie 0.5 = 0.5 -> lowest id, 2
    assert out.tolist() == [[[2, 3, 2]]]
    assert restricted_argmax(logits[0], torch.tensor([0, 2])).tolist() == [[2, 0, 2]]  # C×H×W
    with pytest.raises(ValueError, match=r"outside \[0, 4\)"):
        restricted_argmax(logits, [4])
    with pytest.raises(ValueError, match="N×C×H×W"):
        restricted_argmax(logits[0, 0], [0])


@pytest.mark.parametrize("to_torch", [False, True])
def test_restrict_target(to_torch: bool) -> None:
    target = np.array([[0, 1, 2], [3, 255, 1]], dtype=np.uint8)
    given = torch.from_numpy(target.copy()) if to_torch else target.copy()
    out = restrict_target(given, [1, 3])
    expected = np.array([[255, 1, 255], [3, 255, 1]], dtype=np.uint8)
    assert type(out) is type(given) and out.dtype == given.dtype
    np.testing.assert_array_equal(np.asarray(out), expected)
    np.testing.assert_array_equal(np.asarray(given), target)  # input untouched
    with pytest.raises(ValueError, match="ignore_index"):
        restrict_target(given, [1, 255])


def test_task_restricted_miou_pipeline() -> None:
    # Klingner-style: task = classes {2, 3}; argmax inside the block, other GT ignored.
    logits = torch.tensor([[9.0, 0.0, 1.0, 0.0], [0.0, 9.0, 0.0, 2.0], [0.0, 0.0, 3.0, 1.0]]).T.reshape(1, 4, 1, 3)
    target = torch.tensor([[[0, 3, 2]]])
    pred = restricted_argmax(logits, [2, 3])  # [[2, 3, 2]]
    conf = confusion_matrix(pred, restrict_target(target, [2, 3]), 4)
    # pixel 0 (GT 0) ignored; pixel 1: 3->3; pixel 2: 2->2 -> IoU2 = IoU3 = 1, classes 0, 1 NaN
    assert mean_iou(conf, [2, 3]) == 1.0
    assert mean_iou(conf) == 1.0


def test_old_new_all_and_hiou_by_hand() -> None:
    conf = np.array([[8, 2, 0, 0], [1, 3, 0, 0], [0, 1, 4, 1], [0, 0, 2, 2]])
    # row sums 10, 4, 6, 4; column sums 9, 6, 6, 3
    iou = [Fraction(8, 11), Fraction(3, 7), Fraction(4, 8), Fraction(2, 5)]
    np.testing.assert_allclose(iou_per_class(conf), [float(x) for x in iou])
    old = sum(iou[:3]) / 3
    new = iou[3]
    res = old_new_all(conf, [0, 1, 2], [3])
    assert res["old"] == pytest.approx(float(old))
    assert res["new"] == pytest.approx(0.4)
    assert res["all"] == pytest.approx(float(sum(iou) / 4))  # (3·old + 1·new) / 4
    assert res["all"] != pytest.approx(float((old + new) / 2))
    assert res["hiou"] == pytest.approx(float(2 * old * new / (old + new)))

    first = old_new_all(conf, [0, 1, 2, 3], [])
    assert first == {"old": pytest.approx(float(sum(iou) / 4)), "new": None, "all": first["old"], "hiou": None}
    with pytest.raises(ValueError, match="share"):
        old_new_all(conf, [0, 1], [1, 2])


def test_hiou_values() -> None:
    assert hiou(0.6, 0.4) == pytest.approx(0.48)
    assert hiou(0.0, 0.0) == 0.0
    assert hiou(0.5, 0.0) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        hiou(float("nan"), 0.3)


@pytest.mark.parametrize("m, num_classes", [(1, 3), (2, 5), (3, 19), (5, 19), (7, 4)])
def test_confusion_stack_equals_one_matrix_per_map(m, num_classes):
    """One pass over several maps (joint histograms of up to three maps) must equal per-map matrices."""
    rng = np.random.default_rng(m * 100 + num_classes)
    target = rng.integers(0, num_classes, size=(17, 23)).astype(np.uint8)
    target[rng.random(target.shape) < 0.2] = 255
    preds = rng.integers(0, num_classes, size=(m, 17, 23)).astype(np.uint8)
    stack = confusion_stack(preds, target, num_classes)
    assert stack.shape == (m, num_classes, num_classes)
    for k in range(m):
        np.testing.assert_array_equal(stack[k], brute_confusion(preds[k], target, num_classes))


def brute_confusion(pred: np.ndarray, target: np.ndarray, c: int, ignore_index: int = 255) -> np.ndarray:
    """One pixel at a time, rows = ground truth."""
    conf = np.zeros((c, c), np.int64)
    for t, p in zip(target.ravel().tolist(), pred.ravel().tolist()):
        if t != ignore_index:
            conf[t, p] += 1
    return conf


@pytest.mark.parametrize("target_dtype", [np.uint8, np.int16, np.uint16, np.int32, np.int64, np.uint32])
@pytest.mark.parametrize("pred_dtype", [np.uint8, np.int8, np.uint16, np.int32, np.int64])
def test_confusion_stack_any_integer_dtype_and_layout(target_dtype, pred_dtype):
    """Every integer dtype, transposed (non-contiguous) inputs, and more maps than one joint
    histogram holds (19 classes: three maps per histogram, so 4 maps take two)."""
    rng = np.random.default_rng(7)
    c = 19
    target = rng.integers(0, c, size=(23, 17)).astype(target_dtype)
    target[rng.random(target.shape) < 0.2] = 255
    preds = [rng.integers(0, c, size=(17, 23)).astype(pred_dtype).T for _ in range(4)]
    target.flags.writeable = False  # e.g. np.asarray of a PIL image: no copy-on-read warning from torch
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stack = confusion_stack(preds, target, c)
    for k in range(4):
        np.testing.assert_array_equal(stack[k], brute_confusion(preds[k], target, c))
    bad = target.copy()
    bad[0, 0] = 19
    with pytest.raises(ValueError, match=r"target has values \[19\]"):
        confusion_stack(preds, bad, c)


def test_confusion_stack_rejects_out_of_range_predictions():
    with pytest.raises(ValueError, match="outside"):
        confusion_stack(np.full((2, 3, 3), 7, np.uint8), np.zeros((3, 3), np.uint8), 4)


def test_the_device_counting_path_runs_on_cpu_tensors_too():
    """``_confusion_torch`` (used for accelerator tensors; CPU tensors take the host path) counts
    exactly as the host path: exercised here on the CPU, so a wrong kernel cannot pass unnoticed."""
    from llseg.metrics.confusion import _confusion_host, _confusion_torch

    rng = np.random.default_rng(1)
    target = rng.integers(0, 5, size=(3, 17, 23))
    target[rng.random(target.shape) < 0.2] = 255
    pred = rng.integers(0, 5, size=target.shape)
    counts = _confusion_torch(torch.from_numpy(pred), torch.from_numpy(target), 5, 255).numpy()
    expected = np.zeros((5, 5), np.int64)
    np.add.at(expected, (target[target != 255], pred[target != 255]), 1)
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(counts, _confusion_host(pred, target, 5, 255))
    with pytest.raises(ValueError, match=r"target has values \[7\] outside \[0, 5\)"):
        _confusion_torch(torch.tensor([1, 2]), torch.tensor([7, 1]), 5, 255)
    with pytest.raises(ValueError, match=r"pred has values \[5\] outside \[0, 5\)"):
        _confusion_torch(torch.tensor([5, 2]), torch.tensor([0, 1]), 5, 255)
