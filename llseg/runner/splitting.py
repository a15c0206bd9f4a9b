"""Ianvs' ``fwt_splitting`` of the train index into R+1 (train, eval) file pairs (docs/ianvs-sedna.md §6.2).

Pair 0 is the first line alone, as both train and eval. Pairs 1..R are consecutive chunks of
``int(N/R)`` lines (the last chunk takes the remainder); each chunk gives its first
``int(n * ratio)`` lines to train and the rest to eval. No shuffling: file order matters.
"""
from __future__ import annotations

import os

from llseg.errors import DataError
from llseg.runner.dataset import write_lines


def fwt_chunks(lines: list[str], ratio: float, rounds: int) -> list[tuple[list[str], list[str]]]:
    """The R+1 (train lines, eval lines) pairs of ``fwt_splitting``."""
    step = int(len(lines) / rounds)
    if step < 1:
        raise DataError(f"fwt_splitting needs at least incremental_rounds={rounds} lines, got {len(lines)}")
    pairs = [(lines[:1], lines[:1])]
    for k in range(rounds):
        chunk = lines[k * step : (k + 1) * step if k < rounds - 1 else len(lines)]
        cut = int(len(chunk) * ratio)
        pairs.append((chunk[:cut], chunk[cut:]))
    return pairs


def fwt_splitting(lines: list[str], ratio: float, rounds: int, output_dir: str) -> list[tuple[str, str]]:
    """Write ``model_train-<k>.txt`` / ``model_eval-<k>.txt`` under ``output_dir``; return their paths.

    Raises:
        DataError: a chunk would leave train or eval empty (too few lines for R and the ratio).
    """
    files = []
    for k, (train, evaluation) in enumerate(fwt_chunks(lines, ratio, rounds)):
        if not train or not evaluation:
            raise DataError(
                f"fwt_splitting of {len(lines)} lines into {rounds} rounds with train_ratio {ratio} leaves "
                f"pair {k} with {len(train)} train / {len(evaluation)} eval lines; use more data or fewer rounds"
            )
        train_file = os.path.join(output_dir, f"model_train-{k}.txt")
        eval_file = os.path.join(output_dir, f"model_eval-{k}.txt")
        write_lines(train_file, train)
        write_lines(eval_file, evaluation)
        files.append((train_file, eval_file))
    return files
