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
