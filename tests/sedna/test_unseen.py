"""The inference worker's unseen score: fraction of pixels whose max softmax is below a confidence."""
from __future__ import annotations

import numpy as np
import pytest

from llseg.sedna.unseen import pixel_confidence, score_image


def test_pixel_confidence_is_the_max_softmax() -> None:
    scores = np.zeros((3, 1, 2), np.float32)
    scores[:, 0, 0] = [np.log(6.0), np.log(3.0), np.log(1.0)]  # softmax 0.6, 0.3, 0.1
    conf = pixel_confidence(scores[None])
    np.testing.assert_allclose(conf, [[0.6, 1 / 3]], rtol=1e-6)  # second pixel: three equal scores


def test_score_counts_uncertain_pixels_and_decides_with_the_threshold() -> None:
    sure = np.zeros((2, 2, 5), np.float32)
    sure[0] = 10.0  # class 0 wins everywhere with probability ~1
    sure[:, 1, 3:] = 0.0  # 2 of 10 pixels tie: probability 0.5, not below 0.5
    sure[1, 1, 4] = 0.5  # 1 pixel: class 1 wins with 0.62
    result = score_image(sure, confidence=0.5, threshold=0.2)
    assert result.uncertain_fraction == 0.0 and not result.unseen
    tie = np.zeros((4, 2, 5), np.float32)  # every pixel: four equal scores, probability 0.25
    tie[0, 0, :3] = 5.0  # 3 of 10 pixels sure
    result = score_image(tie, confidence=0.5, threshold=0.2)
    assert result.uncertain_fraction == pytest.approx(0.7) and result.unseen
    assert not score_image(tie, confidence=0.5, threshold=0.7).unseen  # strictly greater than the threshold
    assert result.mean_confidence == pytest.approx((3 * pixel_confidence(tie)[0, 0] + 7 * 0.25) / 10)


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match="one image"):
        pixel_confidence(np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match="K×H×W"):
        pixel_confidence(np.zeros((4, 4)))
