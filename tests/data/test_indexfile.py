from __future__ import annotations

import os
from pathlib import Path

import pytest

from llseg.data.indexfile import read_index, write_index
from llseg.errors import DataError


def _touch(*paths: Path) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_roundtrip_relative_tokens_and_exact_newlines(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    rows = [
        (data / "img/a.png", out / "labels/full/a.png", out / "labels/task1/a.png"),
        (data / "img/b.png", out / "labels/full/b.png", out / "labels/task1/b.png"),
    ]
    _touch(*(p for r in rows for p in r))
    write_index(out / "train_index.txt", rows)
    text = (out / "train_index.txt").read_text()
    assert text == (
        "../data/img/a.png labels/full/a.png labels/task1/a.png\n"
        "../data/img/b.png labels/full/b.png labels/task1/b.png\n"
    )
    assert read_index(out / "train_index.txt", columns=3, check_exists=True) == rows
    assert [p.name for p in out.iterdir()] == ["labels", "train_index.txt"]  # no temp file left


def test_ianvs_parsing_of_written_file(tmp_path: Path) -> None:
    """Mimic Ianvs: rewrite tokens if a first token is relative, then x = tokens[:-1], y = tokens[-1]
    (paradigm) and y = tokens[1] (final metric)."""
    rows = [(tmp_path / f"i{k}.png", tmp_path / f"f{k}.png", tmp_path / f"t{k}.png") for k in range(3)]
    _touch(*(p for r in rows for p in r))
    index = tmp_path / "sub" / "index.txt"
    write_index(index, rows)
    with open(index) as f:
        lines = f.readlines()
    assert len(lines) == 3 and all(line.strip() for line in lines)
    assert any(not os.path.isabs(line.split(" ")[0]) for line in lines)  # Ianvs rewrites this file
    rewritten = [[os.path.abspath(os.path.join(os.path.dirname(index), t)) for t in line.strip().split(" ")] for line in lines]
    for (image, full, task), tokens in zip(rows, rewritten):
        assert tokens[:-1] == [str(image), str(full)] and tokens[-1] == str(task) and tokens[1] == str(full)


def test_absolute_tokens_are_kept_on_read(tmp_path: Path) -> None:
    (tmp_path / "i.txt").write_text(f"{tmp_path}/a.png rel/b.png\n")
    assert read_index(tmp_path / "i.txt") == [(tmp_path / "a.png", tmp_path / "rel/b.png")]


def test_write_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"path '.*my file\.png' is empty or contains whitespace"):
        write_index(tmp_path / "i.txt", [(tmp_path / "my file.png", tmp_path / "b.png")])
    with pytest.raises(DataError, match=r"i\.txt: row 2 has 2 paths, row 1 has 3"):
        write_index(tmp_path / "i.txt", [("a", "b", "c"), ("a", "b")])
    with pytest.raises(DataError, match="no samples"):
        write_index(tmp_path / "i.txt", [])
    assert not (tmp_path / "i.txt").exists()


def test_read_errors_name_file_and_line(tmp_path: Path) -> None:
    index = tmp_path / "i.txt"
    index.write_text("a b c\na b\n")
    with pytest.raises(DataError, match=r"i\.txt:2: 2 paths, expected 3"):
        read_index(index)
    index.write_text("a b c\n\na b c\n")
    with pytest.raises(DataError, match=r"i\.txt:2: blank line"):
        read_index(index)
    index.write_text("a b c\n")
    with pytest.raises(DataError, match=r"i\.txt:1: 3 paths, expected 2"):
        read_index(index, columns=2)
    with pytest.raises(DataError, match=r"i\.txt:1: a -> .*a does not exist"):
        read_index(index, check_exists=True)
    index.write_text("")
    with pytest.raises(DataError, match="is empty"):
        read_index(index)
    with pytest.raises(DataError, match=r"missing\.txt not found"):
        read_index(tmp_path / "missing.txt")
