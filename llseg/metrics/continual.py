"""Continual-learning metrics computed from a results matrix.

Layout (0-based in code): ``R`` is ``T×T`` with ``R[i, j]`` = performance (mIoU here) on task
``j`` after training step ``i``; rows are training time, columns are evaluated tasks. The
papers write the same matrix 1-based as ``R_{i,j}``, ``i, j = 1..T``.

NaN marks an undefined entry, e.g. ``R[i, j]`` with ``j > i`` in class-incremental segmentation
(the model has no output for classes it has not seen). Each metric reads only the entries its
formula needs; a NaN there raises ValueError naming the entry, so no metric silently returns NaN.
The only exception is the Ianvs-compatible functions, which copy Ianvs' own behaviour.

Conventions (GEM = Lopez-Paz & Ranzato, NeurIPS 2017; Chaudhry et al., ECCV 2018):

* ACC = mean of the last row.
* BWT and FWT use the paper's ``1/(T-1)``. GEM's released code averages over all ``T`` entries
  (the last BWT and first FWT term being 0), i.e. the paper value × ``(T-1)/T``; pass
  ``convention="gem_code"`` for that.
* Forgetting is Chaudhry's ``F_k`` (max over earlier steps minus current).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Literal

import numpy as np

Convention = Literal["paper", "gem_code"]
MatrixLike = np.ndarray | Sequence[Sequence[float]]
VectorLike = np.ndarray | Sequence[float]
IanvsEntry = Mapping[str, float] | float | None

_CONVENTIONS = ("paper", "gem_code")


def _check_matrix(R: MatrixLike) -> np.ndarray:
    try:
        R = np.asarray(R, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"R must be a T×T array of numbers (NaN for undefined entries): {err}") from None
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise ValueError(
            f"R must be square T×T with T >= 1 (rows = training steps, columns = tasks), got shape {R.shape}"
        )
    if np.isinf(R).any():
        raise ValueError("R contains inf; use finite scores and NaN for undefined entries")
    return R


def _require(R: np.ndarray, entries: list[tuple[int, int]], metric: str, hint: str = "") -> None:
    missing = [(i, j) for i, j in entries if np.isnan(R[i, j])]
    if missing:
        raise ValueError(
            f"{metric} needs R[i, j] for (i, j) in {missing[:10]}, but they are NaN (R[i, j] = score on task j "
            f"after step i, 0-based){'; ' + hint if hint else ''}"
        )


def _min_steps(R: np.ndarray, metric: str) -> int:
    T = R.shape[0]
    if T < 2:
        raise ValueError(f"{metric} needs at least 2 training steps (T >= 2), got T = {T}")
    return T


def _check_convention(convention: str) -> None:
    if convention not in _CONVENTIONS:
        raise ValueError(f"convention must be one of {_CONVENTIONS}, got {convention!r}")


def _divisor(T: int, convention: str) -> int:
    _check_convention(convention)
    return T - 1 if convention == "paper" else T


def gem_acc(R: MatrixLike) -> float:
    """Average accuracy after the last step: ``ACC = (1/T) Σ_{j=1..T} R_{T,j}`` (mean of the last row)."""
    R = _check_matrix(R)
    T = R.shape[0]
    _require(R, [(T - 1, j) for j in range(T)], "ACC")
    return float(R[-1].mean())


def gem_bwt(R: MatrixLike, *, convention: Convention = "paper") -> float:
    """Backward transfer: ``BWT = 1/(T-1) Σ_{j=1..T-1} (R_{T,j} − R_{j,j})`` (1-based).

    0-based: ``1/(T-1) Σ_{j<T-1} (R[T-1, j] − R[j, j])``. Negative means forgetting.
    ``convention="gem_code"`` divides by ``T`` instead, as GEM's released code does.
    """
    R = _check_matrix(R)
    T = _min_steps(R, "BWT")
    cols = range(T - 1)
    _require(R, [(T - 1, j) for j in cols] + [(j, j) for j in cols], "BWT")
    return float(sum(R[T - 1, j] - R[j, j] for j in cols) / _divisor(T, convention))


def gem_fwt(
    R: MatrixLike,
    baseline: VectorLike,
    *,
    convention: Convention = "paper",
) -> float:
    """Forward transfer: ``FWT = 1/(T-1) Σ_{j=2..T} (R_{j-1,j} − b_j)`` (1-based).

    0-based: ``1/(T-1) Σ_{j>=1} (R[j-1, j] − b[j])``. ``baseline`` has length T: ``b[j]`` is the
    score of the untrained (randomly initialised) model on task ``j``; ``b[0]`` is not used and
    may be NaN. ``convention="gem_code"`` divides by ``T`` instead.

    FWT is only defined when a task can be scored before it is trained, i.e. for
    domain-incremental segmentation (one label space). For class-incremental segmentation the
    model has no output for future classes, ``R[j-1, j]`` is NaN and this raises ValueError.
    """
    R = _check_matrix(R)
    T = _min_steps(R, "FWT")
    b = np.asarray(baseline, dtype=np.float64)
    if b.shape != (T,):
        raise ValueError(f"baseline must have one score per task, shape ({T},), got shape {b.shape}")
    if not np.isfinite(b[1:]).all():
        raise ValueError(f"baseline[1:] must be finite (b[0] is unused), got {b.tolist()}")
    _require(
        R,
        [(j - 1, j) for j in range(1, T)],
        "FWT",
        "FWT is undefined for class-incremental segmentation (no output for future classes); "
        "report it only for domain-incremental settings",
    )
    return float(sum(R[j - 1, j] - b[j] for j in range(1, T)) / _divisor(T, convention))


def forgetting_per_step(R: MatrixLike) -> list[float]:
    """Chaudhry's average forgetting ``F_k`` after each step ``k = 2..T`` (1-based).

    ``f^k_j = max_{l=1..k-1} R_{l,j} − R_{k,j}`` for ``j < k`` and ``F_k = 1/(k-1) Σ_{j<k} f^k_j``.
    0-based, element ``k-1`` of the list is ``F`` after step ``k = 1..T-1``. The lower triangle
    (``i >= j``) must be defined; NaN entries above the diagonal are skipped in the max, finite
    ones count as in the paper. Positive means forgetting.
    """
    R = _check_matrix(R)
    T = _min_steps(R, "forgetting")
    _require(R, [(i, j) for i in range(T) for j in range(i + 1)], "forgetting")
    return [float(np.mean([np.nanmax(R[:k, j]) - R[k, j] for j in range(k)])) for k in range(1, T)]


def forgetting(R: MatrixLike) -> float:
    """Average forgetting after the last step, ``F_T`` (0-based: mean over ``j < T-1`` of
    ``max_{l<T-1} R[l, j] − R[T-1, j]``). See :func:`forgetting_per_step`."""
    return forgetting_per_step(R)[-1]


def average_incremental(values: VectorLike) -> float:
    """Average incremental mIoU (iCaRL; PLOP's "avg"): mean over steps of the mIoU on all classes
    seen so far. ``values[i]`` is that mIoU after step ``i``."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values must be a non-empty 1-D list of per-step mIoU, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"values must all be finite (one mIoU per step), got {v.tolist()}")
    return float(v.mean())


def summarize(
    R: MatrixLike,
    *,
    baseline: VectorLike | None = None,
    convention: Convention = "paper",
) -> dict:
    """JSON-ready summary of a results matrix.

    Returns:
        ``acc``, ``bwt``, ``fwt``, ``forgetting`` (floats), ``forgetting_per_step`` (list),
        ``matrix`` and ``baseline`` (nested lists, NaN written as None) and ``convention``.
        ``bwt``, ``forgetting`` and ``forgetting_per_step`` are None when ``T = 1``; ``fwt`` is None
        when ``T = 1`` or no ``baseline`` is given (always the case for class-incremental runs).
    """
    R = _check_matrix(R)
    _check_convention(convention)
    multi = R.shape[0] >= 2
    fwt = gem_fwt(R, baseline, convention=convention) if baseline is not None and multi else None
    return {
        "acc": gem_acc(R),
        "bwt": gem_bwt(R, convention=convention) if multi else None,
        "fwt": fwt,
        "forgetting": forgetting(R) if multi else None,
        "forgetting_per_step": forgetting_per_step(R) if multi else None,
        "matrix": [[None if np.isnan(x) else float(x) for x in row] for row in R],
        "baseline": None
        if baseline is None
        else [None if np.isnan(x) else float(x) for x in np.asarray(baseline, dtype=np.float64)],
        "convention": convention,
    }


# ---- Ianvs' own formulas (core/testcasecontroller/metrics/metrics.py) -------------------------


def _ianvs_value(entry: IanvsEntry) -> float | None:
    """``A[i][j]``: a scores dict's "accuracy", a plain number, or None when absent."""
    if entry is None:
        return None
    if isinstance(entry, Mapping):
        return float(entry["accuracy"]) if "accuracy" in entry else None
    if isinstance(entry, (int, float, np.integer, np.floating)) and not isinstance(entry, bool):
        return float(entry)
    raise ValueError(f"an Ianvs matrix entry must be a scores dict, a number or None, got {entry!r}")


def _ianvs_table(rows: Sequence[Sequence[IanvsEntry]]) -> list[list[float | None]] | None:
    """``A`` as floats (None = missing), or None when Ianvs would reject the layout."""
    if len(rows) < 2:
        raise ValueError(
            f"an Ianvs matrix needs n+1 >= 2 rows (round 0 and at least one training round), got {len(rows)}"
        )
    n = len(rows) - 1
    if any(not isinstance(row, (list, tuple)) or len(row) != n for row in rows):
        return None
    return [[_ianvs_value(e) for e in row] for row in rows]


def _present_differences(pairs: Iterable[tuple[float | None, float | None]]) -> Iterator[float]:
    """``new - old`` for each ``(new, old)`` pair in order, skipping pairs with a missing (None) entry, as Ianvs does."""
    for new, old in pairs:
        if new is not None and old is not None:
            yield new - old


def ianvs_bwt(rows: Sequence[Sequence[IanvsEntry]]) -> float:
    """Ianvs' BWT: ``1/n² Σ_{i=0..n-1} Σ_{j=0..n-1} (A[i+1][j] − A[i][j])``.

    ``rows`` is Ianvs' ``MATRIX["all"]``: rows for training rounds ``0..n``, each with ``n`` entries
    (eval sets ``1..n`` at index ``0..n-1``); an entry is a scores dict with "accuracy", a plain
    number, or None. This averages consecutive changes on every eval set, future ones included,
    so it is not GEM's BWT. As in Ianvs: a pair is skipped when either entry lacks "accuracy" but
    the divisor stays ``n²``, and a row that is not a list of length ``n`` makes the result NaN.
    Fewer than 2 rows raises ValueError (Ianvs divides by zero there).
    """
    A = _ianvs_table(rows)
    if A is None:
        return float("nan")
    n = len(A) - 1
    total = sum(_present_differences((A[i + 1][j], A[i][j]) for i in range(n) for j in range(n)))
    return float(total / (n * n))


def ianvs_fwt(rows: Sequence[Sequence[IanvsEntry]]) -> float:
    """Ianvs' FWT: ``1/n Σ_{i=0..n-1} (A[i][i] − A[0][i])`` (the ``i = 0`` term is 0).

    ``A[i][i]`` is the model after round ``i`` on eval set ``i+1``, i.e. before that set's chunk
    is trained; row 0 acts as the baseline. Same layout, skipping and NaN rules as :func:`ianvs_bwt`.
    """
    A = _ianvs_table(rows)
    if A is None:
        return float("nan")
    n = len(A) - 1
    total = sum(_present_differences((A[i][i], A[0][i]) for i in range(n)))
    return float(total / n)


def ianvs_matrix(matrices: Mapping[str, Sequence[Sequence[IanvsEntry]]]) -> dict[str, list[list[float]]]:
    """Ianvs' MATRIX metric: ``{key: [[A[i+1][j] for j] for i in 0..n-1]}`` (row 0 dropped).

    As in Ianvs, entries lacking "accuracy" are left out, so rows can be shorter than ``n``.
    Where Ianvs crashes ("not enough values to unpack") on a malformed matrix, this raises
    ValueError naming the key.
    """
    out: dict[str, list[list[float]]] = {}
    for key, rows in matrices.items():
        A = _ianvs_table(rows)
        if A is None:
            raise ValueError(
                f"MATRIX[{key!r}] must have n+1 rows of n entries each, got row lengths "
                f"{[len(r) if isinstance(r, (list, tuple)) else type(r).__name__ for r in rows]}"
            )
        out[key] = [[a for a in row if a is not None] for row in A[1:]]
    return out
