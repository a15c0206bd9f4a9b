import numpy as np
import pytest
from PIL import Image

from llseg.data.predictions import save_prediction
from llseg.errors import DataError
from llseg.ianvs import metrics
from llseg.ianvs.registry import GENERAL, lookup


@pytest.fixture
def scored(tmp_path):
    gt = np.array([[0, 0, 1, 2, 2, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 2, 0, 2]], np.uint8)
    group = np.array([[[0, 1, 1, 0, 0, 1]], [[2, 2, 2, 2, 2, 2]]], np.uint8)
    labels, preds = [], []
    for i in range(2):
        Image.fromarray(gt).save(tmp_path / f"gt{i}.png")
        save_prediction(tmp_path / f"p{i}.npz", pred=pred, group_pred=group, prefix_pred=np.stack([group[0], pred]),
                        classes=[0, 1, 2], group_sizes=[2, 1], num_classes=4)
        labels.append(str(tmp_path / f"gt{i}.png"))
        preds.append(str(tmp_path / f"p{i}.npz"))
    return np.array(labels), preds


def test_accuracy_is_the_registered_model_eval_metric(scored):
    y_true, y_pred = scored
    assert lookup(GENERAL, "accuracy") is metrics.accuracy and metrics.accuracy.__name__ == "accuracy"
    assert metrics.accuracy(y_true, np.array(y_pred)) == pytest.approx(4 / 9)


def test_accepts_the_default_mode_shape(scored):
    """Ianvs' default/HEM modes hand over a list of one-element arrays."""
    y_true, y_pred = scored
    assert metrics.accuracy(y_true, [np.array([p]) for p in y_pred]) == pytest.approx(4 / 9)


def test_klingner_names_are_registered(scored):
    y_true, y_pred = scored
    assert lookup(GENERAL, "mIoU_task1+2")(y_true, y_pred) == pytest.approx(4 / 9)
    assert lookup(GENERAL, "mIoU_task2")(y_true, y_pred) == pytest.approx(1.0)
    assert lookup(GENERAL, "hIoU")(y_true, y_pred) == pytest.approx(5 / 11)
    assert np.isnan(lookup(GENERAL, "mIoU_task3")(y_true, y_pred))  # the model has 2 groups


def test_mismatched_lengths_and_missing_records(scored, tmp_path):
    y_true, y_pred = scored
    with pytest.raises(ValueError, match="2 labels but 1 predictions"):
        metrics.accuracy(y_true, y_pred[:1])
    with pytest.raises(DataError, match="missing.npz"):
        metrics.accuracy(y_true[:1], [str(tmp_path / "missing.npz")])


def test_repeated_pairs_count_once(scored, tmp_path):
    """Prepared VOC indexes pad small steps with repeated lines; scores must not weight them."""
    y_true, y_pred = scored
    other = np.array([[0, 0, 0, 0, 0, 0]], np.uint8)
    save_prediction(tmp_path / "other.npz", pred=other, group_pred=np.stack([other, other]),
                    prefix_pred=np.stack([other, other]), classes=[0, 1, 2], group_sizes=[2, 1], num_classes=4)
    labels, preds = [y_true[0], y_true[1]], [y_pred[0], str(tmp_path / "other.npz")]
    once = metrics.scores(labels, preds)
    padded = metrics.scores([labels[0]] * 3 + [labels[1]], [preds[0]] * 3 + [preds[1]])
    assert padded == once
    # a repeated image with ANOTHER label or prediction is a different pair and counts
    assert metrics.scores(labels + [labels[0]], preds + [preds[1]]) != once
