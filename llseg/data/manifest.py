"""The manifest every ``llseg prepare`` builder writes (``<out>/manifest.json``) and its one builder.

:func:`write_manifest` fills what all datasets share (class table, ignore index 255, index
columns, llseg version) from the :class:`~llseg.data.labels.DatasetInfo`; the dataset builders
pass only their split's counts and settings.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llseg import __version__
from llseg.data.imageio import PathLike
from llseg.data.indexfile import INDEX_COLUMNS
from llseg.data.labels import IGNORE_INDEX, DatasetInfo
from llseg.errors import DataError

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
SEDNA_MIN_TRAIN_SAMPLE = 10  # Sedna merges smaller tasks into one global model


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
    train_images: int | None = None
    eval_images: int | None = None
    repeated: int = 0
    domain: str | None = None


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
    background_id: int | None
    ignore_index: int
    index_columns: tuple[str, ...]
    tasks: tuple[TaskSummary, ...]
    validation: SplitSummary
    test: SplitSummary
    files: dict[str, int]
    llseg_version: str
    first_line_missing: tuple[str, ...] = ()
    mode: str | None = None
    train_list: str | None = None
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
                "changes neither training nor scores. "
                + ("all_train: every image is trained on; each chunk's eval part repeats some of the task's trained "
                   "images (Ianvs needs one), so Ianvs' per-round scores and BWT/FWT are on training images"
                   if self.options.get("all_train") else
                   "Every image is on the same side in all tasks: no image is both trained on and evaluated")
            )
        if self.options:
            lines.append("  options: " + ", ".join(f"{key} {value}" for key, value in self.options.items()))
        for domain, counts in self.domains.items():
            lines.append(f"  {domain}: " + ", ".join(f"{n} {key.replace('_', ' ')}" for key, n in counts.items()))
        for role, s in (("validation (checkpoint selection)", self.validation), ("test", self.test)):
            if not s.images:
                lines.append(f"  {role}: none (every image is trained on)")
            elif s.cities:
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
                "so that round 0 still builds step 0's whole class group (without it these classes become a later, "
                "separate group)"
            )
        if n_train < SEDNA_MIN_TRAIN_SAMPLE:
            lines.append(
                f"  warning: {n_train} train lines per task < {SEDNA_MIN_TRAIN_SAMPLE}; Sedna merges such tasks into one model"
            )
        return "\n".join(lines)


def _tuples(data: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def write_manifest(
    out: Path,
    info: DatasetInfo,
    *,
    spec: str,
    root: Path,
    seed: int,
    train_ratio: float,
    chunk_size: int,
    tasks: tuple[TaskSummary, ...],
    validation: SplitSummary,
    test: SplitSummary,
    files: dict[str, int],
    first_line_missing: tuple[str, ...],
    written: int,
    mode: str | None = None,
    train_list: str | None = None,
    options: dict[str, Any] | None = None,
    domains: dict[str, dict[str, int]] | None = None,
) -> Manifest:
    """Build the manifest of split ``spec`` of the dataset ``info`` at ``root``, save it as
    ``<out>/manifest.json`` and log how many label files (``written``) this run wrote.

    Class names, count and background come from ``info``; the other arguments are the
    :class:`Manifest` fields of the same name (``mode`` to ``domains``: VOC and ISPRS only).
    """
    manifest = Manifest(
        spec=spec,
        dataset=info.name,
        root=root.as_posix(),
        seed=seed,
        train_ratio=train_ratio,
        chunk_size=chunk_size,
        num_classes=info.num_classes,
        class_names=info.class_names,
        background_id=info.background_id,
        ignore_index=IGNORE_INDEX,
        index_columns=INDEX_COLUMNS,
        tasks=tasks,
        validation=validation,
        test=test,
        files=files,
        llseg_version=__version__,
        first_line_missing=first_line_missing,
        mode=mode,
        train_list=train_list,
        options=options or {},
        domains=domains or {},
    )
    manifest.save(out / MANIFEST_NAME)
    log.info("prepare %s: wrote %d label files, reused the rest; manifest %s", spec, written, out / MANIFEST_NAME)
    return manifest
