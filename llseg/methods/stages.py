"""Run the stages of a prepared split outside Ianvs (``llseg train``) and score checkpoints (``llseg eval``).

These are the counterparts of Klingner et al.'s train_erfnet_static / train_erfnet_incremental /
evaluate_erfnet scripts: one checkpoint per stage, each scored on the test index.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from llseg import distributed
from llseg.atomic import atomic_write, check_output_dir, check_output_file, remove_leftovers, write_text
from llseg.data.indexfile import read_index
from llseg.data.manifest import Manifest
from llseg.errors import ConfigError
from llseg.methods.config import TrainConfig, resolve_config
from llseg.methods.learner import RUNTIME_KEYS, ContinualLearner
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
    what the prepared manifest records (setting another dataset is an error); with ``val_every``,
    ``val_index`` defaults to the prepared ``val_index.txt``."""
    manifest = Manifest.load(prepared)
    hps = dict(hyperparameters)
    if hps.setdefault("dataset", manifest.dataset) != manifest.dataset:
        raise ConfigError(f"llseg train: dataset {hps['dataset']!r} contradicts {prepared}, prepared as "
                          f"{manifest.dataset!r}; drop the dataset key")
    hps.setdefault("split", manifest.spec)
    if hps.get("val_every") and not hps.get("val_index"):  # checkpoint choice on the prepared validation images
        if not (prepared / "val_index.txt").is_file():
            raise ConfigError(f"llseg train: val_every needs validation images, but {prepared} has no val_index.txt "
                              "(its split keeps no eval-side images); set val_index or drop val_every")
        hps["val_index"] = str(prepared / "val_index.txt")
    return resolve_config(hps, source="llseg train")


def run_fingerprint(config: TrainConfig, prepared: Path) -> str:
    """Hash of the resolved config (without runtime keys) and the prepared index files and manifest
    (with ``val_every``, also the validation index)."""
    digest = hashlib.sha256(json.dumps({k: v for k, v in config.to_dict().items() if k not in RUNTIME_KEYS},
                                       sort_keys=True, default=str).encode())
    files = [prepared / name for name in ("train_index.txt", "test_index.txt", "manifest.json")]
    if config.val_every > 0 and config.val_index:  # the checkpoint choice depends on the validation images
        files.append(Path(config.val_index))
    for path in files:
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()[:32]


def _earlier_run(out: Path) -> list[str]:
    """Files of an earlier ``llseg train`` in ``out``."""
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.iterdir() if p.name.startswith("stage") and p.suffix == ".pt"
                  or p.name in ("results.json", "results.md"))


def train_stages(prepared: Path, out: Path, hyperparameters: dict[str, Any],
                 *, resume: bool = False) -> dict[str, dict[str, float | None]]:
    """Train every task of ``prepared`` (an ``llseg prepare`` folder) in order, each on the train
    part of its chunk (the first ``int(chunk_size · train_ratio)`` lines, as Ianvs cuts them).

    Writes ``<out>/stage<k>.pt`` after each stage and ``<out>/results.json`` / ``results.md`` with
    the test-index scores of the stages so far (``joint`` retrains on all tasks' data so far at every
    stage, so its last stage is the all-classes baseline); during stage k, ``stage<k>.resume.pt``
    every ``checkpoint_every`` epochs. ``resume`` continues an interrupted run in ``out`` (finished
    stages are kept, the interrupted one continues after its last saved epoch); without it, ``out``
    must hold no earlier run. Returns the score table per stage name.
    Under ``torchrun`` every rank trains and scores its share; only rank 0 writes.
    """
    config = train_config(prepared, hyperparameters)
    chunks = task_train_rows(prepared)
    test = read_index(prepared / "test_index.txt", columns=3, check_exists=True)
    check_output_dir(out, "llseg train --out")
    fingerprint = run_fingerprint(config, prepared)
    results: dict[str, dict[str, float | None]] = {}
    earlier = _earlier_run(out)
    if earlier and not resume:
        raise ConfigError(f"llseg train: --out {out} holds an earlier run ({', '.join(earlier)}); continue it with "
                          "--resume, or choose an empty folder")
    if resume and (out / "results.json").is_file():
        saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
        if saved.get("fingerprint") != fingerprint:
            raise ConfigError(f"llseg train --resume: {out} was trained with other hyperparameters or another prepared "
                              f"folder than {prepared}; rerun the same command, or train into an empty folder")
        results = saved["scores"]
    out.mkdir(parents=True, exist_ok=True)
    done = len(results)
    if done:
        learner = ContinualLearner.from_checkpoint(out / f"stage{done}.pt", device=config.device)
        log.info("resuming %s: stages 1..%d are finished", out, done)
    else:
        learner = ContinualLearner(config)
    for k, chunk in enumerate(chunks[done:], start=done + 1):
        partial = out / f"stage{k}.resume.pt"
        learner.learn(*(list(column) for column in zip(*chunk)), checkpoints=partial)
        learner.save(out / f"stage{k}.pt")
        results[f"stage {k}"] = learner.evaluate([str(r[0]) for r in test], [str(r[1]) for r in test])
        log.info("stage %d scores on %s:\n%s", k, prepared / "test_index.txt",
                 format_table({f"stage {k}": results[f"stage {k}"]}))
        if distributed.is_main():
            write_text(out / "results.md", format_table(results) + "\n")
            write_text(out / "results.json", json.dumps({"hyperparameters": config.to_dict(), "fingerprint": fingerprint,
                                                         "scores": results}, indent=2) + "\n")
            for path in (partial, out / f"stage{k}.pt"):
                remove_leftovers(path)
            partial.unlink(missing_ok=True)
    return results


def evaluate_checkpoint(
    checkpoint: Path, index: Path, *, csv_path: Path | None = None, device: str | None = None
) -> dict[str, float | None]:
    """Scores of a checkpoint on an index file's images against their full labels (2nd token)."""
    if csv_path is not None:
        check_output_file(csv_path, "--csv")
    learner = ContinualLearner.from_checkpoint(checkpoint, device=device)
    rows = read_index(index, check_exists=True)
    if rows and len(rows[0]) < 2:
        raise ValueError(f"{index}: lines need at least '<image> <label>'")
    table = learner.evaluate([str(r[0]) for r in rows], [str(r[1]) for r in rows])
    if csv_path is not None:
        with atomic_write(csv_path, "w", newline="") as handle:
            writer = csv.writer(handle)
            columns = table_columns(table)
            writer.writerow(["checkpoint", *columns])
            writer.writerow([str(checkpoint), *("" if table[c] is None else f"{table[c]:.6f}" for c in columns)])
    return table
