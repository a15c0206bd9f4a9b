"""Ianvs txt index files: one sample per line, whitespace-separated path tokens.

llseg writes ``<image> <full_label> <train_label>`` (test and validation files repeat the full
label: ``<image> <full_label> <full_label>``). Why this shape:

* Ianvs' lifelong paradigm takes x = all tokens but the last and y = the last token (the
  step's training label), while its final metric takes y = the *second* token (full labels).
* Tokens are paths relative to the index file's folder, with forward slashes. When a first
  token is relative, Ianvs rewrites *every* token to ``abspath(join(dirname(index), token))``,
  which yields the right absolute paths; there is no numeric token for it to mangle.
* Single spaces, the same token count on every line (numpy 2 rejects ragged rows), no blank
  line (Ianvs reads one as a path) and exactly one ``\\n`` after the last line.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from llseg.data.imageio import PathLike
from llseg.errors import DataError

INDEX_COLUMNS = ("image", "full_label", "train_label")


def _token(path: PathLike, base: str, index: Path) -> str:
    text = os.fspath(path)
    if not text or any(ch.isspace() for ch in text):
        raise DataError(f"{index}: path {text!r} is empty or contains whitespace, which Ianvs splits on; rename it")
    try:
        rel = os.path.relpath(os.path.abspath(text), base)
    except ValueError:  # another drive on Windows: only an absolute path can reach it
        rel = os.path.abspath(text)
    return rel.replace(os.sep, "/")


def write_index(path: PathLike, rows: Sequence[Sequence[PathLike]]) -> None:
    """Write ``rows`` of paths (absolute or relative to the CWD) as an index file at ``path``.

    Tokens are written relative to ``path``'s folder; the file is replaced atomically.

    Raises:
        DataError: no rows, rows with different lengths, or a path containing whitespace.
    """
    index = Path(path)
    if not rows:
        raise DataError(f"{index}: no samples to write; check the dataset split that feeds it")
    width = len(rows[0])
    base = os.path.abspath(index.parent)
    lines = []
    for n, row in enumerate(rows, start=1):
        if len(row) != width or width == 0:
            raise DataError(f"{index}: row {n} has {len(row)} paths, row 1 has {width}; all rows need the same count")
        lines.append(" ".join(_token(p, base, index) for p in row))
    index.parent.mkdir(parents=True, exist_ok=True)
    tmp = index.with_name(f".{index.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, index)


def read_index(path: PathLike, *, columns: int | None = None, check_exists: bool = False) -> list[tuple[Path, ...]]:
    """Read an index file; relative tokens are resolved against its folder as Ianvs does.

    Args:
        columns: expected tokens per line (default: whatever the first line has).
        check_exists: also require every referenced file to exist.

    Raises:
        DataError: missing file, blank line, wrong token count or missing referenced file,
            naming ``file:line``.
    """
    index = Path(path)
    if not index.is_file():
        raise DataError(f"index file {index} not found; run `llseg prepare` to create it")
    base = os.path.dirname(os.path.abspath(index))
    rows: list[tuple[Path, ...]] = []
    with open(index, encoding="utf-8") as f:
        text = f.read()
    if not text.strip():
        raise DataError(f"index file {index} is empty; re-run `llseg prepare`")
    for n, line in enumerate(text.removesuffix("\n").split("\n"), start=1):
        tokens = line.split()
        if not tokens:
            raise DataError(f"{index}:{n}: blank line; Ianvs would read it as a path, delete it")
        expected = columns if columns is not None else len(rows[0]) if rows else len(tokens)
        if len(tokens) != expected:
            raise DataError(f"{index}:{n}: {len(tokens)} paths, expected {expected} ({' '.join(INDEX_COLUMNS)})")
        row = tuple(Path(os.path.abspath(os.path.join(base, t))) for t in tokens)
        if check_exists:
            for t, p in zip(tokens, row):
                if not p.is_file():
                    raise DataError(f"{index}:{n}: {t} -> {p} does not exist; re-run `llseg prepare` or fix the path")
        rows.append(row)
    return rows
