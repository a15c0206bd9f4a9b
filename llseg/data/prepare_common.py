"""What every ``llseg prepare`` builder shares: the manifest and the label-PNG writer.

The dataset-specific builders are :mod:`llseg.data.prepare` (Cityscapes) and
:mod:`llseg.data.prepare_voc` (Pascal VOC layout). Label maps are ``uint8 H x W`` train ids,
255 = ignore.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
from tqdm import tqdm

from llseg.data.imageio import PathLike, write_label_png
from llseg.errors import ConfigError, DataError

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
SEDNA_MIN_TRAIN_SAMPLE = 10  # Sedna merges smaller tasks into one global model
STATE_DIR = ".llseg"  # scan cache and label-writing state, reused by later runs
IDENTITY_LUT = np.arange(256, dtype=np.uint8)
_STATE_FORMAT = 1


@dataclass(frozen=True)
class TaskSummary:
    """One incremental task: its classes, where its images come from and how its chunk uses them.

    Cityscapes: ``available`` images are in the task's ``cities``, ``skipped`` of them have no
    pixel of the task's classes, ``dropped`` usable ones were cut to equalise chunks, ``used`` =
    chunk size. VOC: ``available`` images of the train list pass the task's filter (overlap or
    disjoint), ``train_images`` + ``eval_images`` = ``available`` are the distinct images on
    each side, ``used`` = chunk size, of which ``repeated`` lines repeat an image (padding);
    ``cities`` is empty, ``skipped`` and ``dropped`` are 0. ISPRS: as VOC, the images being the
    patches of the train tiles of the task's ``domain`` (``potsdam`` or ``vaihingen``).
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
    train_images: Optional[int] = None
    eval_images: Optional[int] = None
    repeated: int = 0
    domain: Optional[str] = None


@dataclass(frozen=True)
class SplitSummary:
    """An evaluation index file: which split or list (and, for Cityscapes, cities) it holds."""

    index: str
    split: str
    cities: tuple[str, ...]
    images: int


@dataclass(frozen=True)
class Manifest:
    """What ``prepare`` wrote (``<out>/manifest.json``). Task numbers are 1-based.

    ``files`` maps paths relative to the output folder to their line count (index files) or
    PNG count (label folders). ``root`` is the dataset root as given (relative stays relative).
    ``mode`` (overlap or disjoint) and ``train_list`` (the list the train index is drawn from)
    are set for VOC and ISPRS (``train``: the train tiles); ``test.split`` names the test split or
    list. ISPRS only: ``options`` holds the prepare settings (background, clutter, patch size,
    ...) and ``domains`` per domain the tile and patch counts of each side.
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
    mode: Optional[str] = None
    train_list: Optional[str] = None
    options: dict[str, Any] = field(default_factory=dict)
    domains: dict[str, dict[str, int]] = field(default_factory=dict)

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
            noun = "classes" if len(t.classes) > 1 else "class"
            head = f"  task {t.task}: {len(t.classes)} {noun} ({', '.join(t.class_names)})"
            if self.train_list is None:
                lines.append(
                    f"{head} from {len(t.cities)} cities; images: {t.available} available, "
                    f"{t.skipped} without task pixels, {t.used} used, {t.dropped} dropped"
                )
            else:
                source = f"patches of the {t.domain} {self.train_list} tiles" if t.domain else f"of the {self.train_list} list"
                lines.append(
                    f"{head}; images: {t.available} {source} ({self.mode}), "
                    f"{t.train_images} train + {t.eval_images} eval; {t.repeated} of {t.used} lines are repeats"
                )
        lines.append(
            f"  train_index.txt: {len(self.tasks)} chunks of {self.chunk_size} lines; Ianvs line-order splitting "
            f"with incremental_rounds={len(self.tasks)} and train ratio {self.train_ratio} gives "
            f"{n_train} train + {self.chunk_size - n_train} eval lines per task"
        )
        if self.train_list is not None:
            lines.append(
                "  padding: every chunk is as long as the largest task needs; smaller tasks repeat their images "
                "(train lines cycle through the task's train images, eval lines through its eval images). Training "
                "de-duplicates repeated lines and the metrics count each (label, prediction) pair once, so padding "
                "changes neither training nor scores. Every image is on the same side in all tasks: no image is "
                "both trained on and evaluated"
            )
        if self.options:
            lines.append("  options: " + ", ".join(f"{key} {value}" for key, value in self.options.items()))
        for domain, counts in self.domains.items():
            lines.append(f"  {domain}: " + ", ".join(f"{n} {key.replace('_', ' ')}" for key, n in counts.items()))
        for role, s in (("validation (checkpoint selection)", self.validation), ("test", self.test)):
            if s.cities:
                lines.append(f"  {role}: {s.index}, {s.images} images of the {s.split} split ({', '.join(s.cities)})")
            else:
                what = "eval-side images (never trained on)" if s is self.validation else "images"
                lines.append(f"  {role}: {s.index}, {s.images} {what} of the {s.split} list")
        for t in self.tasks:
            for part, missing in (("train", t.train_part_missing), ("eval", t.eval_part_missing)):
                if missing:
                    lines.append(f"  warning: task {t.task}'s {part} part has no {', '.join(missing)}")
        if self.first_line_missing:
            lines.append(
                f"  warning: the first line of train_index.txt (Ianvs' fwt_splitting round 0 trains on it alone) "
                f"has no {', '.join(self.first_line_missing)}; give the estimator the hyperparameter split: {self.spec} "
                "so that round 0 still builds step 0's whole class group (without it these classes become a later, separate group)"
            )
        if n_train < SEDNA_MIN_TRAIN_SAMPLE:
            lines.append(
                f"  warning: {n_train} train lines per task < {SEDNA_MIN_TRAIN_SAMPLE}; Sedna merges such tasks into one model"
            )
        return "\n".join(lines)


def _tuples(data: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def check_train_ratio(train_ratio: float) -> None:
    """``ConfigError`` unless ``0 < train_ratio < 1`` (Ianvs' share of train lines per chunk)."""
    if not 0.0 < train_ratio < 1.0:
        raise ConfigError(f"train_ratio must be strictly between 0 and 1, got {train_ratio}")


_Job = tuple[Callable[[], np.ndarray], list[tuple[str, np.ndarray, str]]]


class LabelWriter:
    """Writes label PNGs, skipping those whose source and mapping are unchanged since the last run.

    State (``<out>/.llseg/labels.json``): output path -> [fingerprint, size, mtime_ns]. Outputs a
    previous run wrote and this run does not are deleted.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.state_file = out / STATE_DIR / "labels.json"
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
            self.old: dict[str, list] = data["outputs"] if data.get("format") == _STATE_FORMAT else {}
        except (OSError, ValueError, KeyError, TypeError):
            self.old = {}
        self.new: dict[str, list] = {}
        self.jobs: list[_Job] = []

    def add(
        self,
        source: Path,
        load: Callable[[], np.ndarray],
        outputs: Sequence[tuple[str, np.ndarray]],
        source_lut: np.ndarray = IDENTITY_LUT,
    ) -> None:
        """Queue the outputs of the label file ``source``: (path relative to out, train-id -> output LUT).

        ``load()`` reads ``source`` as a ``uint8 H x W`` train-id map; ``source_lut`` (the file's
        ids -> train ids) only enters the fingerprint, so a changed conversion rewrites the outputs.
        """
        st = os.stat(source)
        todo = []
        for rel, lut in outputs:
            digest = hashlib.sha1(lut[source_lut].tobytes()).hexdigest()[:16]
            fingerprint = f"{os.path.abspath(source)}|{st.st_size}|{st.st_mtime_ns}|{digest}"
            old = self.old.get(rel)
            target = self.out / rel
            if old and old[0] == fingerprint and target.is_file():
                tst = target.stat()
                if [tst.st_size, tst.st_mtime_ns] == old[1:]:
                    self.new[rel] = old
                    continue
            todo.append((rel, lut, fingerprint))
        if todo:
            self.jobs.append((load, todo))

    def run(self) -> int:
        """Write the queued labels, delete stale ones, save the state; returns files written."""

        def work(job: _Job) -> list[tuple[str, list]]:
            load, todo = job
            full = load()
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
