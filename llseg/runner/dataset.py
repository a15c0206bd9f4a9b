"""Index files and data sources as Ianvs' lifelong paradigm sees them (docs/ianvs-sedna.md §2.1, §6.1).

* :func:`process_index` reproduces Ianvs' txt-index rewrite: if any line's first token is relative,
  every token of every line becomes ``abspath(join(dirname(index_file), token))``.
* :func:`load_data` parses lines like the paradigm's feature process: x = all tokens but the last,
  y = the last token, both as numpy string arrays (Sedna's ``TxtDataParse`` output).
* :func:`final_metric_y` is what ``TestCase.compute_metrics`` passes as ``y_true``: the **second** token.

Stricter than Ianvs: blank lines and lines with different token counts raise :class:`DataError`
naming the file and line (Ianvs turns the first into a bogus path, numpy 2 rejects the second).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from llseg.errors import DataError
from llseg.report.capture import sample_rows


@dataclass
class DataSource:
    """Sedna ``BaseDataSource`` shape: ``x`` (n, k-1) str, ``y`` (n,) str, ``data_type``."""

    x: np.ndarray
    y: np.ndarray
    data_type: str

    def __len__(self) -> int:
        return len(self.x)


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise DataError(f"cannot read index file {path}: {exc.strerror}") from None
    if not lines:
        raise DataError(f"index file {path} is empty; it needs one sample per line")
    width = None
    for number, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens:
            raise DataError(f"{path}: line {number} is blank; remove blank lines (Ianvs turns them into bogus paths)")
        if len(tokens) < 2:
            raise DataError(f"{path}: line {number} has one token; each line needs '<input> ... <label>'")
        if width is None:
            width = len(tokens)
        elif len(tokens) != width:
            raise DataError(
                f"{path}: line {number} has {len(tokens)} tokens but line 1 has {width}; "
                "all lines need the same token count (Sedna's TxtDataParse fails otherwise)"
            )
    return lines


def process_index(path: str) -> list[str]:
    """Lines of a txt index as Ianvs' ``process_dataset`` leaves them (rewritten if any is relative)."""
    lines = _read_lines(path)
    if all(os.path.isabs(line.split()[0]) for line in lines):
        return lines
    base = os.path.dirname(path)
    return [" ".join(os.path.abspath(os.path.join(base, token)) for token in line.split()) for line in lines]


def write_lines(path: str, lines: list[str]) -> None:
    """Write index lines, one per line (as Ianvs writes its split files)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{line}\n" for line in lines)


def load_data(path: str, data_type: str) -> DataSource:
    """Parse an index file like the lifelong paradigm: x = tokens[:-1], y = tokens[-1]."""
    rows = [line.split() for line in process_index(path)]
    return DataSource(
        x=np.array([tokens[:-1] for tokens in rows], dtype=str),
        y=np.array([tokens[-1] for tokens in rows], dtype=str),
        data_type=data_type,
    )


def final_metric_y(path: str) -> np.ndarray:
    """``y_true`` of Ianvs' final metric call: the second token of each (processed) line."""
    return np.array([line.split()[1] for line in process_index(path)], dtype=str)


def pick_samples(test_index: str, count: int) -> DataSource:
    """``count`` evenly spaced rows of the test index (the report's fixed images), parsed like the paradigm's data."""
    data = load_data(test_index, "test")
    rows = sample_rows(len(data), count)
    return DataSource(data.x[rows], data.y[rows], "test")
