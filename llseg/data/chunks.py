"""The padded one-task-per-chunk layout of train_index.txt that VOC, ISPRS and ADE20K share
(:func:`prepare_padded`: their common prepare tail).

Ianvs' ``fwt_splitting`` cuts ``train_index.txt`` by line order into R equal chunks
(R = ``incremental_rounds`` = number of tasks) and each chunk into its first
``int(n * train_ratio)`` lines, which it trains on, and the rest, on which it evaluates the
model; round 0 also trains on the first line alone. Tasks differ widely in size (VOC 15-1
overlapped: 9568 images, then 487, 299, 491, 500 and 548), yet every chunk must hold exactly
one task. So each train image is put once, at random from the seed, on the train side
(about ``train_ratio`` of the images) or on the eval side, and keeps that side in every task it
belongs to: no image is trained on in one task and evaluated in another. A deterministic
fix-up then gives every task at least one image on each side. All chunks have the same length
L, the smallest that fits every task's distinct train images into ``int(L * train_ratio)``
lines and its eval images into the rest; chunk k fills its train part by cycling through task
k's train images in a seeded order, and its eval part likewise with task k's eval images.
Smaller tasks are thus padded with repeated lines. Training de-duplicates repeated lines and
the metrics count each (label, prediction) pair once, so the padding changes neither training
nor scores. The first line is the task-1 train image that shows the most task-1 classes.
``val_index.txt`` lists every eval-side image once.

Images are indexed ``0..n_images-1``; task membership is ``bool (n_images, n_tasks)``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from llseg.data.indexfile import write_index
from llseg.data.labels import DatasetInfo
from llseg.data.labelwriter import LabelWriter
from llseg.data.manifest import Manifest, SplitSummary, TaskSummary, write_manifest
from llseg.data.splits import ClassDomainIncrementalSpec, ClassIncrementalSpec, train_label_lut
from llseg.errors import ConfigError


def assign_sides(member: np.ndarray, train_ratio: float, rng: np.random.Generator) -> np.ndarray:
    """``bool (n_images,)``: True puts an image on the train side of every task, False on the eval side.

    ``member`` is ``bool (n_images, n_tasks)``; every task needs >= 2 images. Of the images in
    some task, ``int(n * train_ratio)`` drawn with ``rng`` go to the train side (images in no
    task stay False). Then, while a task has all its images on one side, the first such task
    gets one of them moved over: the one whose move leaves the fewest other tasks one-sided,
    then the one moved least often so far, in the fewest tasks, drawn earliest. Usually the
    first candidate costs nothing; tiny overlapping tasks may need a few repairs.

    Raises:
        ConfigError: no two-sided assignment found within a bounded number of moves (names the
            task and its image count).
    """
    order = rng.permutation(np.flatnonzero(member.any(axis=1)))
    is_train = np.zeros(member.shape[0], dtype=bool)
    is_train[order[: int(len(order) * train_ratio)]] = True
    rank = np.empty(member.shape[0], dtype=np.int64)
    rank[order] = np.arange(len(order))
    moves = np.zeros(member.shape[0], dtype=np.int64)
    sizes = member.sum(axis=0)
    while True:
        on_train = (member & is_train[:, None]).sum(axis=0)
        one_sided = np.flatnonzero((on_train == 0) | (on_train == sizes))
        if not one_sided.size:
            return is_train
        t = int(one_sided[0])
        images = np.flatnonzero(member[:, t])
        if moves.sum() == 4 * (len(order) + member.shape[1]):  # bounded search
            raise ConfigError(
                f"task {t + 1}: all {len(images)} of its images are on the "
                f"{'train' if is_train[images[0]] else 'eval'} side, and no image could be moved without leaving "
                "another task's images all on one side; tasks this small and entangled need more images (a larger "
                "train list) or another seed"
            )
        on_own_side = np.where(is_train[images[0]], on_train, sizes - on_train)

        def cost(i: int, on_own_side: np.ndarray = on_own_side) -> tuple[int, int, int, int]:
            return int((on_own_side[member[i]] == 1).sum()), int(moves[i]), int(member[i].sum()), int(rank[i])

        pick = min((int(i) for i in images), key=cost)
        is_train[pick] = not is_train[pick]
        moves[pick] += 1


def padded_chunk_size(train_images: Sequence[int], eval_images: Sequence[int], train_ratio: float) -> int:
    """Smallest chunk length L with ``int(L * train_ratio)`` >= every task's train images and
    ``L - int(L * train_ratio)`` >= every task's eval images (Ianvs' cut, same float arithmetic)."""
    most_train, most_eval = max(train_images), max(eval_images)
    # lower bounds that every fitting L meets (less 1 against float rounding), then count up
    size = max(
        max(a + e for a, e in zip(train_images, eval_images)),
        int(most_train / train_ratio) - 1,
        int((most_eval - 1) / (1.0 - train_ratio)) - 1,
    )
    while int(size * train_ratio) < most_train or size - int(size * train_ratio) < most_eval:
        size += 1
    return size


def _cycle(images: np.ndarray, n: int) -> np.ndarray:
    """``n`` entries cycling through ``images`` in order."""
    return images[np.arange(n) % len(images)]


@dataclass(frozen=True)
class PaddedChunks:
    """The padded one-task-per-chunk layout (values are image indices).

    Attributes:
        is_train: ``bool (n_images,)``: the side of each image, the same in every task.
        sides: per task, its (train-side, eval-side) images in seeded order; the first train-side
            image of task 1 is the first line.
        size: chunk length L; ``n_train`` = ``int(L * train_ratio)`` train lines per chunk.
    """

    is_train: np.ndarray
    sides: tuple[tuple[np.ndarray, np.ndarray], ...]
    size: int
    n_train: int

    def lines(self, t: int) -> np.ndarray:
        """The image of every line of chunk ``t``: its train part, then its eval part."""
        train_side, eval_side = self.sides[t]
        return np.concatenate([_cycle(train_side, self.n_train), _cycle(eval_side, self.size - self.n_train)])


def padded_chunks(
    member: np.ndarray, first_task_present: np.ndarray, train_ratio: float, seed: int, *, all_train: bool = False
) -> PaddedChunks:
    """Lay out ``member`` (``bool (n_images, n_tasks)``, every task >= 2 images) as padded chunks.

    ``first_task_present`` (``bool (n_images, k)``: which of task 1's classes an image shows)
    picks the first line: the task-1 train-side image that shows the most of them.

    ``all_train`` (the papers' protocol: every step trains on all its images): every image is on the
    train side; a chunk's eval part, which Ianvs needs non-empty, repeats a seeded share
    ``1 - train_ratio`` of the task's (trained) images, so Ianvs' per-round scores and its BWT/FWT
    are measured on training images; the test-set scores are not affected. No validation images remain.
    """
    rng = np.random.default_rng(seed)
    sides = []
    if all_train:
        is_train = np.asarray(member.any(axis=1), dtype=bool)
        for t in range(member.shape[1]):
            images = rng.permutation(np.flatnonzero(member[:, t]))
            sides.append((images, images[: max(1, len(images) - int(len(images) * train_ratio))]))
    else:
        is_train = assign_sides(member, train_ratio, rng)
        for t in range(member.shape[1]):
            images = np.flatnonzero(member[:, t])
            sides.append((rng.permutation(images[is_train[images]]), rng.permutation(images[~is_train[images]])))
    size = padded_chunk_size([len(a) for a, _ in sides], [len(e) for _, e in sides], train_ratio)
    # fwt_splitting's round 0 trains on the first line alone: let it show every task-1 class it can
    first_train = sides[0][0]
    best = int(np.argmax(first_task_present[first_train].sum(axis=1)))
    first_train[[0, best]] = first_train[[best, 0]]
    return PaddedChunks(is_train, tuple(sides), size, int(size * train_ratio))


@dataclass(frozen=True)
class PaddedRows:
    """What the padded layout writes: ``outputs`` = per image index its ``(label path, LUT)`` files
    (full, then one per task it is in), ``train_rows`` = the train_index.txt lines, and the summaries."""

    outputs: dict[int, list[tuple[str, np.ndarray]]]
    train_rows: list[tuple[str, Path, Path]]
    summaries: list[TaskSummary]
    first_line_missing: tuple[str, ...]


def padded_rows(
    chunks: PaddedChunks,
    tasks: Sequence[Sequence[int]],
    counts: np.ndarray,
    class_names: Sequence[str],
    samples: Sequence[Any],
    label_rel: Callable[[str, Any], str],
    full_lut: np.ndarray,
    task_luts: Sequence[np.ndarray],
    out: Path,
    domains: Sequence[str | None] | None = None,
) -> PaddedRows:
    """Index lines, label files and task summaries of ``chunks`` (VOC, ISPRS, ADE20K).

    ``counts`` ``int (n_images, n_classes)`` pixel counts of ``samples`` (each with ``.image``);
    ``label_rel(kind, sample)`` its label path under ``out`` for kind ``full`` or ``task<k>``;
    ``task_luts[t]`` maps the source label to task t's training label; ``domains[t]`` the step's domain.
    """

    def missing(rows: np.ndarray, classes: Sequence[int]) -> tuple[str, ...]:
        present = counts[rows][:, classes].sum(axis=0) > 0
        return tuple(class_names[k] for k, p in zip(classes, present) if not p)

    outputs: dict[int, list[tuple[str, np.ndarray]]] = {}
    train_rows, summaries = [], []
    for t, (classes, (train_side, eval_side)) in enumerate(zip(tasks, chunks.sides)):
        task = f"task{t + 1}"
        images = np.unique(np.concatenate([train_side, eval_side]))  # all_train: the eval side repeats train images
        for i in images:
            outputs.setdefault(int(i), [(label_rel("full", samples[i]), full_lut)])
            outputs[int(i)].append((label_rel(task, samples[i]), task_luts[t]))
        for i in chunks.lines(t):
            s = samples[i]
            train_rows.append((s.image, out / label_rel("full", s), out / label_rel(task, s)))
        summaries.append(
            TaskSummary(
                task=t + 1,
                classes=tuple(classes),
                class_names=tuple(class_names[k] for k in classes),
                cities=(),
                available=len(images),
                skipped=0,
                used=chunks.size,
                dropped=0,
                train_part_missing=missing(train_side, classes),
                eval_part_missing=missing(eval_side, classes),
                train_images=len(train_side),
                eval_images=len(eval_side),
                repeated=chunks.size - len(images),
                domain=None if domains is None else domains[t],
            )
        )
    return PaddedRows(outputs, train_rows, summaries, missing(chunks.sides[0][0][:1], tasks[0]))


@dataclass(frozen=True)
class WrittenLayout:
    """What :func:`write_padded_layout` wrote: the validation images, the manifest's ``files``
    counts (index lines and label files per folder) and how many label files were (re)written."""

    val_images: int
    files: dict[str, int]
    written: int


def write_padded_layout(
    layout: PaddedRows,
    chunks: PaddedChunks,
    samples: Sequence[Any],
    test_samples: Sequence[Any],
    label_rel: Callable[[str, Any], str],
    read_label: Callable[[Path], np.ndarray],
    full_lut: np.ndarray,
    out: Path,
) -> WrittenLayout:
    """Write the label files of ``layout`` (and the full labels of ``test_samples``) and the three
    index files: train_index.txt, val_index.txt (the eval-side images; not written when there are none,
    ``all_train``) and test_index.txt (VOC, ISPRS, ADE20K).

    ``samples`` / ``test_samples`` have ``.image`` and ``.label``; ``read_label`` reads a source label.
    """
    writer = LabelWriter(out)
    for i, files in layout.outputs.items():
        writer.add(samples[i].label, partial(read_label, samples[i].label), files)
    for s in test_samples:
        writer.add(s.label, partial(read_label, s.label), [(label_rel("full", s), full_lut)])
    written = writer.run()

    val = [samples[i] for i in sorted(i for i in layout.outputs if not chunks.is_train[i])]
    eval_rows = {
        name: [(s.image, out / label_rel("full", s), out / label_rel("full", s)) for s in chosen]
        for name, chosen in (("val_index.txt", val), ("test_index.txt", test_samples))
    }
    write_index(out / "train_index.txt", layout.train_rows)
    for name, rows in eval_rows.items():
        if rows:
            write_index(out / name, rows)
        else:  # all_train: no validation image; a stale file from an earlier run must not be read
            (out / name).unlink(missing_ok=True)
    file_counts = {"train_index.txt": len(layout.train_rows), **{k: len(v) for k, v in eval_rows.items()},
                   "labels/full": len(layout.outputs) + len(test_samples),
                   **{f"labels/task{summary.task}": summary.available for summary in layout.summaries}}
    return WrittenLayout(len(val), file_counts, written)


def prepare_padded(
    *,
    out: Path,
    root: Path,
    info: DatasetInfo,
    split: str,
    spec: ClassIncrementalSpec,
    member: np.ndarray,
    counts: np.ndarray,
    samples: Sequence[Any],
    test_samples: Sequence[Any],
    label_rel: Callable[[str, Any], str],
    read_label: Callable[[Path], np.ndarray],
    full_lut: np.ndarray,
    train_lut: np.ndarray | None = None,
    seed: int,
    train_ratio: float,
    all_train: bool,
    train_list: str,
    test_list: str,
    test_domains: tuple[str, ...] = (),
    options: dict[str, Any] | None = None,
    domains: dict[str, dict[str, int]] | None = None,
) -> Manifest:
    """The shared tail of the padded prepares (VOC, ISPRS, ADE20K): lay out ``member``
    (``bool (n_images, n_tasks)``, checked >= 2 images per task) as padded chunks, write label
    files and index files into ``out`` and return the saved manifest.

    ``counts`` ``int (n_images, n_classes)`` pixel counts of ``samples``; ``full_lut`` maps a source
    label to the full labels, ``train_lut`` (default ``full_lut``) to the train ids that step k's
    :func:`~llseg.data.splits.train_label_lut` then maps. A :class:`ClassDomainIncrementalSpec`
    names each step's domain. ``train_list`` / ``test_list`` (and ``test_domains``) name where the
    validation and test images come from; ``options`` (plus ``all_train``) and ``domains`` go to the manifest.
    """
    chunks = padded_chunks(member, counts[:, spec.tasks[0]] > 0, train_ratio, seed, all_train=all_train)
    to_train = full_lut if train_lut is None else train_lut
    task_luts = [train_label_lut(spec, t)[to_train] for t in range(spec.num_steps)]
    step_domains = spec.step_domains if isinstance(spec, ClassDomainIncrementalSpec) else None
    layout = padded_rows(chunks, spec.tasks, counts, info.class_names, samples, label_rel, full_lut, task_luts, out,
                         step_domains)
    written = write_padded_layout(layout, chunks, samples, test_samples, label_rel, read_label, full_lut, out)
    return write_manifest(
        out,
        info,
        spec=split,
        root=root,
        written=written.written,
        seed=seed,
        train_ratio=train_ratio,
        chunk_size=chunks.size,
        tasks=tuple(layout.summaries),
        validation=SplitSummary("val_index.txt", train_list, (), written.val_images),
        test=SplitSummary("test_index.txt", test_list, test_domains, len(test_samples)),
        files=written.files,
        first_line_missing=layout.first_line_missing,
        mode=spec.mode,
        train_list=train_list,
        options={**(options or {}), **({"all_train": True} if all_train else {})},
        domains=domains,
    )
