"""The padded one-task-per-chunk scheme: side assignment and chunk length."""
from __future__ import annotations

import numpy as np
import pytest

from llseg.data.chunks import assign_sides, padded_chunk_size
from llseg.errors import ConfigError


def test_assign_sides_fix_up_and_impossible_case() -> None:
    rng = np.random.default_rng(0)
    checked = 0
    for seed in range(200):  # random overlapping tasks of 2+ images each, most too small for 80/20 by chance
        member = rng.random((12, 4)) < 0.3
        if (member.sum(axis=0) < 2).any():
            continue
        is_train = assign_sides(member, 0.8, np.random.default_rng(seed))
        assert all(set(is_train[member[:, t]].tolist()) == {True, False} for t in range(4)), (member, is_train)
        assert not is_train[~member.any(axis=1)].any()
        checked += 1
    assert checked > 100
    # three images, three tasks each holding two of them: no two-sided assignment exists
    triangle = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=bool)
    with pytest.raises(ConfigError, match=r"task \d: all 2 of its images are on the (train|eval) side, and no image"):
        assign_sides(triangle, 0.9, np.random.default_rng(0))


def test_padded_chunk_size() -> None:
    assert padded_chunk_size([3, 1], [1, 1], 0.8) == 4
    assert padded_chunk_size([3], [2], 0.8) == 6  # 5 lines would leave 1 eval line for 2 eval images
    assert padded_chunk_size([12, 1], [3, 1], 0.8) == 15  # int(15 * 0.8) == 12 despite 12 / 0.8 > 15 in floats
    # VOC 15-1 overlapped with 80% on the train side: the largest task sets the length
    assert padded_chunk_size([7654, 390, 239, 393, 400, 438], [1914, 97, 60, 98, 100, 110], 0.8) == 9568
