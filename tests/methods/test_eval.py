"""``llseg eval``: the per-task table on stdout and as CSV, equal to ContinualLearner.evaluate."""
from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest

from llseg.cli import main
from llseg.methods.learner import ContinualLearner
from llseg.metrics.incremental import format_table
from tests.conftest import Rows
from tests.helpers import two_stage_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def test_eval_prints_the_table_and_writes_csv(
    make_rows: Callable[..., Rows], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint, _ = two_stage_checkpoint(make_rows, tmp_path / "stage2.pt")
    test = make_rows("t", 2, [13, 10, 0], keep={0, 10, 13})
    index = tmp_path / "test_index.txt"
    index.write_text("".join(f"{Path(img).relative_to(tmp_path)} {Path(full).relative_to(tmp_path)} "
                             f"{Path(full).relative_to(tmp_path)}\n" for img, full in test.x))
    out = tmp_path / "tables" / "eval.csv"
    assert main(["eval", "--checkpoint", str(checkpoint), "--index", str(index), "--csv", str(out), "--device", "cpu"]) == 0

    learner = ContinualLearner.from_checkpoint(checkpoint, device="cpu")
    expected = learner.evaluate(list(test.x[:, 0]), list(test.x[:, 1]))
    assert capsys.readouterr().out.strip() == format_table({"stage2.pt": expected})
    with open(out, newline="") as handle:
        header, row = list(csv.reader(handle))
    assert header == ["checkpoint", "mIoU_task1", "mIoU_task2", "mIoU_task1+2", "accuracy", "mIoU_old", "mIoU_new",
                      "mIoU_all", "hIoU"]
    assert row[0] == str(checkpoint)
    assert [float(v) for v in row[1:]] == pytest.approx([expected[c] for c in header[1:]], abs=5e-7)


def test_eval_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = tmp_path / "index.txt"
    index.write_text("a.png a_full.png\n")
    assert main(["eval", "--checkpoint", str(tmp_path / "none.pt"), "--index", str(index)]) == 2
    assert f"checkpoint {tmp_path / 'none.pt'} does not exist" in capsys.readouterr().err
