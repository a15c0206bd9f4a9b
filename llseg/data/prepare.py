"""``llseg prepare``: turn a Cityscapes-layout dataset into an incremental split for Ianvs.

Output folder layout (all paths in index files are relative to ``<out>``)::

    labels/full/<split>/<city>/<stem>.png    train-id maps, all 19 classes (uint8, 255 = ignore)
    labels/task<k>/train/<city>/<stem>.png   task k's training labels (its classes, rest 255)
    train_index.txt   <image> <full_label> <task_label>; task 1, 2, 3 in equal consecutive chunks
    val_index.txt     <image> <full_label> <full_label>; held-out city (erfurt), checkpoint choice
    test_index.txt    <image> <full_label> <full_label>; the Cityscapes val split
    manifest.json     what was written and why (see :class:`Manifest`)
    .llseg/           scan cache and label-writing state, reused by later runs

Equal chunks make Ianvs' line-order splitting (``default``/``fwt_splitting`` with
``incremental_rounds`` = number of tasks, ``step = int(N / R)``) give exactly one task per round.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from tqdm import tqdm

from llseg import __version__
from llseg.data.cityscapes import CityscapesSample, find_samples, load_train_ids
from llseg.data.imageio import PathLike, write_label_png
from llseg.data.indexfile import INDEX_COLUMNS, write_index
from llseg.data.labels import CITYSCAPES, IGNORE_INDEX
from llseg.data.scan import scan_class_counts
from llseg.data.splits import (
    PRESETS,
    CityClassIncrementalSpec,
    domain_membership,
    eval_covering_order,
    train_label_lut,
)
from llseg.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DATASETS = ("cityscapes",)
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
TEST_SPLIT = "val"  # Cityscapes' val split is the benchmark's test set
SEDNA_MIN_TRAIN_SAMPLE = 10  # Sedna merges smaller tasks into one global model
_STATE_DIR = ".llseg"
_STATE_FORMAT = 1


@dataclass(frozen=True)
class TaskSummary:
    """One incremental task: its classes, cities and image counts.

    ``available`` images are in the task's cities, ``skipped`` of them have no pixel of the
    task's classes, ``dropped`` usable ones were cut to equalise chunks, ``used`` = chunk size.
    ``*_part_missing`` name task classes absent from the chunk's Ianvs train or eval part.
    """

    task: int
    classes: tuple[int, ...]
    class_names: tuple[str, ...]
    cities: tuple[str, ...]
    available: int
    skipped: int
    used: int
    dropped: int
    train_part_missing: tuple[str, ...]
    eval_part_missing: tuple[str, ...]


@dataclass(frozen=True)
class SplitSummary:
    """An evaluation index file: which Cityscapes split and cities it holds."""

    index: str
    split: str
    cities: tuple[str, ...]
    images: int


@dataclass(frozen=True)
class Manifest:
    """What ``prepare`` wrote (``<out>/manifest.json``). Task numbers are 1-based.

    ``files`` maps paths relative to the output folder to their line count (index files) or
    PNG count (label folders). ``root`` is the dataset root as given (relative stays relative).
    """

    spec: str
    dataset: str
    root: str
    seed: int
    train_ratio: float
    chunk_size: int
    num_classes: int
    class_names: tuple[str, ...]
    background_id: Optional[int]
    ignore_index: int
    index_columns: tuple[str, ...]
    tasks: tuple[TaskSummary, ...]
    validation: SplitSummary
    test: SplitSummary
    files: dict[str, int]
    llseg_version: str
    first_line_missing: tuple[str, ...] = ()

    def save(self, path: PathLike) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"format": MANIFEST_FORMAT, **asdict(self)}, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: PathLike) -> Manifest:
        """Read ``path`` (a manifest.json or the folder holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            if data.pop("format") != MANIFEST_FORMAT:
                raise ValueError(f"manifest format is not {MANIFEST_FORMAT}")
            data["tasks"] = tuple(TaskSummary(**_tuples(t)) for t in data["tasks"])
            data["validation"] = SplitSummary(**_tuples(data["validation"]))
            data["test"] = SplitSummary(**_tuples(data["test"]))
            return cls(**_tuples(data))
        except FileNotFoundError:
            raise DataError(f"{path} not found; run `llseg prepare` to create it") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path} is not a valid llseg manifest ({exc}); re-run `llseg prepare`") from None

    def summary(self) -> str:
        """Readable multi-line description, with warnings for thin or lopsided chunks."""
        n_train = int(self.chunk_size * self.train_ratio)
        lines = [f"split {self.spec} of {self.dataset} at {self.root} (seed {self.seed}, llseg {self.llseg_version})"]
        for t in self.tasks:
            lines.append(
                f"  task {t.task}: {len(t.classes)} classes ({', '.join(t.class_names)}) from {len(t.cities)} cities; "
                f"images: {t.available} available, {t.skipped} without task pixels, {t.used} used, {t.dropped} dropped"
            )
        lines.append(
            f"  train_index.txt: {len(self.tasks)} chunks of {self.chunk_size} lines; Ianvs line-order splitting "
            f"with incremental_rounds={len(self.tasks)} and train ratio {self.train_ratio} gives "
            f"{n_train} train + {self.chunk_size - n_train} eval lines per task"
        )
        for role, s in (("validation (checkpoint selection)", self.validation), ("test", self.test)):
            lines.append(f"  {role}: {s.index}, {s.images} images of the {s.split} split ({', '.join(s.cities)})")
        for t in self.tasks:
            for part, missing in (("train", t.train_part_missing), ("eval", t.eval_part_missing)):
                if missing:
                    lines.append(f"  warning: task {t.task}'s {part} part has no {', '.join(missing)}")
        if self.first_line_missing:
            lines.append(
                f"  warning: the first line of train_index.txt (Ianvs' fwt_splitting round 0 trains on it alone) "
                f"has no {', '.join(self.first_line_missing)}; the estimator will learn these as a separate group"
            )
        if n_train < SEDNA_MIN_TRAIN_SAMPLE:
            lines.append(
                f"  warning: {n_train} train lines per task < {SEDNA_MIN_TRAIN_SAMPLE}; Sedna merges such tasks into one model"
            )
        return "\n".join(lines)


def _tuples(data: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def _cityscapes_spec(dataset: str, split: str) -> CityClassIncrementalSpec:
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")
    valid = {n: s for n, s in PRESETS.items() if isinstance(s, CityClassIncrementalSpec) and s.dataset == dataset}
    if split not in valid:
        what = "is not a" if split in PRESETS else "is an unknown"
        raise ConfigError(f"split {split!r} {what} {dataset} split; valid: {', '.join(valid)}")
    return valid[split]


class _LabelWriter:
    """Writes label PNGs, skipping those whose source and mapping are unchanged since the last run.

    State (``<out>/.llseg/labels.json``): output path -> [fingerprint, size, mtime_ns]. Outputs a
    previous run wrote and this run does not are deleted.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.state_file = out / _STATE_DIR / "labels.json"
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
            self.old: dict[str, list] = data["outputs"] if data.get("format") == _STATE_FORMAT else {}
        except (OSError, ValueError, KeyError, TypeError):
            self.old = {}
        self.new: dict[str, list] = {}
        self.jobs: list[tuple[CityscapesSample, list[tuple[str, np.ndarray, str]]]] = []

    def add(self, sample: CityscapesSample, outputs: Sequence[tuple[str, np.ndarray]]) -> None:
        """Queue ``sample``'s outputs: (path relative to out, train-id -> output LUT)."""
        st = os.stat(sample.label)
        raw_lut = CITYSCAPES.id_to_train_id if sample.kind == "labelIds" else np.arange(256, dtype=np.uint8)
        todo = []
        for rel, lut in outputs:
            digest = hashlib.sha1(lut[raw_lut].tobytes()).hexdigest()[:16]
            fingerprint = f"{os.path.abspath(sample.label)}|{st.st_size}|{st.st_mtime_ns}|{digest}"
            old = self.old.get(rel)
            target = self.out / rel
            if old and old[0] == fingerprint and target.is_file():
                tst = target.stat()
                if [tst.st_size, tst.st_mtime_ns] == old[1:]:
                    self.new[rel] = old
                    continue
            todo.append((rel, lut, fingerprint))
        if todo:
            self.jobs.append((sample, todo))

    def run(self) -> int:
        """Write the queued labels, delete stale ones, save the state; returns files written."""

        def work(job: tuple[CityscapesSample, list[tuple[str, np.ndarray, str]]]) -> list[tuple[str, list]]:
            sample, todo = job
            full = load_train_ids(sample)
            done = []
            for rel, lut, fingerprint in todo:
                target = self.out / rel
                write_label_png(target, lut[full])
                tst = target.stat()
                done.append((rel, [fingerprint, tst.st_size, tst.st_mtime_ns]))
            return done

        written = 0
        try:
            with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool, tqdm(
                total=len(self.jobs), desc="writing labels", unit="img", disable=not self.jobs, leave=False
            ) as bar:
                for done in pool.map(work, self.jobs):
                    self.new.update(done)
                    written += len(done)
                    bar.update()
            for rel in self.old.keys() - self.new.keys():
                (self.out / rel).unlink(missing_ok=True)
        finally:  # record what exists so an interrupted run resumes
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            keep = {**{k: v for k, v in self.old.items() if (self.out / k).is_file()}, **self.new}
            self.state_file.write_text(json.dumps({"format": _STATE_FORMAT, "outputs": keep}), encoding="utf-8")
        return written


def _label_rel(kind: str, sample: CityscapesSample) -> str:
    return f"labels/{kind}/{sample.split}/{sample.city}/{sample.stem}.png"


def prepare(
    dataset: str, *, root: PathLike, split: str, out: PathLike, seed: int = 0, train_ratio: float = 0.8
) -> Manifest:
    """Build the incremental split ``split`` of the dataset at ``root`` into ``out``.

    Each task's usable images (in its cities, with >= 1 pixel of its classes) are shuffled with
    ``seed`` and cut to the smallest task's count; within a chunk, the last ``n - int(n *
    train_ratio)`` lines (Ianvs' eval part) are chosen to cover the task's classes. Re-runs
    reuse the class scan and rewrite only changed label files.

    Raises:
        ConfigError: unknown dataset or split, bad ``train_ratio``, or a task with fewer than 2
            usable images.
        DataError: missing root, layout problems or bad label files (see :mod:`cityscapes`).
    """
    spec = _cityscapes_spec(dataset, split)
    if not 0.0 < train_ratio < 1.0:
        raise ConfigError(f"train_ratio must be strictly between 0 and 1, got {train_ratio}")
    root, out = Path(root), Path(out)
    classes = spec.classes
    task_cities = [c for group in spec.domains.groups for c in group]
    train_samples = find_samples(root, "train", cities=task_cities + list(spec.held_out))
    task_samples = [s for s in train_samples if s.city in task_cities]
    val_samples = [s for s in train_samples if s.city in spec.held_out]
    test_samples = find_samples(root, TEST_SPLIT)

    by_label = {s.label: s for s in task_samples}
    counts = scan_class_counts(
        [s.label for s in task_samples],
        lambda p: load_train_ids(by_label[Path(p)]),
        classes.num_classes,
        out / _STATE_DIR / "scan_cache.json",
    )
    cities = [s.city for s in task_samples]
    member, in_cities = spec.membership(counts, cities), domain_membership(spec.domains, cities)
    usable = [np.flatnonzero(member[:, t]) for t in range(spec.num_steps)]
    n = min(len(u) for u in usable)
    if n < 2:
        detail = "; ".join(
            f"task {t + 1}: {int(in_cities[:, t].sum())} images in its cities, {len(u)} with its classes"
            for t, u in enumerate(usable)
        )
        raise ConfigError(
            f"split {split} needs at least 2 usable images per task (so that Ianvs' train and eval parts are "
            f"non-empty), got {detail}; check the dataset at {root}"
        )
    n_train = int(n * train_ratio)

    writer = _LabelWriter(out)
    identity = np.arange(256, dtype=np.uint8)
    train_rows, summaries = [], []
    for t, cls in enumerate(classes.tasks):
        rng = np.random.default_rng([seed, t])
        chosen = rng.permutation(usable[t])[:n]
        chosen = chosen[eval_covering_order(counts[chosen][:, cls] > 0, n_train)]
        if t == 0:  # fwt_splitting's round 0 trains on this line alone: let it show every class it can
            best = int(np.argmax((counts[chosen[:n_train]][:, cls] > 0).sum(axis=1)))
            chosen[[0, best]] = chosen[[best, 0]]
            first_missing = tuple(CITYSCAPES.class_names[k] for k in cls if counts[chosen[0], k] == 0)
        lut = train_label_lut(classes, t)
        for i in chosen:
            s = task_samples[i]
            full, task = _label_rel("full", s), _label_rel(f"task{t + 1}", s)
            writer.add(s, [(full, identity), (task, lut)])
            train_rows.append((s.image, out / full, out / task))
        names = [CITYSCAPES.class_names[k] for k in cls]
        present_train = counts[chosen[:n_train]][:, cls].sum(axis=0) > 0
        present_eval = counts[chosen[n_train:]][:, cls].sum(axis=0) > 0
        summaries.append(
            TaskSummary(
                task=t + 1,
                classes=tuple(cls),
                class_names=tuple(names),
                cities=tuple(spec.domains.groups[t]),
                available=int(in_cities[:, t].sum()),
                skipped=int(in_cities[:, t].sum()) - len(usable[t]),
                used=n,
                dropped=len(usable[t]) - n,
                train_part_missing=tuple(nm for nm, p in zip(names, present_train) if not p),
                eval_part_missing=tuple(nm for nm, p in zip(names, present_eval) if not p),
            )
        )

    eval_rows = {}
    for name, samples in (("val_index.txt", val_samples), ("test_index.txt", test_samples)):
        rows = []
        for s in samples:
            full = _label_rel("full", s)
            writer.add(s, [(full, identity)])
            rows.append((s.image, out / full, out / full))
        eval_rows[name] = rows
    written = writer.run()

    write_index(out / "train_index.txt", train_rows)
    for name, rows in eval_rows.items():
        write_index(out / name, rows)
    label_dirs = {"labels/full": len({r[1] for rows in (train_rows, *eval_rows.values()) for r in rows})}
    label_dirs.update({f"labels/task{t + 1}": n for t in range(spec.num_steps)})

    manifest = Manifest(
        spec=split,
        dataset=dataset,
        root=root.as_posix(),
        seed=seed,
        train_ratio=train_ratio,
        chunk_size=n,
        num_classes=classes.num_classes,
        class_names=CITYSCAPES.class_names,
        background_id=classes.background_id,
        ignore_index=IGNORE_INDEX,
        index_columns=INDEX_COLUMNS,
        tasks=tuple(summaries),
        validation=SplitSummary("val_index.txt", "train", tuple(spec.held_out), len(val_samples)),
        test=SplitSummary("test_index.txt", TEST_SPLIT, tuple(sorted({s.city for s in test_samples})), len(test_samples)),
        files={"train_index.txt": len(train_rows), **{k: len(v) for k, v in eval_rows.items()}, **label_dirs},
        llseg_version=__version__,
        first_line_missing=first_missing,
    )
    manifest.save(out / MANIFEST_NAME)
    log.info("prepare %s: wrote %d label files, reused the rest; manifest %s", split, written, out / MANIFEST_NAME)
    return manifest
