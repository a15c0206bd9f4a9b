"""Per-domain scores: the same scores over the samples whose label lies in a folder named after the domain."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llseg.data.predictions import save_prediction
from llseg.ianvs import metrics
from llseg.ianvs.registry import GENERAL, lookup

GROUPS = [[0, 1], [2, 3], [4]]  # ISPRS 2-2-1 without background: old = 0-1, new = 2-4


@pytest.fixture
def two_domains(tmp_path: Path) -> tuple[list[str], list[str]]:
    """One 1 x 6 image per domain (labels in labels/full/<domain>/, 255 = ignore) and its prediction."""
    samples = {
        "potsdam": ([0, 0, 1, 2, 4, 255], [0, 1, 1, 2, 4, 0]),
        "vaihingen": ([2, 3, 3, 4, 0, 1], [2, 3, 2, 4, 0, 0]),
    }
    labels, preds = [], []
    for domain, (gt, pred) in samples.items():
        folder = tmp_path / "labels" / "full" / domain
        folder.mkdir(parents=True)
        Image.fromarray(np.array([gt], np.uint8)).save(folder / "p.png")
        p = np.array([pred], np.uint8)
        save_prediction(tmp_path / f"{domain}.npz", pred=p, group_pred=np.stack([p] * 3), prefix_pred=np.stack([p] * 3),
                        classes=[0, 1, 2, 3, 4], group_sizes=[len(g) for g in GROUPS], num_classes=5)
        labels.append(str(folder / "p.png"))
        preds.append(str(tmp_path / f"{domain}.npz"))
    return labels, preds


def test_per_domain_and_pooled_numbers(two_domains: tuple[list[str], list[str]]) -> None:
    labels, preds = two_domains
    assert [metrics.label_domain(p) for p in labels] == ["potsdam", "vaihingen"]
    # Potsdam: IoU 0 = 1/2, 1 = 1/2, 2 = 1, 3 = none (left out), 4 = 1
    potsdam = {"mIoU_old": 1 / 2, "mIoU_new": 1.0, "mIoU_all": 3 / 4, "hIoU": 2 / 3}
    # Vaihingen: IoU 0 = 1/2, 1 = 0, 2 = 1/2, 3 = 1/2, 4 = 1
    vaihingen = {"mIoU_old": 1 / 4, "mIoU_new": 2 / 3, "mIoU_all": 1 / 2, "hIoU": 4 / 11}
    # Both: one confusion matrix over both images: IoU 0 = 2/4, 1 = 1/3, 2 = 2/3, 3 = 1/2, 4 = 1
    pooled = {"mIoU_old": 5 / 12, "mIoU_new": 13 / 18, "mIoU_all": 3 / 5}
    for name, value in potsdam.items():
        assert lookup(GENERAL, f"{name}_potsdam")(np.array(labels), preds) == pytest.approx(value)
    for name, value in vaihingen.items():
        assert lookup(GENERAL, f"{name}_vaihingen")(np.array(labels), preds) == pytest.approx(value)
    for name, value in pooled.items():
        assert lookup(GENERAL, name)(np.array(labels), preds) == pytest.approx(value)
    # pooled "all" is not the mean of the two domains' "all" (3/4 and 1/2)
    assert metrics.METRICS["mIoU_all"](labels, preds) != pytest.approx((3 / 4 + 1 / 2) / 2)
    assert metrics.METRICS["mIoU_all_potsdam"].__name__ == "mIoU_all_potsdam"


def test_no_sample_of_the_domain_is_nan(two_domains: tuple[list[str], list[str]]) -> None:
    labels, preds = two_domains
    assert np.isnan(metrics.METRICS["mIoU_all_vaihingen"](labels[:1], preds[:1]))
    assert metrics.domain_scores(labels[:1], preds[:1], "vaihingen") is None
    with pytest.raises(ValueError, match="2 labels but 1 predictions"):
        metrics.METRICS["mIoU_old_potsdam"](labels, preds[:1])
