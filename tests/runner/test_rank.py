"""Rank files: Ianvs' schema, stable column order, sorting, dedupe on rerun, selected rank."""
from __future__ import annotations

import csv
import os

import pytest

from llseg.errors import DataError
from llseg.runner.config import Rank
from llseg.runner.rank import RankRow, format_table, write_rank

METRICS = ["mIoU", "BWT", "MATRIX"]


def _rank(**overrides) -> Rank:
    values = dict(
        sort_by=(("mIoU", False), ("BWT", False)),
        paradigms=("lifelonglearning",),
        modules=("basemodel",),
        hyperparameters=("basemodel-lr",),
        metrics=("mIoU", "BWT"),
        save_mode="selected_and_all",
    )
    values.update(overrides)
    return Rank(**values)


def _row(alg: str, miou: float, bwt: float, lr: float = 0.1, time: str = "2024-01-01 00:00:00") -> RankRow:
    return RankRow(
        algorithm=alg,
        paradigm="lifelonglearning",
        metrics={"mIoU": miou, "BWT": bwt, "MATRIX": {"all": [[miou]]}},
        modules={"basemodel": "llseg_erfnet", "task_definition": "TaskDef"},
        hyperparameters={"basemodel-lr": lr, "basemodel-crop_size": [64, 128]},
        time=time,
        url=f"./workspace/b/{alg}/{lr}",
    )


def _read(path: str) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_schema_order_and_sort(tmp_path) -> None:
    rows = [_row("a", 0.5, -0.1), _row("b", 0.7, -0.3), _row("c", 0.5, 0.2)]
    header, selected, written = write_rank(str(tmp_path), _rank(), METRICS, rows)
    table = _read(str(tmp_path / "all_rank.csv"))
    assert table[0] == [
        "rank", "algorithm", "mIoU", "BWT", "MATRIX", "paradigm", "basemodel", "task_definition",
        "basemodel-lr", "basemodel-crop_size", "time", "url",
    ]
    assert [r[:4] for r in table[1:]] == [["1", "b", "0.7", "-0.3"], ["2", "c", "0.5", "0.2"], ["3", "a", "0.5", "-0.1"]]
    assert table[1][4] == str({"all": [[0.7]]}) and table[1][9] == "[64, 128]"
    assert header == ["rank", "algorithm", "mIoU", "BWT", "paradigm", "basemodel", "basemodel-lr", "time", "url"]
    assert [r["algorithm"] for r in selected] == ["b", "c", "a"]
    assert _read(str(tmp_path / "selected_rank.csv"))[0] == header
    assert written == [str(tmp_path / "all_rank.csv"), str(tmp_path / "selected_rank.csv")]


def test_rerun_replaces_rows_of_the_same_setup(tmp_path) -> None:
    write_rank(str(tmp_path), _rank(), METRICS, [_row("a", 0.5, 0.0), _row("b", 0.6, 0.0)])
    write_rank(str(tmp_path), _rank(), METRICS, [_row("a", 0.9, 0.0, time="2024-01-02 00:00:00")])
    table = _read(str(tmp_path / "all_rank.csv"))
    assert [(r[1], r[2], r[-2]) for r in table[1:]] == [("a", "0.9", "2024-01-02 00:00:00"), ("b", "0.6", "2024-01-01 00:00:00")]
    write_rank(str(tmp_path), _rank(), METRICS, [_row("a", 0.1, 0.0, lr=0.01)])  # new hyperparameters: a new row
    rows = _read(str(tmp_path / "all_rank.csv"))[1:]
    assert [(r[0], r[1], r[2], r[8]) for r in rows] == [
        ("1", "a", "0.9", "0.1"), ("2", "b", "0.6", "0.1"), ("3", "a", "0.1", "0.01")
    ]


def test_columns_of_older_rows_are_kept_after_current_ones(tmp_path) -> None:
    write_rank(str(tmp_path), _rank(), ["old", *METRICS], [_row("a", 0.5, 0.0)])
    write_rank(str(tmp_path), _rank(), METRICS, [_row("b", 0.6, 0.0)])
    table = _read(str(tmp_path / "all_rank.csv"))
    assert table[0][:6] == ["rank", "algorithm", "mIoU", "BWT", "MATRIX", "old"]
    assert [r[1] for r in table[1:]] == ["b", "a"]


def test_selected_drops_duplicates_ignoring_time_and_url(tmp_path) -> None:
    rows = [_row("a", 0.5, 0.0, lr=0.1), _row("a", 0.5, 0.0, lr=0.2)]
    _, selected, _ = write_rank(str(tmp_path), _rank(hyperparameters=()), METRICS, rows)
    assert len(selected) == 1 and selected[0]["rank"] == "1"


def test_missing_values_sort_last(tmp_path) -> None:
    row = RankRow("x", "lifelonglearning", {"mIoU": float("nan"), "BWT": 0.0}, {"basemodel": "m"}, {}, "t", "u")
    write_rank(str(tmp_path), _rank(), METRICS, [row, _row("a", 0.1, 0.0)])
    assert [r[1] for r in _read(str(tmp_path / "all_rank.csv"))[1:]] == ["a", "x"]


def test_ascending_sort(tmp_path) -> None:
    _, selected, _ = write_rank(str(tmp_path), _rank(sort_by=(("BWT", True),)), METRICS, [_row("a", 0, 0.3), _row("b", 0, -0.2)])
    assert [r["algorithm"] for r in selected] == ["b", "a"]


def test_selected_only_writes_one_file(tmp_path) -> None:
    _, _, written = write_rank(str(tmp_path), _rank(save_mode="selected_only"), METRICS, [_row("a", 0.5, 0.0)])
    assert written == [str(tmp_path / "selected_rank.csv")] and not os.path.exists(tmp_path / "all_rank.csv")


def test_foreign_all_rank_is_refused(tmp_path) -> None:
    (tmp_path / "all_rank.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="delete it"):
        write_rank(str(tmp_path), _rank(), METRICS, [_row("a", 0.5, 0.0)])


def test_format_table() -> None:
    text = format_table(["rank", "algorithm", "mIoU"], [{"rank": "1", "algorithm": "cil", "mIoU": "0.123456"}])
    assert text.splitlines() == [
        "+------+-----------+--------+",
        "| rank | algorithm | mIoU   |",
        "+------+-----------+--------+",
        "| 1    | cil       | 0.1235 |",
        "+------+-----------+--------+",
    ]
