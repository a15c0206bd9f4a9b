"""Index parsing like Ianvs' lifelong paradigm (§2.1, §6.1) and fwt_splitting (§6.2)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from llseg.errors import DataError
from llseg.runner.dataset import final_metric_y, load_data, process_index
from llseg.runner.splitting import fwt_chunks, fwt_splitting
from tests.runner.conftest import Repo


def _lines(n: int) -> list[str]:
    return [f"/abs/img{i:03d}.png /abs/full{i:03d}.png /abs/train{i:03d}.png" for i in range(n)]


def test_docs_worked_example(tmp_path) -> None:
    lines = _lines(120)
    files = fwt_splitting(lines, 0.8, 3, str(tmp_path / "dataset"))
    counts = [(len(open(t).read().splitlines()), len(open(e).read().splitlines())) for t, e in files]
    assert counts == [(1, 1), (32, 8), (32, 8), (32, 8)]
    assert [os.path.basename(t) for t, _ in files] == [f"model_train-{k}.txt" for k in range(4)]
    assert [os.path.basename(e) for _, e in files] == [f"model_eval-{k}.txt" for k in range(4)]
    assert open(files[0][0]).read() == open(files[0][1]).read() == lines[0] + "\n"
    assert open(files[2][0]).read().splitlines() == lines[40:72]
    assert open(files[2][1]).read().splitlines() == lines[72:80]


def test_last_chunk_takes_the_remainder() -> None:
    pairs = fwt_chunks(_lines(125), 0.8, 3)
    assert [(len(t), len(e)) for t, e in pairs] == [(1, 1), (32, 9), (32, 9), (34, 9)]  # step 41; last chunk 43
    assert pairs[3][1][-1] == _lines(125)[-1]


def test_too_few_lines_for_the_split(tmp_path) -> None:
    with pytest.raises(DataError, match="pair 1 with 0 train / 1 eval"):
        fwt_splitting(_lines(3), 0.5, 3, str(tmp_path))


def test_relative_tokens_are_rewritten_against_the_index_folder(repo: Repo) -> None:
    lines = process_index("data/train_index.txt")
    base = os.path.abspath("data")
    assert lines[0] == f"{base}/img/c1_00.png {base}/lab/c1_00_full.png {base}/lab/c1_00_train.png"


def test_rewrite_keeps_absolute_tokens_and_is_triggered_by_any_relative_first_token(repo: Repo) -> None:
    repo.write("d/index.txt", "/abs/a.png x.png\nb.png /abs/y.png\n")
    assert process_index("d/index.txt") == [
        "/abs/a.png " + os.path.abspath("d/x.png"), os.path.abspath("d/b.png") + " /abs/y.png"
    ]
    repo.write("d/abs.txt", "/abs/a.png x.png\n")
    assert process_index("d/abs.txt") == ["/abs/a.png x.png"]


def test_load_data_shapes_like_txtdataparse(repo: Repo) -> None:
    data = load_data("data/train_index.txt", "train")
    assert data.x.shape == (30, 2) and data.y.shape == (30,) and len(data) == 30
    assert data.x.dtype.kind == "U" and data.y.dtype.kind == "U" and data.data_type == "train"
    assert data.y[0].endswith("data/lab/c1_00_train.png") and data.x[0, 1].endswith("data/lab/c1_00_full.png")


def test_final_metric_y_is_the_second_token(repo: Repo) -> None:
    repo.write("d/i.txt", "a.png b.png c.png\n")
    assert final_metric_y("d/i.txt").tolist() == [os.path.abspath("d/b.png")]
    assert isinstance(final_metric_y("d/i.txt"), np.ndarray)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a b c\n\nd e f\n", "line 2 is blank"),
        ("a b c\nd e\n", "line 2 has 2 tokens but line 1 has 3"),
        ("a\n", "line 1 has one token"),
        ("", "is empty"),
    ],
)
def test_bad_index_files(repo: Repo, text: str, message: str) -> None:
    repo.write("d/bad.txt", text)
    with pytest.raises(DataError, match=message) as info:
        process_index("d/bad.txt")
    assert "d/bad.txt" in str(info.value)
