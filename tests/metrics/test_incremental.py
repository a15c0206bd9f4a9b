import numpy as np
import pytest
import torch

from llseg.data.predictions import Prediction, predictions_from_logits
from llseg.metrics.incremental import IncrementalScorer, format_table, union_name

# 4 dataset classes, the model learned groups [[0, 1], [2]]; class 3 is never learned.
GT = np.array([[0, 0, 1, 2, 2, 255]], np.uint8)
PRED = np.array([[0, 1, 1, 2, 0, 2]], np.uint8)
GROUP = np.array([[[0, 1, 1, 0, 0, 1]], [[2, 2, 2, 2, 2, 2]]], np.uint8)
RECORD = Prediction(
    pred=PRED, group_pred=GROUP, prefix_pred=np.stack([GROUP[0], PRED]),
    classes=np.array([0, 1, 2]), group_sizes=np.array([2, 1]), num_classes=4,
)


def test_hand_computed_table():
    scorer = IncrementalScorer(4)
    scorer.update(RECORD, GT)
    table = scorer.table()
    # IoU: class0 1/3, class1 1/2, class2 1/2 (see the pixel pairs above)
    assert table["accuracy"] == pytest.approx(4 / 9)
    assert table["mIoU_task1"] == pytest.approx(0.5)  # argmax inside {0,1}, GT of class 2 ignored
    assert table["mIoU_task2"] == pytest.approx(1.0)
    assert table["mIoU_task1+2"] == pytest.approx(4 / 9)
    assert table["mIoU_old"] == pytest.approx(5 / 12)
    assert table["mIoU_new"] == pytest.approx(0.5)
    assert table["mIoU_all"] == pytest.approx(4 / 9)
    assert table["hIoU"] == pytest.approx(5 / 11)


def test_unlearned_classes_count_in_accuracy_but_not_in_old_new_all():
    gt = GT.copy()
    gt[0, 5] = 3  # a pixel of a class the model does not know
    scorer = IncrementalScorer(4)
    scorer.update(RECORD, gt)
    table = scorer.table()
    # class 2 now has an extra false positive (pred 2 on the class-3 pixel): IoU 1/3; class 3 IoU 0
    assert table["accuracy"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 3 + 0) / 4)
    assert table["mIoU_all"] == pytest.approx(4 / 9)  # the class-3 pixel is ignored there


def test_records_of_different_models_are_not_mixed():
    scorer = IncrementalScorer(4)
    scorer.update(RECORD, GT)
    other = Prediction(PRED, GROUP[:1], PRED[None], np.array([0, 1, 2]), np.array([3]), 4)
    with pytest.raises(ValueError, match="mix models"):
        scorer.update(other, GT)


def test_logits_to_restricted_maps():
    # channels score classes [7, 2, 5] in groups [2, 1]; one pixel
    logits = torch.tensor([1.0, 0.5, 3.0]).view(1, 3, 1, 1)
    pred, group_pred, prefix_pred = predictions_from_logits(logits, [7, 2, 5], [2, 1])
    assert pred.item() == 5
    assert group_pred[0, :, 0, 0].tolist() == [7, 5]
    assert prefix_pred[0, :, 0, 0].tolist() == [7, 5]


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_restricted_maps_equal_argmax_over_each_group_and_prefix(layout, dtype):
    torch.manual_seed(0)
    classes, sizes = [0, 9, 4, 7, 1, 3, 12, 2], [3, 1, 2, 2]
    logits = torch.randint(-3, 4, (2, 8, 5, 6)).to(dtype)  # small integers: many ties across channels
    logits = logits.contiguous(memory_format=layout)
    pred, group_pred, prefix_pred = predictions_from_logits(logits, classes, sizes)
    lut, bounds = torch.tensor(classes), [0, 3, 4, 6, 8]
    for g in range(len(sizes)):
        lo, hi = bounds[g], bounds[g + 1]
        assert torch.equal(group_pred[:, g].long(), lut[lo + logits[:, lo:hi].float().argmax(1)])
        assert torch.equal(prefix_pred[:, g].long(), lut[logits[:, :hi].float().argmax(1)])
    assert torch.equal(pred, prefix_pred[:, -1]) and pred.dtype == torch.uint8


def test_union_names():
    assert union_name(3) == "mIoU_task1+2+3"


def test_format_table_shows_every_stage_s_columns():
    text = format_table({"stage 1": {"mIoU_task1": 0.5, "accuracy": 0.5},
                         "stage 2": {"mIoU_task1": 0.25, "mIoU_task2": 0.75, "mIoU_task1+2": 0.5, "accuracy": 0.5}})
    header, _, first, second = text.splitlines()
    assert header == "| | task1 | task2 | task1+2 | accuracy |"
    assert first == "| stage 1 | 50.0 | – | – | 50.0 |"
    assert second == "| stage 2 | 25.0 | 75.0 | 50.0 | 50.0 |"


def test_unscored_classes_are_ignored_in_the_ground_truth_and_left_out_of_every_score():
    # ADE20K's "other" (0): trained as the background channel, never scored (0-pixels ignored)
    record = Prediction(PRED, GROUP, np.stack([GROUP[0], PRED]), np.array([0, 1, 2]), np.array([2, 1]), 4, unscored=(0,))
    scorer = IncrementalScorer(4)
    scorer.update(record, GT)
    table = scorer.table()
    # left: pixels 2..4 (GT 1, 2, 2; pred 1, 2, 0): class 1 IoU 1, class 2 IoU 1/2; class 0's false positive unscored
    assert table["mIoU_old"] == pytest.approx(1.0)
    assert table["mIoU_new"] == pytest.approx(0.5)
    assert table["mIoU_all"] == table["accuracy"] == pytest.approx(0.75)
    assert table["mIoU_task1"] == pytest.approx(1.0)

def test_accuracy_averages_only_the_classes_present_in_the_ground_truth():
    """Class 2 is predicted on one pixel but absent from the labels: its IoU (0) must not count."""
    gt = np.array([[0, 0, 1, 1, 1, 255]], np.uint8)
    pred = np.array([[0, 0, 1, 1, 2, 2]], np.uint8)
    group = np.stack([np.where(pred == 2, 1, pred), np.full_like(pred, 2)])
    record = Prediction(pred=pred, group_pred=group, prefix_pred=np.stack([group[0], pred]),
                        classes=np.array([0, 1, 2]), group_sizes=np.array([2, 1]), num_classes=4)
    scorer = IncrementalScorer(4)
    scorer.update(record, gt)
    assert scorer.table()["accuracy"] == pytest.approx((1 + 2 / 3) / 2)  # not (1 + 2/3 + 0) / 3


def _split(record: Prediction, columns: slice) -> Prediction:
    return Prediction(record.pred[:, columns], record.group_pred[:, :, columns], record.prefix_pred[:, :, columns],
                      record.classes, record.group_sizes, record.num_classes)


def test_several_images_accumulate_one_confusion_matrix():
    """Two images score as their pixels pooled (one image of both), not as the mean of per-image scores."""
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 3, size=(4, 12)).astype(np.uint8)
    gt[0, :3] = 255
    pred = np.where(rng.random((4, 12)) < 0.7, gt % 255, rng.integers(0, 3, size=(4, 12))).astype(np.uint8)
    pred[gt == 255] = 1
    group = np.stack([np.where(pred == 2, 0, pred), np.full_like(pred, 2)])
    whole = Prediction(pred, group, np.stack([group[0], pred]), np.array([0, 1, 2]), np.array([2, 1]), 4)
    pooled = IncrementalScorer(4)
    pooled.update(whole, gt)
    scorer, per_image = IncrementalScorer(4), []
    for columns in (slice(0, 5), slice(5, 12)):
        scorer.update(_split(whole, columns), gt[:, columns])
        single = IncrementalScorer(4)
        single.update(_split(whole, columns), gt[:, columns])
        per_image.append(single.table())
    table = scorer.table()
    assert table == pytest.approx(pooled.table())
    assert table["accuracy"] != pytest.approx(np.mean([t["accuracy"] for t in per_image]))
