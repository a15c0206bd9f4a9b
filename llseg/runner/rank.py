"""Leaderboards in Ianvs' rank format (docs/ianvs-sedna.md §7): ``all_rank.csv`` and ``selected_rank.csv``.

Columns: ``rank``, ``algorithm``, the metrics, ``paradigm``, one column per module type (the
module name), one ``<module type>-<hp name>`` column per hyperparameter, ``time``, ``url``.
Unlike Ianvs, the column order is stable (metrics in testenv order, then metric columns only
older rows have), and a rerun replaces the rows of the same algorithm, modules and
hyperparameters instead of piling up duplicates.
"""
from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llseg.atomic import atomic_write
from llseg.errors import DataError
from llseg.runner.config import Rank

ALL_RANK = "all_rank.csv"
SELECTED_RANK = "selected_rank.csv"
_FIXED = ("rank", "algorithm", "paradigm", "time", "url")


@dataclass(frozen=True)
class RankRow:
    """One finished test case, as rank columns."""

    algorithm: str
    paradigm: str
    metrics: dict[str, Any]
    modules: dict[str, str]
    hyperparameters: dict[str, Any]
    time: str
    url: str

    def cells(self) -> dict[str, str]:
        return {
            "algorithm": self.algorithm,
            **{k: str(v) for k, v in self.metrics.items()},
            "paradigm": self.paradigm,
            **self.modules,
            **{k: str(v) for k, v in self.hyperparameters.items()},
            "time": self.time,
            "url": self.url,
        }


@dataclass(frozen=True)
class _Layout:
    metrics: list[str]
    modules: list[str]
    hyperparameters: list[str]

    def header(self) -> list[str]:
        return ["rank", "algorithm", *self.metrics, "paradigm", *self.modules, *self.hyperparameters, "time", "url"]

    def identity(self, row: dict[str, str]) -> frozenset[tuple[str, str]]:
        """What makes two rows the same test setup: everything but metrics, time and url."""
        keys = ("algorithm", "paradigm", *self.modules, *self.hyperparameters)
        return frozenset((k, row[k]) for k in keys if row.get(k, ""))


def _merge(first: Sequence[str], second: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*first, *second]))


def _read_all(path: str) -> tuple[_Layout, list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    if any(col not in header for col in _FIXED) or header.index("algorithm") > header.index("paradigm"):
        raise DataError(f"{path} is not a rank file with columns {', '.join(_FIXED)}; delete it to start a new leaderboard")
    between = header[header.index("paradigm") + 1 : header.index("time")]
    layout = _Layout(
        metrics=header[header.index("algorithm") + 1 : header.index("paradigm")],
        modules=[c for c in between if "-" not in c],
        hyperparameters=[c for c in between if "-" in c],
    )
    return layout, rows


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def sort_rows(rows: list[dict[str, str]], sort_by: Sequence[tuple[str, bool]]) -> list[dict[str, str]]:
    """Stable multi-key sort; missing or non-numeric values go last, as in pandas."""
    rows = list(rows)
    for metric, ascending in reversed(sort_by):
        def key(row: dict[str, str], metric: str = metric, ascending: bool = ascending) -> tuple[int, float]:
            value = _number(row.get(metric, ""))
            return (1, 0.0) if value is None else (0, value if ascending else -value)

        rows.sort(key=key)
    return rows


def format_table(header: Sequence[str], rows: Sequence[dict[str, str]]) -> str:
    """A plain-text table (prettytable style); numbers shown with 4 decimals."""
    def show(text: str) -> str:
        value = _number(text)
        return f"{value:.4f}" if value is not None and "." in text else text

    cells = [[show(row.get(col, "")) for col in header] for row in rows]
    widths = [max([len(col), *(len(r[i]) for r in cells)]) for i, col in enumerate(header)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"

    return "\n".join([rule, line(header), rule, *(line(r) for r in cells), rule])


def write_rank(
    rank_dir: str, rank: Rank, metric_names: Sequence[str], new: Sequence[RankRow]
) -> tuple[list[str], list[dict[str, str]], list[str]]:
    """Merge ``new`` into the leaderboard under ``rank_dir`` and write the CSV files.

    Returns:
        (selected header, selected rows, paths written).
    """
    os.makedirs(rank_dir, exist_ok=True)
    all_path = os.path.join(rank_dir, ALL_RANK)
    layout = _Layout(
        metrics=list(metric_names),
        modules=_merge([], [t for r in new for t in r.modules]),
        hyperparameters=_merge([], [h for r in new for h in r.hyperparameters]),
    )
    old_rows: list[dict[str, str]] = []
    if os.path.isfile(all_path):
        old, old_rows = _read_all(all_path)
        layout = _Layout(
            _merge(layout.metrics, old.metrics),
            _merge(layout.modules, old.modules),
            _merge(layout.hyperparameters, old.hyperparameters),
        )
    new_rows = [r.cells() for r in new]
    replaced = {layout.identity(r) for r in new_rows}
    rows = sort_rows([r for r in old_rows if layout.identity(r) not in replaced] + new_rows, rank.sort_by)
    for position, row in enumerate(rows, 1):
        row["rank"] = str(position)

    selected_header = ["rank", "algorithm", *rank.metrics, "paradigm", *rank.modules, *rank.hyperparameters, "time", "url"]
    selected, seen = [], set()
    for row in rows:
        if row.get("paradigm") not in rank.paradigms:
            continue
        key = tuple(row.get(col, "") for col in selected_header[1:-2])
        if key not in seen:
            seen.add(key)
            selected.append(row)

    written = []
    if rank.save_mode == "selected_and_all":
        _write_csv(all_path, layout.header(), rows)
        written.append(all_path)
    selected_path = os.path.join(rank_dir, SELECTED_RANK)
    _write_csv(selected_path, selected_header, selected)
    written.append(selected_path)
    return selected_header, selected, written


def _write_csv(path: str, header: Sequence[str], rows: Sequence[dict[str, str]]) -> None:
    with atomic_write(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([row.get(col, "") for col in header] for row in rows)
