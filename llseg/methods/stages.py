"""Run the stages of a prepared split outside Ianvs (``llseg train``) and score checkpoints (``llseg eval``).

These are the counterparts of Klingner et al.'s train_erfnet_static / train_erfnet_incremental /
evaluate_erfnet scripts: one checkpoint per stage, each scored on the test index.
"""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from llseg import distributed
from llseg.data.indexfile import read_index
from llseg.data.manifest import Manifest
from llseg.errors import ConfigError
from llseg.methods.config import TrainConfig, resolve_config
from llseg.methods.learner import ContinualLearner
from llseg.metrics.incremental import format_table, table_columns

log = logging.getLogger("llseg.stages")


def task_train_rows(prepared: Path) -> list[list[tuple[str, str, str]]]:
    """Per task of ``prepared``, the (image, full label, train label) lines Ianvs trains it on: the
    first ``int(chunk_size · train_ratio)`` lines of its chunk (the eval part is never trained on)."""
    manifest = Manifest.load(prepared)
    rows = read_index(prepared / "train_index.txt", columns=3, check_exists=True)
    n, n_train = manifest.chunk_size, int(manifest.chunk_size * manifest.train_ratio)
    return [[(str(r[0]), str(r[1]), str(r[2])) for r in rows[k * n : k * n + n_train]] for k in range(len(manifest.tasks))]


def train_config(prepared: Path, hyperparameters: dict[str, Any]) -> TrainConfig:
    """The resolved config of ``llseg train`` on ``prepared``: ``dataset`` and ``split`` default to
    what the prepared manifest records (setting another dataset is an error)."""
    manifest = Manifest.load(prepared)
    hps = dict(hyperparameters)
    if hps.setdefault("dataset", manifest.dataset) != manifest.dataset:
        raise ConfigError(f"llseg train: dataset {hps['dataset']!r} contradicts {prepared}, prepared as "
                          f"{manifest.dataset!r}; drop the dataset key")
    hps.setdefault("split", manifest.spec)
    return resolve_config(hps, source="llseg train")


def train_stages(prepared: Path, out: Path, hyperparameters: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Train every task of ``prepared`` (an ``llseg prepare`` folder) in order, each on the train
    part of its chunk (the first ``int(chunk_size · train_ratio)`` lines, as Ianvs cuts them).

    Writes ``<out>/stage<k>.pt`` after each stage and ``<out>/results.json`` / ``results.md`` with
    the test-index scores after each stage (``joint`` retrains on all tasks' data so far at every
    stage, so its last stage is the all-classes baseline). Returns the score table per stage name.
    Under ``torchrun`` every rank trains and scores its share; only rank 0 writes.
    """
    config = train_config(prepared, hyperparameters)
    chunks = task_train_rows(prepared)
    test = read_index(prepared / "test_index.txt", columns=3, check_exists=True)
    out.mkdir(parents=True, exist_ok=True)
    learner = ContinualLearner(config)
    results: dict[str, dict[str, float | None]] = {}
    for k, chunk in enumerate(chunks, start=1):
        learner.learn(*(list(column) for column in zip(*chunk)))
        learner.save(out / f"stage{k}.pt")
        results[f"stage {k}"] = learner.evaluate([str(r[0]) for r in test], [str(r[1]) for r in test])
        log.info("stage %d scores on %s:\n%s", k, prepared / "test_index.txt",
                 format_table({f"stage {k}": results[f"stage {k}"]}))
    if distributed.is_main():
        (out / "results.json").write_text(json.dumps({"hyperparameters": config.to_dict(), "scores": results}, indent=2) + "\n")
        (out / "results.md").write_text(format_table(results) + "\n")
    return results


def evaluate_checkpoint(
    checkpoint: Path, index: Path, *, csv_path: Path | None = None, device: str | None = None
) -> dict[str, float | None]:
    """Scores of a checkpoint on an index file's images against their full labels (2nd token)."""
    learner = ContinualLearner.from_checkpoint(checkpoint, device=device)
    rows = read_index(index, check_exists=True)
    if rows and len(rows[0]) < 2:
        raise ValueError(f"{index}: lines need at least '<image> <label>'")
    table = learner.evaluate([str(r[0]) for r in rows], [str(r[1]) for r in rows])
    if csv_path is not None:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "w", newline="") as handle:
            writer = csv.writer(handle)
            columns = table_columns(table)
            writer.writerow(["checkpoint", *columns])
            writer.writerow([str(checkpoint), *("" if table[c] is None else f"{table[c]:.6f}" for c in columns)])
    return table
