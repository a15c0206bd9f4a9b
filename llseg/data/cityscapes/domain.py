"""``llseg prepare --dataset cityscapes --split cityscapes-domain-*``: PLOP/RCIL's domain-incremental Cityscapes.

The 21 cities of the fine annotations (train and val splits) are the domains; step t trains on the
cities of its group with all 19 classes labelled (:func:`llseg.data.splits.cityscapes_domain_split`).
As in PLOP's ``CityscapesSegmentationIncrementalDomain``, each city's images are shuffled with the
seed and its last 20 % are test images; the test set holds those of all 21 cities, and every score
is also reported per city (the label folder names the city, see :func:`llseg.ianvs.metrics.domain_scores`).
The other 80 % of a city form its step's chunk with the padded index scheme of
:mod:`llseg.data.chunks` (steps of 11 cities and of one city differ widely in size): Ianvs' train
part of the chunk is trained on, its eval part is ``val_index.txt`` (checkpoint choice).

Output folder layout (paths in index files are relative to ``<out>``)::

    labels/full/<split>/<city>/<stem>.png   train-id maps, all 19 classes (uint8, 255 = ignore)
    train_index.txt   <image> <label> <label>; one chunk of ``chunk_size`` lines per step
    val_index.txt     <image> <label> <label>; the eval-side images
    test_index.txt    <image> <label> <label>; 20 % of every city
    manifest.json     what was written (see :class:`~llseg.data.manifest.Manifest`)
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from llseg.data.checks import check_seed, check_train_ratio
from llseg.data.chunks import padded_chunks
from llseg.data.cityscapes.layout import CityscapesSample, find_samples, load_train_ids
from llseg.data.imageio import PathLike
from llseg.data.indexfile import write_index
from llseg.data.labels import CITYSCAPES
from llseg.data.labelwriter import IDENTITY_LUT, STATE_DIR, LabelWriter
from llseg.data.manifest import Manifest, SplitSummary, TaskSummary, write_manifest
from llseg.data.scan import scan_class_counts
from llseg.data.splits import DomainIncrementalSpec
from llseg.errors import ConfigError

TEST_SHARE = 0.2  # PLOP: the last 20 % of each step's shuffled images are its test images
SOURCE_SPLITS = ("train", "val")


def _source_lut(sample: CityscapesSample) -> np.ndarray:
    lut = CITYSCAPES.id_to_train_id
    return lut if sample.kind == "labelIds" and lut is not None else IDENTITY_LUT


def _label_rel(sample: CityscapesSample) -> str:
    return f"labels/full/{sample.split}/{sample.city}/{sample.stem}.png"


def prepare_cityscapes_domain(
    spec: DomainIncrementalSpec, *, name: str, root: PathLike, out: PathLike, seed: int = 0, train_ratio: float = 0.8,
    all_train: bool = False,
) -> Manifest:
    """Build the domain-incremental split ``spec`` (registered as ``name``) of the Cityscapes-layout
    dataset at ``root`` into ``out`` (see the module docstring); ``all_train``: every image of the 80 %
    trains (see :func:`llseg.data.chunks.padded_chunks`).

    Raises:
        ConfigError: bad ``seed`` or ``train_ratio``, or a city with fewer than 3 images (one test
            image and two for the chunk's train and eval parts).
        DataError: missing folders or cities, or bad label files (:mod:`llseg.data.cityscapes.layout`).
    """
    check_train_ratio(train_ratio)
    seed = check_seed(seed)
    root, out = Path(root), Path(out)
    cities = [c for group in spec.groups for c in group]
    samples: list[CityscapesSample] = []
    for split in SOURCE_SPLITS:
        folder = root / "leftImg8bit" / split
        here = [c for c in cities if (folder / c).is_dir()]
        samples += find_samples(root, split, cities=here) if here else []
    missing = sorted(set(cities) - {s.city for s in samples})
    if missing:
        raise ConfigError(f"split {name} needs every city of its steps; {root} has no images of {', '.join(missing)}")

    train_side: list[CityscapesSample] = []
    test_side: list[CityscapesSample] = []
    for city in cities:
        own = [s for s in samples if s.city == city]
        if len(own) < 3:
            raise ConfigError(f"split {name}: city {city} has {len(own)} image(s); it needs at least 3 (test, train, eval)")
        order = np.random.default_rng([seed, cities.index(city)]).permutation(len(own))
        n_fit = int(len(own) * (1 - TEST_SHARE))
        train_side += [own[i] for i in order[:n_fit]]
        test_side += [own[i] for i in order[n_fit:]]

    by_label = {s.label: s for s in train_side}
    counts = scan_class_counts([s.label for s in train_side], lambda p: load_train_ids(by_label[Path(p)]),
                               CITYSCAPES.num_classes, out / STATE_DIR / "scan_cache.json")
    member = np.asarray([[s.city in group for group in spec.groups] for s in train_side], dtype=bool)
    chunks = padded_chunks(member, counts > 0, train_ratio, seed, all_train=all_train)

    writer = LabelWriter(out)
    for s in train_side + test_side:
        writer.add(s.label, partial(load_train_ids, s), [(_label_rel(s), IDENTITY_LUT)], _source_lut(s))
    written = writer.run()

    def row(s: CityscapesSample) -> tuple[Path, Path, Path]:
        return s.image, out / _label_rel(s), out / _label_rel(s)

    train_rows = [row(train_side[i]) for t in range(spec.num_steps) for i in chunks.lines(t)]
    val = [train_side[i] for i in np.flatnonzero(~chunks.is_train & member.any(axis=1))]
    write_index(out / "train_index.txt", train_rows)
    if val:
        write_index(out / "val_index.txt", [row(s) for s in val])
    else:  # all_train
        (out / "val_index.txt").unlink(missing_ok=True)
    write_index(out / "test_index.txt", [row(s) for s in test_side])

    all_classes = tuple(range(CITYSCAPES.num_classes))

    def absent(rows: np.ndarray) -> tuple[str, ...]:
        seen = counts[rows].sum(axis=0) > 0 if len(rows) else np.zeros(CITYSCAPES.num_classes, dtype=bool)
        return tuple(CITYSCAPES.class_names[k] for k in all_classes if not seen[k])

    summaries = tuple(
        TaskSummary(
            task=t + 1, classes=all_classes, class_names=CITYSCAPES.class_names, cities=tuple(spec.groups[t]),
            available=len(a) + len(e), skipped=0, used=chunks.size, dropped=0,
            train_part_missing=absent(a), eval_part_missing=absent(e),
            train_images=len(a), eval_images=len(e), repeated=chunks.size - len(a) - len(e),
        )
        for t, (a, e) in enumerate(chunks.sides)
    )
    first = chunks.sides[0][0][:1]
    return write_manifest(
        out, CITYSCAPES, spec=name, root=root, written=written, seed=seed, train_ratio=train_ratio,
        chunk_size=chunks.size, tasks=summaries,
        validation=SplitSummary("val_index.txt", "train+val", (), len(val)),
        test=SplitSummary("test_index.txt", "train+val (20 % of every city)", tuple(cities), len(test_side)),
        files={"train_index.txt": len(train_rows), "val_index.txt": len(val), "test_index.txt": len(test_side),
               "labels/full": len(train_side) + len(test_side)},
        first_line_missing=absent(first), mode="domain", train_list="train+val",
        options={"all_train": True} if all_train else None,
    )
