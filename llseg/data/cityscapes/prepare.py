"""``llseg prepare --dataset cityscapes``: the class- and domain-incremental Cityscapes split for Ianvs.

Reads the real dataset or llseg's synthetic city dataset (same layout, see
:mod:`llseg.data.cityscapes.layout`). The manifest and the label writer are shared with the
other datasets (:mod:`llseg.data.manifest`, :mod:`llseg.data.labelwriter`).

Output folder layout (all paths in index files are relative to ``<out>``)::

    labels/full/<split>/<city>/<stem>.png    train-id maps, all 19 classes (uint8, 255 = ignore)
    labels/task<k>/train/<city>/<stem>.png   task k's training labels (its classes, rest 255)
    train_index.txt   <image> <full_label> <task_label>; task 1, 2, 3 in equal consecutive chunks
    val_index.txt     <image> <full_label> <full_label>; held-out city (erfurt), checkpoint choice
    test_index.txt    <image> <full_label> <full_label>; the Cityscapes val split
    manifest.json     what was written and why (see :class:`~llseg.data.manifest.Manifest`)
    .llseg/           scan cache and label-writing state, reused by later runs

Equal chunks make Ianvs' line-order splitting (``default``/``fwt_splitting`` with
``incremental_rounds`` = number of tasks, ``step = int(N / R)``) give exactly one task per round.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import cast

import numpy as np

from llseg.data.checks import check_train_ratio
from llseg.data.cityscapes.layout import CityscapesSample, find_samples, load_train_ids
from llseg.data.imageio import PathLike
from llseg.data.indexfile import write_index
from llseg.data.labels import CITYSCAPES
from llseg.data.labelwriter import IDENTITY_LUT, STATE_DIR, LabelWriter
from llseg.data.manifest import Manifest, SplitSummary, TaskSummary, write_manifest
from llseg.data.scan import scan_class_counts
from llseg.data.splits import (
    CityClassIncrementalSpec,
    DomainIncrementalSpec,
    dataset_preset,
    domain_membership,
    eval_covering_order,
    train_label_lut,
)
from llseg.errors import ConfigError

TEST_SPLIT = "val"  # Cityscapes' val split is the benchmark's test set


def _cityscapes_spec(split: str) -> CityClassIncrementalSpec | DomainIncrementalSpec:
    return cast(CityClassIncrementalSpec | DomainIncrementalSpec, dataset_preset(split, CITYSCAPES.name))


def _source_lut(sample: CityscapesSample) -> np.ndarray:
    """Label-file ids -> train ids of ``sample``'s label file."""
    if sample.kind != "labelIds":
        return IDENTITY_LUT
    lut = CITYSCAPES.id_to_train_id
    if lut is None:  # llseg.data.labels defines CITYSCAPES with its raw-id table
        raise RuntimeError("CITYSCAPES.id_to_train_id is None: labelIds files need the raw id -> train id table")
    return lut


def _label_rel(kind: str, sample: CityscapesSample) -> str:
    return f"labels/{kind}/{sample.split}/{sample.city}/{sample.stem}.png"


def prepare_cityscapes(
    *, root: PathLike, split: str, out: PathLike, seed: int = 0, train_ratio: float = 0.8, all_train: bool = False
) -> Manifest:
    """Build the incremental split ``split`` of the Cityscapes-layout dataset at ``root`` into ``out``.

    Each task's usable images (in its cities, with >= 1 pixel of its classes) are shuffled with
    ``seed`` and cut to the smallest task's count; within a chunk, the last ``n - int(n *
    train_ratio)`` lines (Ianvs' eval part) are chosen to cover the task's classes. Re-runs
    reuse the class scan and rewrite only changed label files.

    Domain-incremental splits (``cityscapes-domain-*``) are built by
    :func:`llseg.data.cityscapes.domain.prepare_cityscapes_domain` (``all_train`` applies to them only).

    Raises:
        ConfigError: unknown split, bad ``train_ratio``, or a task with fewer than 2 usable images.
        DataError: missing root, layout problems or bad label files (see :mod:`llseg.data.cityscapes.layout`).
    """
    spec = _cityscapes_spec(split)
    if isinstance(spec, DomainIncrementalSpec):
        from llseg.data.cityscapes.domain import prepare_cityscapes_domain

        return prepare_cityscapes_domain(spec, name=split, root=root, out=out, seed=seed, train_ratio=train_ratio,
                                         all_train=all_train)
    if all_train:
        raise ConfigError(f"all_train (--all-train) applies to the padded index scheme; {split} cuts equal chunks: drop it")
    check_train_ratio(train_ratio)
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
        out / STATE_DIR / "scan_cache.json",
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

    writer = LabelWriter(out)
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
            writer.add(s.label, partial(load_train_ids, s), [(full, IDENTITY_LUT), (task, lut)], _source_lut(s))
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
            writer.add(s.label, partial(load_train_ids, s), [(full, IDENTITY_LUT)], _source_lut(s))
            rows.append((s.image, out / full, out / full))
        eval_rows[name] = rows
    written = writer.run()

    write_index(out / "train_index.txt", train_rows)
    for name, rows in eval_rows.items():
        write_index(out / name, rows)
    label_dirs = {"labels/full": len({r[1] for rows in (train_rows, *eval_rows.values()) for r in rows})}
    label_dirs.update({f"labels/task{t + 1}": n for t in range(spec.num_steps)})

    return write_manifest(
        out,
        CITYSCAPES,
        spec=split,
        root=root,
        written=written,
        seed=seed,
        train_ratio=train_ratio,
        chunk_size=n,
        tasks=tuple(summaries),
        validation=SplitSummary("val_index.txt", "train", tuple(spec.held_out), len(val_samples)),
        test=SplitSummary("test_index.txt", TEST_SPLIT, tuple(sorted({s.city for s in test_samples})), len(test_samples)),
        files={"train_index.txt": len(train_rows), **{k: len(v) for k, v in eval_rows.items()}, **label_dirs},
        first_line_missing=first_missing,
    )
