"""``llseg prepare --dataset isprs``: the ISPRS Potsdam (RGB) -> Vaihingen (IRRG) split for Ianvs.

Reads the real tiles or llseg's synthetic aerial dataset (same layout, see
:mod:`llseg.data.isprs.layout`).
Splits are the ``isprs-*`` presets of :mod:`llseg.data.splits` (4-1, 2-3, 2-2-1, 2-1; LAG,
docs/methods.md §8.2): step 0 learns its classes on Potsdam, every later step on Vaihingen. Tiles go
to the train or test side by the standard ISPRS lists (:func:`~llseg.data.isprs.layout.tile_sides`)
and are cut into patches (:func:`~llseg.data.isprs.layout.cut_tiles`). A step takes the patches of its
domain's train tiles with >= 1 pixel of its classes (overlap-style: other classes may appear;
with ``background="impervious"`` the background alone does not qualify a patch, as in VOC).

Class handling (train ids 0..4 = impervious surfaces, building, low vegetation, tree, car):

* ``background="impervious"`` (default, the IDEC/LAG loaders): class 0 is the background; a
  step's training labels keep its classes and turn every other class into 0 (SSUL's unknown is
  drawn from these pixels). ``"none"``: no background; other classes become 255 (ignored).
* clutter is never a class: 255 in the test labels. In training labels ``clutter="background"``
  (default with an impervious background, LAG) folds it into class 0, ``"ignore"`` (the only
  choice without a background) makes it 255.
* eroded boundaries (``eroded=True``) are 255 everywhere.

Output folder layout (paths in index files are relative to ``<out>``)::

    images/<domain>/<patch>.png          image patches (Potsdam RGB, Vaihingen IRRG)
    labels/source/<domain>/<patch>.png   the six ISPRS classes as ids 0..5 (5 = clutter, 255 = boundary)
    labels/full/<domain>/<patch>.png     train ids 0..4, clutter and boundaries 255
    labels/task<k>/<domain>/<patch>.png  step k's training labels
    train_index.txt   <image> <full_label> <task_label>; one chunk of ``chunk_size`` lines per step
    val_index.txt     <image> <full_label> <full_label>; the eval-side patches, for checkpoint choice
    test_index.txt    <image> <full_label> <full_label>; the test tiles' patches of BOTH domains
    manifest.json     settings, counts per step and per domain (:class:`~llseg.data.manifest.Manifest`)
    .llseg/           patch-cutting and label-writing state, reused by later runs

The index scheme is VOC's (:mod:`llseg.data.chunks`): every train-tile patch is on the train
or the eval side in every step it belongs to, steps are padded to equal chunks with repeated
lines (one Ianvs chunk per step), and the first line is the step-0 train patch that shows the
most step-0 classes. Every label path names its domain in its parent folder
(``labels/*/<domain>/``): the per-domain metrics of :mod:`llseg.ianvs.metrics` read it there.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from llseg.data.checks import check_seed, check_train_ratio
from llseg.data.chunks import prepare_padded
from llseg.data.imageio import PathLike, read_label_png
from llseg.data.isprs.layout import ISPRSPatch, cut_tiles, find_isprs_tiles, tile_sides
from llseg.data.labels import IGNORE_INDEX, ISPRS, ISPRS_CLUTTER, ISPRS_DOMAINS, ISPRS_SOURCE_TO_TRAIN, get_dataset_info
from llseg.data.manifest import Manifest
from llseg.data.splits import ISPRS_BACKGROUNDS, ClassDomainIncrementalSpec, dataset_preset, isprs_split
from llseg.errors import ConfigError, DataError

CLUTTER_MODES = ("background", "ignore")
DEFAULT_PATCH_SIZE = 512


def isprs_spec(split: str, background: str = "impervious") -> ClassDomainIncrementalSpec:
    """The ISPRS split preset ``split`` with the given ``background`` (``ConfigError`` lists the valid ones)."""
    dataset_preset(split, ISPRS.name)
    return isprs_split(split.removeprefix("isprs-"), background)


def clutter_lut(clutter: str) -> np.ndarray:
    """``uint8[256]`` source ids -> train ids for training labels: clutter -> 0 (``"background"``) or 255."""
    lut = ISPRS_SOURCE_TO_TRAIN.copy()
    lut[ISPRS_CLUTTER] = 0 if clutter == "background" else IGNORE_INDEX
    return lut


def _label_rel(kind: str, patch: ISPRSPatch) -> str:
    return f"labels/{kind}/{patch.domain}/{patch.id}.png"


def _check_sides(sides: dict[str, str], domains: dict[str, str], root: Path) -> None:
    """``DataError`` unless both domains have tiles on both sides (``sides``, ``domains``: tile id -> side, domain)."""
    for domain in ISPRS_DOMAINS:
        have = {side for tile, side in sides.items() if domains[tile] == domain}
        if have != {"train", "test"}:
            lacking = ({"train", "test"} - have).pop()
            raise DataError(
                f"{root}: no {domain} tile is on the {lacking} side (standard ISPRS tile lists, else drawn with the "
                f"seed); the benchmark trains and tests on both domains: add {domain} tiles"
            )


def _check_step_sizes(spec: ClassDomainIncrementalSpec, member: np.ndarray, split: str) -> None:
    """``ConfigError`` naming every step of ``member`` (``bool (n_patches, n_steps)``) with fewer than 2 patches."""
    sizes = member.sum(axis=0)
    small = [t for t, n in enumerate(sizes) if n < 2]
    if small:
        detail = "; ".join(
            f"task {t + 1} ({', '.join(ISPRS.class_names[k] for k in spec.tasks[t])}): {sizes[t]} "
            f"{spec.step_domains[t]} patch(es) with its classes"
            for t in small
        )
        raise ConfigError(
            f"split {split} needs at least 2 patches per task (one for the train part and one for the eval part of its "
            f"chunk), got {detail} (all tasks: {', '.join(map(str, sizes))}); add train tiles or use a smaller patch size"
        )


def prepare_isprs(
    *,
    root: PathLike,
    split: str,
    out: PathLike,
    seed: int = 0,
    train_ratio: float = 0.8,
    patch_size: int = DEFAULT_PATCH_SIZE,
    background: str = "impervious",
    clutter: str | None = None,
    eroded: bool = False,
    colour_tolerance: int = 0,
    all_train: bool = False,
) -> Manifest:
    """Build the ISPRS split ``split`` of the tiles under ``root`` (holding ``potsdam/`` and
    ``vaihingen/``) into ``out``, as the module docstring describes.

    ``all_train``: every patch trains (see :func:`llseg.data.chunks.padded_chunks`).
    ``clutter`` defaults to ``"background"`` with ``background="impervious"`` and to
    ``"ignore"`` with ``"none"``. Re-runs re-cut only changed tiles and rewrite only changed labels.

    Raises:
        ConfigError: unknown split, bad option or option combination, or a step with fewer than 2 patches.
        DataError: missing or unreadable tiles, bad label colours (see :mod:`llseg.data.isprs.layout`), or a
            domain without train or test tiles.
    """
    if background not in ISPRS_BACKGROUNDS:
        raise ConfigError(f"background must be one of {', '.join(ISPRS_BACKGROUNDS)}, got {background!r}")
    clutter = clutter or ("background" if background == "impervious" else "ignore")
    if clutter not in CLUTTER_MODES:
        raise ConfigError(f"clutter must be one of {', '.join(CLUTTER_MODES)}, got {clutter!r}")
    if clutter == "background" and background == "none":
        raise ConfigError(
            "clutter 'background' folds clutter into the background class, but background 'none' has none; "
            "use clutter 'ignore' (--clutter ignore) or background 'impervious'"
        )
    spec = isprs_spec(split, background)
    check_train_ratio(train_ratio)
    seed = check_seed(seed)
    root, out = Path(root), Path(out)
    tiles = find_isprs_tiles(root, eroded=eroded)
    sides = tile_sides(tiles, seed)
    _check_sides(sides, {t.id: t.domain for t in tiles}, root)
    patches = cut_tiles(tiles, out, patch_size, eroded=eroded, tolerance=colour_tolerance)
    train_patches = [p for p in patches if sides[p.tile] == "train"]
    test_patches = [p for p in patches if sides[p.tile] == "test"]

    counts = np.array([p.counts[: ISPRS.num_classes] for p in train_patches], dtype=np.int64).reshape(-1, ISPRS.num_classes)
    member = spec.membership(counts, [p.domain for p in train_patches])
    _check_step_sizes(spec, member, split)

    domains = {}
    for domain in ISPRS_DOMAINS:
        domain_tiles = [t.id for t in tiles if t.domain == domain]
        domains[domain] = {
            "train_tiles": sum(sides[t] == "train" for t in domain_tiles),
            "test_tiles": sum(sides[t] == "test" for t in domain_tiles),
            "train_patches": sum(p.domain == domain for p in train_patches),
            "test_patches": sum(p.domain == domain for p in test_patches),
        }
    return prepare_padded(
        out=out, root=root, info=get_dataset_info(spec.dataset), split=split, spec=spec, member=member, counts=counts,
        samples=train_patches, test_samples=test_patches, label_rel=_label_rel, read_label=read_label_png,
        full_lut=ISPRS_SOURCE_TO_TRAIN, train_lut=clutter_lut(clutter), seed=seed, train_ratio=train_ratio,
        all_train=all_train, train_list="train", test_list="test", test_domains=ISPRS_DOMAINS,
        options={
            "background": background,
            "clutter": clutter,
            "patch_size": patch_size,
            "eroded": eroded,
            "colour_tolerance": colour_tolerance,
        },
        domains=domains,
    )
