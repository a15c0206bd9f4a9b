"""Results-matrix metrics against hand-computed values and the Ianvs worked example."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from llseg.metrics import (
    average_incremental,
    forgetting,
    forgetting_per_step,
    gem_acc,
    gem_bwt,
    gem_fwt,
    ianvs_bwt,
    ianvs_fwt,
    ianvs_matrix,
    summarize,
)

NAN = float("nan")

# Domain-incremental, T = 3: every entry defined. R[i][j] = score on task j after step i.
R3 = [[0.5, 0.2, 0.1], [0.4, 0.6, 0.3], [0.3, 0.5, 0.7]]
B3 = [NAN, 0.1, 0.05]  # untrained model; b[0] unused

# Class-incremental, T = 3: NaN above the diagonal (no output for future classes).
R3_CIL = [[0.5, NAN, NAN], [0.7, 0.6, NAN], [0.3, 0.5, 0.7]]

# Ianvs' worked example (docs/ianvs-sedna.md §5.2): rounds 0..3, eval sets 1..3.
IANVS_ROWS = [[0.125, 0, 0.375], [0.75, 0.75, 0.625], [0.625, 0.75, 0.5], [0.75, 0.75, 0.625]]


def test_t2() -> None:
    R = [[0.8, NAN], [0.6, 0.7]]
    assert gem_acc(R) == pytest.approx(0.65)
    assert gem_bwt(R) == pytest.approx(0.6 - 0.8)
    assert gem_bwt(R, convention="gem_code") == pytest.approx((0.6 - 0.8) / 2)
    assert forgetting(R) == pytest.approx(0.2)
    assert forgetting_per_step(R) == pytest.approx([0.2])
    with pytest.raises(ValueError, match="undefined for class-incremental"):
        gem_fwt(R, [NAN, 0.0])
    # with a defined R[0, 1]: FWT = R[0, 1] - b[1]
    assert gem_fwt([[0.8, 0.3], [0.6, 0.7]], [NAN, 0.1]) == pytest.approx(0.2)


def test_t3_domain_incremental() -> None:
    assert gem_acc(R3) == pytest.approx((0.3 + 0.5 + 0.7) / 3)
    # BWT = ((0.3 - 0.5) + (0.5 - 0.6)) / 2
    assert gem_bwt(R3) == pytest.approx(-0.15)
    assert gem_bwt(R3, convention="gem_code") == pytest.approx(-0.3 / 3)
    # FWT = ((R[0,1] - b1) + (R[1,2] - b2)) / 2 = (0.1 + 0.25) / 2
    assert gem_fwt(R3, B3) == pytest.approx(0.175)
    assert gem_fwt(R3, B3, convention="gem_code") == pytest.approx(0.35 / 3)
    # F after step 1: 0.5 - 0.4; after step 2: ((0.5 - 0.3) + (0.6 - 0.5)) / 2
    assert forgetting_per_step(R3) == pytest.approx([0.1, 0.15])
    assert forgetting(R3) == pytest.approx(0.15)


def test_t3_class_incremental_max_is_not_the_diagonal() -> None:
    assert gem_acc(R3_CIL) == pytest.approx(0.5)
    assert gem_bwt(R3_CIL) == pytest.approx(((0.3 - 0.5) + (0.5 - 0.6)) / 2)
    # F_1 = 0.5 - 0.7 (improved); F_2 = ((max(0.5, 0.7) - 0.3) + (0.6 - 0.5)) / 2
    assert forgetting_per_step(R3_CIL) == pytest.approx([-0.2, 0.25])
    assert forgetting(R3_CIL) != pytest.approx(-gem_bwt(R3_CIL))
    with pytest.raises(ValueError, match=r"\(0, 1\), \(1, 2\)"):
        gem_fwt(R3_CIL, [NAN, 0.0, 0.0])


def test_forgetting_max_includes_finite_entries_before_training() -> None:
    # Chaudhry: max over all l < k, so a high pre-training score R[0, 1] counts.
    R = [[0.5, 0.9, 0.1], [0.4, 0.6, 0.3], [0.3, 0.5, 0.7]]
    assert forgetting(R) == pytest.approx(((0.5 - 0.3) + (0.9 - 0.5)) / 2)


def test_nan_in_required_entry_raises() -> None:
    R = [[0.5, NAN], [NAN, 0.7]]
    with pytest.raises(ValueError, match=r"ACC needs .*\(1, 0\)"):
        gem_acc(R)
    with pytest.raises(ValueError, match="BWT needs"):
        gem_bwt(R)
    with pytest.raises(ValueError, match="forgetting needs"):
        forgetting(R)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        gem_bwt([[0.5]])
    with pytest.raises(ValueError, match="square"):
        gem_acc([[0.5, 0.2]])
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        gem_fwt(R3, [0.1, 0.2])
    with pytest.raises(ValueError, match="convention"):
        gem_bwt(R3, convention="avalanche")


def test_average_incremental() -> None:
    assert average_incremental([0.7, 0.6, 0.5]) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="finite"):
        average_incremental([0.7, NAN])
    with pytest.raises(ValueError, match="non-empty"):
        average_incremental([])


def test_summarize_is_json_ready() -> None:
    s = summarize(R3_CIL)
    assert s["acc"] == pytest.approx(0.5)
    assert s["bwt"] == pytest.approx(-0.15)
    assert s["fwt"] is None and s["baseline"] is None
    assert s["forgetting"] == pytest.approx(0.25)
    assert s["forgetting_per_step"] == pytest.approx([-0.2, 0.25])
    assert s["matrix"][0] == [0.5, None, None]
    assert s["convention"] == "paper"
    json.dumps(s, allow_nan=False)

    d = summarize(R3, baseline=B3)
    assert d["fwt"] == pytest.approx(0.175)
    assert d["baseline"] == [None, 0.1, 0.05]
    json.dumps(d, allow_nan=False)

    one = summarize([[0.42]])
    assert one["acc"] == pytest.approx(0.42)
    assert one["bwt"] is None and one["forgetting"] is None and one["forgetting_per_step"] is None


def test_ianvs_worked_example() -> None:
    rows = [[{"accuracy": a} for a in row] for row in IANVS_ROWS]
    assert ianvs_bwt(rows) == pytest.approx(1.625 / 9)
    assert ianvs_fwt(rows) == pytest.approx(0.875 / 3)
    assert ianvs_bwt(IANVS_ROWS) == pytest.approx(1.625 / 9)  # plain floats
    assert ianvs_fwt(IANVS_ROWS) == pytest.approx(0.875 / 3)
    # Ianvs' BWT telescopes to (last row - row 0) / n², unlike GEM's BWT on the dropped-row matrix
    last, first = np.array(IANVS_ROWS[-1]), np.array(IANVS_ROWS[0])
    assert ianvs_bwt(rows) == pytest.approx((last - first).sum() / 9)
    assert gem_bwt(np.array(IANVS_ROWS[1:])) == pytest.approx(((0.75 - 0.75) + (0.75 - 0.75)) / 2)


def test_ianvs_missing_accuracy_keeps_divisor() -> None:
    rows = [[{"accuracy": a} for a in row] for row in IANVS_ROWS]
    rows[1][0] = {"f1": 0.3}  # A[1][0] missing: pairs (0,0) and (1,0) are skipped
    # 1.625 - (0.75 - 0.125) - (0.625 - 0.75) = 1.125, still divided by 9
    assert ianvs_bwt(rows) == pytest.approx(1.125 / 9)
    assert ianvs_fwt(rows) == pytest.approx(0.875 / 3)  # FWT does not read A[1][0]
    rows[1][1] = {}  # A[1][1] missing: FWT keeps only (0.5 - 0.375), divisor 3
    assert ianvs_fwt(rows) == pytest.approx(0.125 / 3)


def test_ianvs_invalid_layout_gives_nan() -> None:
    rows = [list(r) for r in IANVS_ROWS]
    rows[0] = rows[0][:2]  # task missing from round 0
    assert math.isnan(ianvs_bwt(rows)) and math.isnan(ianvs_fwt(rows))
    with pytest.raises(ValueError, match=r"MATRIX\['task_0'\]"):
        ianvs_matrix({"all": IANVS_ROWS, "task_0": rows})
    with pytest.raises(ValueError, match="at least one training round"):
        ianvs_bwt([[]])


def test_ianvs_matrix_drops_row_zero_and_missing_entries() -> None:
    rows = [[{"accuracy": a} for a in row] for row in IANVS_ROWS]
    rows[2][1] = {}
    out = ianvs_matrix({"all": IANVS_ROWS, "task_avg": rows})
    assert out["all"] == IANVS_ROWS[1:]
    assert out["task_avg"] == [[0.75, 0.75, 0.625], [0.625, 0.5], [0.75, 0.75, 0.625]]
