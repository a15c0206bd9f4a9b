"""ISPRS 2D semantic labelling readers: Potsdam RGB and Vaihingen IRRG tiles, colour-coded labels, patches.

Layout under ``--root`` (the official archives unpacked, one folder per domain; ``Potsdam/`` and
``Vaihingen/`` are accepted too)::

    <root>/potsdam/2_Ortho_RGB/top_potsdam_<a>_<b>_RGB.tif            RGB tiles (6000 x 6000)
    <root>/potsdam/5_Labels_all/top_potsdam_<a>_<b>_label.tif         labels of all 38 tiles
    <root>/potsdam/5_Labels_for_participants/...                      or: the 24 training tiles only
    <root>/potsdam/5_Labels_all_noBoundary/top_potsdam_<a>_<b>_label_noBoundary.tif   eroded variant
    <root>/vaihingen/top/top_mosaic_09cm_area<N>.tif                  IRRG tiles (near-infrared, red, green)
    <root>/vaihingen/ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE/top_mosaic_09cm_area<N>.tif
    <root>/vaihingen/gts_for_participants/top_mosaic_09cm_area<N>.tif   or: the 16 training areas only
    <root>/vaihingen/ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE/
        top_mosaic_09cm_area<N>_noBoundary.tif                        eroded variant

Potsdam tiles and labels may also lie directly in ``<root>/potsdam/``. A tile's label is taken
from the first label folder above that holds it. Tiles are read with Pillow (8-bit, 3-band TIFF,
uncompressed, LZW or deflate); no GDAL or tifffile is needed.

Labels are colour-coded (:data:`~llseg.data.labels.ISPRS_SOURCE_CLASSES`): white impervious
surfaces, blue building, cyan low vegetation, green tree, yellow car, red clutter. They decode
to *source ids* 0..5 (5 = clutter). The eroded variants (``eroded=True``) mark boundary pixels
black, which decode to 255 (ignore). Any other colour, or black in a non-eroded label, is an
error naming the file, the colours and their pixel counts; ``tolerance`` accepts colours whose
every channel is within that distance of a table colour (for re-encoded label files).

Tile ids: ``potsdam_<a>_<b>`` and ``vaihingen_area<N>``. :func:`tile_sides` puts each tile on the
train or the test side by the standard ISPRS lists (:data:`STANDARD_TRAIN`, :data:`STANDARD_TEST`);
tiles not in them are drawn with the seed. :func:`cut_tiles` cuts tiles into patches of
``patch_size`` px on a grid (see :func:`patch_origins`: the last row and column overlap their
neighbours so that every pixel is covered) and writes them as PNG pairs; ``patch_id`` is
``<tile id>_<y>_<x>`` with the patch's top-left pixel.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from llseg.data.checks import listing
from llseg.data.imageio import PathLike, write_label_png
from llseg.data.labels import IGNORE_INDEX, ISPRS_BOUNDARY_COLOUR, ISPRS_DOMAINS, ISPRS_SOURCE_CLASSES
from llseg.data.labelwriter import STATE_DIR
from llseg.errors import ConfigError, DataError

POTSDAM, VAIHINGEN = ISPRS_DOMAINS
NUM_SOURCE_IDS = len(ISPRS_SOURCE_CLASSES)  # 0..5, clutter included

# Sub-folders searched for images and labels (in this order; "." is the domain folder itself).
IMAGE_DIRS = {POTSDAM: ("2_Ortho_RGB", "."), VAIHINGEN: ("top",)}
LABEL_DIRS = {
    POTSDAM: ("5_Labels_all", "5_Labels_for_participants", "."),
    VAIHINGEN: ("ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE", "gts_for_participants"),
}
ERODED_LABEL_DIRS = {
    POTSDAM: ("5_Labels_all_noBoundary", "."),
    VAIHINGEN: ("ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE",),
}
_IMAGE_NAME = {
    POTSDAM: re.compile(r"^top_potsdam_(\d+_\d+)_RGB\.tif$"),
    VAIHINGEN: re.compile(r"^top_mosaic_09cm_area(\d+)\.tif$"),
}

# The standard ISPRS contest split (the labelled training tiles vs the test tiles), as in mmsegmentation;
# keys are Potsdam's "<a>_<b>" and Vaihingen's area numbers. Potsdam 7_10 is often left out for label
# errors (IDEC's 2300 training patches suggest it, docs/methods.md §8.2); llseg keeps the official list.
STANDARD_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    POTSDAM: {
        "train": ("2_10", "2_11", "2_12", "3_10", "3_11", "3_12", "4_10", "4_11", "4_12", "5_10", "5_11", "5_12",
                  "6_7", "6_8", "6_9", "6_10", "6_11", "6_12", "7_7", "7_8", "7_9", "7_10", "7_11", "7_12"),
        "test": ("2_13", "2_14", "3_13", "3_14", "4_13", "4_14", "4_15", "5_13", "5_14", "5_15", "6_13", "6_14",
                 "6_15", "7_13"),
    },
    VAIHINGEN: {
        "train": ("1", "3", "5", "7", "11", "13", "15", "17", "21", "23", "26", "28", "30", "32", "34", "37"),
        "test": ("2", "4", "6", "8", "10", "12", "14", "16", "20", "22", "24", "27", "29", "31", "33", "35", "38"),
    },
}


def tile_id(domain: str, key: str) -> str:
    """Tile id of a Potsdam key ``"<a>_<b>"`` or a Vaihingen area number: ``potsdam_2_10``, ``vaihingen_area1``."""
    return f"{POTSDAM}_{key}" if domain == POTSDAM else f"{VAIHINGEN}_area{int(key)}"


def tile_files(domain: str, key: str) -> tuple[str, str]:
    """Image and full label of a tile, relative to its domain folder, in the first layout of the module docstring."""
    if domain == POTSDAM:
        return f"{IMAGE_DIRS[POTSDAM][0]}/top_potsdam_{key}_RGB.tif", f"{LABEL_DIRS[POTSDAM][0]}/top_potsdam_{key}_label.tif"
    name = f"top_mosaic_09cm_area{int(key)}.tif"
    return f"{IMAGE_DIRS[VAIHINGEN][0]}/{name}", f"{LABEL_DIRS[VAIHINGEN][0]}/{name}"


STANDARD_TRAIN: frozenset[str] = frozenset(tile_id(d, k) for d in ISPRS_DOMAINS for k in STANDARD_KEYS[d]["train"])
STANDARD_TEST: frozenset[str] = frozenset(tile_id(d, k) for d in ISPRS_DOMAINS for k in STANDARD_KEYS[d]["test"])
SEEDED_TEST_SHARE = 1 / 3  # tiles outside the standard lists: this share (rounded) goes to the test side


def _code(colour: tuple[int, int, int]) -> int:
    """3-bit code of a colour whose channels are 0 or 255: (R, G, B) high bits."""
    return (colour[0] // 255) << 2 | (colour[1] // 255) << 1 | colour[2] // 255


_INVALID = 254  # decoding marker of a colour outside the table
_CODE_TO_SOURCE = np.full(8, _INVALID, dtype=np.uint8)
_CODE_TO_SOURCE[[_code(colour) for _, colour in ISPRS_SOURCE_CLASSES]] = np.arange(len(ISPRS_SOURCE_CLASSES))
_BLACK_CODE = _code(ISPRS_BOUNDARY_COLOUR)

PATCH_STATE = "patches.json"  # in the prepared folder's .llseg/: which tiles were cut how (reused by re-runs)
_PATCH_FORMAT = 1
IMAGE_KIND, LABEL_KIND = "images", "labels/source"  # folders of the cut patches in the prepared folder


@dataclass(frozen=True)
class ISPRSTile:
    """One labelled tile of a domain (``potsdam`` or ``vaihingen``)."""

    domain: str
    id: str  # potsdam_<a>_<b> or vaihingen_area<N>
    image: Path
    label: Path


@dataclass(frozen=True)
class ISPRSPatch:
    """A patch written by :func:`cut_tiles`.

    ``counts``: pixels per source id 0..5 (5 = clutter), then ignored (255) pixels, 7 entries.
    """

    domain: str
    tile: str
    id: str
    image: Path  # RGB (Potsdam) or IRRG (Vaihingen) PNG
    label: Path  # uint8 PNG of source ids 0..5, 255 = eroded boundary
    counts: tuple[int, ...]



def _domain_dir(root: Path, domain: str) -> Path:
    for name in (domain, domain.capitalize()):
        if (root / name).is_dir():
            return root / name
    raise DataError(
        f"ISPRS layout not found: {root / domain} is missing; pass the folder that holds potsdam/ and vaihingen/ "
        "(the unpacked ISPRS archives, see llseg.data.isprs.layout), or run `llseg synth --kind aerial`"
    )




def _label_name(domain: str, image: Path, eroded: bool) -> str:
    if domain == POTSDAM:
        return image.name.replace("_RGB.tif", "_label_noBoundary.tif" if eroded else "_label.tif")
    return image.name.replace(".tif", "_noBoundary.tif") if eroded else image.name


def _natural(tile_id: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", tile_id))


def find_isprs_tiles(root: PathLike, *, eroded: bool = False) -> list[ISPRSTile]:
    """Every tile of both domains with its label, Potsdam first, ids in natural order.

    ``eroded``: read the eroded-boundary labels (``*_noBoundary``) instead of the full ones.

    Raises:
        DataError: a domain folder is missing or holds no tile, or tiles have no label.
    """
    root = Path(root)
    tiles: list[ISPRSTile] = []
    for domain in ISPRS_DOMAINS:
        folder = _domain_dir(root, domain)
        images: dict[str, Path] = {}
        for sub in IMAGE_DIRS[domain]:
            if (folder / sub).is_dir():
                for path in sorted((folder / sub).iterdir()):
                    match = _IMAGE_NAME[domain].match(path.name)
                    if match and path.is_file():
                        images.setdefault(tile_id(domain, match[1]), path)
        pattern = "top_potsdam_<a>_<b>_RGB.tif" if domain == POTSDAM else "top_mosaic_09cm_area<N>.tif"
        if not images:
            where = " or ".join(str(folder / s) for s in IMAGE_DIRS[domain])
            raise DataError(f"no {domain} tile ({pattern}) in {where}; unpack the ISPRS {domain} images there")
        label_dirs = (ERODED_LABEL_DIRS if eroded else LABEL_DIRS)[domain]
        unlabelled = []
        for tid in sorted(images, key=_natural):
            name = _label_name(domain, images[tid], eroded)
            label = next((folder / sub / name for sub in label_dirs if (folder / sub / name).is_file()), None)
            if label is None:
                unlabelled.append(name)
            else:
                tiles.append(ISPRSTile(domain, tid, images[tid], label))
        if unlabelled:
            dirs = ", ".join(f"{s}/" for s in label_dirs)
            raise DataError(
                f"{len(unlabelled)} {domain} tile(s) have no label in {folder} ({dirs}): {listing(unlabelled)}; "
                "the benchmark needs the labels of the test tiles too: unpack the complete ground truth "
                f"({label_dirs[0]}) there" + ("" if eroded else ", or pass eroded (--eroded) to use the *_noBoundary labels")
            )
    return tiles


def tile_sides(tiles: Sequence[ISPRSTile], seed: int) -> dict[str, str]:
    """Tile id -> ``"train"`` or ``"test"``: the standard ISPRS lists; per domain, tiles in neither
    list are shuffled with ``seed`` and ``round(n * SEEDED_TEST_SHARE)`` of them go to the test side."""
    sides = {t.id: "train" if t.id in STANDARD_TRAIN else "test" for t in tiles if t.id in STANDARD_TRAIN | STANDARD_TEST}
    for d, domain in enumerate(ISPRS_DOMAINS):
        other = sorted((t.id for t in tiles if t.domain == domain and t.id not in sides), key=_natural)
        order = np.random.default_rng([seed, d]).permutation(len(other))
        n_test = round(len(other) * SEEDED_TEST_SHARE)
        sides.update({other[i]: "test" if rank < n_test else "train" for rank, i in enumerate(order)})
    return sides


def decode_label_colours(rgb: np.ndarray, path: PathLike, *, eroded: bool = False, tolerance: int = 0) -> np.ndarray:
    """Source ids ``uint8 H x W`` (0..5, 5 = clutter; 255 = eroded boundary) of a colour-coded label
    ``rgb`` (``uint8 H x W x 3``) read from ``path`` (named in errors).

    Raises:
        ConfigError: ``tolerance`` outside 0..127.
        DataError: colours outside the table (black too, unless ``eroded``), with pixel counts.
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or not 0 <= tolerance <= 127:
        raise ConfigError(f"colour tolerance must be an integer in 0..127, got {tolerance!r}")
    high = rgb >= 255 - tolerance
    pure = (high | (rgb <= tolerance)).all(axis=-1)
    code = high[..., 0].astype(np.uint8) << 2 | high[..., 1].astype(np.uint8) << 1 | high[..., 2].astype(np.uint8)
    lut = _CODE_TO_SOURCE.copy()
    if eroded:
        lut[_BLACK_CODE] = IGNORE_INDEX
    ids = lut[code]
    bad = ~pure | (ids == _INVALID)
    if bad.any():
        wrong = rgb[bad].astype(np.uint32)
        colours, counts = np.unique(wrong[:, 0] << 16 | wrong[:, 1] << 8 | wrong[:, 2], return_counts=True)
        order = np.argsort(-counts, kind="stable")[:5]
        shown = ", ".join(
            f"({colours[i] >> 16}, {colours[i] >> 8 & 255}, {colours[i] & 255}) x {counts[i]}" for i in order
        )
        more = f" and {len(colours) - len(order)} other colours" if len(colours) > len(order) else ""
        table = ", ".join(f"{name} {colour}" for name, colour in ISPRS_SOURCE_CLASSES)
        hint = ""
        if not eroded and bool((bad & pure & (code == _BLACK_CODE)).any()):
            hint = "; black (0, 0, 0) marks the boundaries of the eroded *_noBoundary labels: pass eroded (--eroded) for those"
        elif tolerance == 0:
            hint = "; for a re-encoded label file, a colour tolerance (--colour-tolerance) maps near colours to the table"
        raise DataError(
            f"{path}: {int(bad.sum())} of {bad.size} pixels have colours outside the ISPRS table: {shown}{more}; "
            f"expected {table}{' and black (0, 0, 0) boundaries' if eroded else ''}{hint}"
        )
    return ids


def _read_tile(path: Path, kind: str) -> np.ndarray:
    """``uint8 H x W x 3`` of an 8-bit 3-band tile (image or colour-coded label)."""
    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode == "RGB":
                return np.asarray(img, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: unreadable or truncated {kind} ({exc}); re-download or re-unpack it") from None
    what = "a colour-coded RGB label" if kind == "label" else "an 8-bit 3-band image (RGB or IRRG)"
    raise DataError(f"{path}: mode {mode} is not {what}; use the original ISPRS file")


def load_isprs_label(path: PathLike, *, eroded: bool = False, tolerance: int = 0) -> np.ndarray:
    """Source ids ``uint8 H x W`` of a colour-coded label tile (see :func:`decode_label_colours`)."""
    path = Path(path)
    return decode_label_colours(_read_tile(path, "label"), path, eroded=eroded, tolerance=tolerance)


def patch_origins(length: int, size: int) -> list[int]:
    """Patch offsets along a side of ``length`` px: 0, size, 2·size, ...; if ``length`` is not a
    multiple of ``size``, the last patch ends at the border, overlapping its neighbour. A side of
    at most ``size`` px is one patch of its own length (offset 0)."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, size))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def _fingerprint(tile: ISPRSTile, settings: str) -> str:
    parts = [settings]
    for path in (tile.image, tile.label):
        st = os.stat(path)
        parts.append(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(array).save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, path)


def _rel(kind: str, domain: str, patch_id: str) -> str:
    return f"{kind}/{domain}/{patch_id}.png"


def cut_tiles(
    tiles: Sequence[ISPRSTile], out: PathLike, patch_size: int, *, eroded: bool = False, tolerance: int = 0
) -> list[ISPRSPatch]:
    """Cut ``tiles`` into patches of ``patch_size`` px (grid of :func:`patch_origins`) under ``out``.

    Writes ``<out>/images/<domain>/<patch id>.png`` (the tile's three bands as an RGB PNG) and
    ``<out>/labels/source/<domain>/<patch id>.png`` (source ids, see :func:`decode_label_colours`).
    Tiles whose files and settings are unchanged since the last run (``<out>/.llseg/patches.json``)
    are not re-read; patches no longer produced are deleted. Returns the patches, tile by tile,
    row-major within a tile.

    Raises:
        ConfigError: ``patch_size`` < 16 or a bad ``tolerance``.
        DataError: unreadable tiles, bad label colours, or an image and label of different sizes.
    """
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 16:
        raise ConfigError(f"patch size must be an integer >= 16 px, got {patch_size!r}")
    out = Path(out)
    state_file = out / STATE_DIR / PATCH_STATE
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        old: dict[str, Any] = state["tiles"] if state.get("format") == _PATCH_FORMAT else {}
    except (OSError, ValueError, KeyError, TypeError):
        old = {}
    settings = f"v{_PATCH_FORMAT}|size={patch_size}|eroded={int(eroded)}|tolerance={tolerance}"
    fingerprints = {t.id: _fingerprint(t, settings) for t in tiles}

    def intact(tile: ISPRSTile) -> bool:
        entry = old.get(tile.id)
        if not isinstance(entry, dict) or entry.get("fingerprint") != fingerprints[tile.id]:
            return False
        return all((out / _rel(k, tile.domain, p[0])).is_file() for p in entry["patches"] for k in (IMAGE_KIND, LABEL_KIND))

    def cut(tile: ISPRSTile) -> list[list[Any]]:
        image = _read_tile(tile.image, "image")
        label = load_isprs_label(tile.label, eroded=eroded, tolerance=tolerance)
        if image.shape[:2] != label.shape:
            raise DataError(
                f"{tile.label}: label is {label.shape[0]}x{label.shape[1]} (HxW) but its tile {tile.image} is "
                f"{image.shape[0]}x{image.shape[1]}; use the label file that belongs to this tile"
            )
        h, w = label.shape
        entries = []
        for y in patch_origins(h, patch_size):
            for x in patch_origins(w, patch_size):
                patch_id = f"{tile.id}_{y:05d}_{x:05d}"
                window = (slice(y, y + patch_size), slice(x, x + patch_size))
                _write_png(out / _rel(IMAGE_KIND, tile.domain, patch_id), np.ascontiguousarray(image[window]))
                write_label_png(out / _rel(LABEL_KIND, tile.domain, patch_id), np.ascontiguousarray(label[window]))
                counts = np.bincount(label[window].ravel(), minlength=256)
                entries.append([patch_id, [*counts[:NUM_SOURCE_IDS].tolist(), int(counts[IGNORE_INDEX])]])
        return entries

    new = {t.id: old[t.id] for t in tiles if intact(t)}
    todo = [t for t in tiles if t.id not in new]
    done = False
    try:
        with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool, tqdm(
            total=len(todo), desc="cutting tiles", unit="tile", disable=not todo, leave=False
        ) as bar:
            for tile, entries in zip(todo, pool.map(cut, todo)):
                new[tile.id] = {"fingerprint": fingerprints[tile.id], "domain": tile.domain, "patches": entries}
                bar.update()
        keep = {_rel(k, e["domain"], p[0]) for e in new.values() for p in e["patches"] for k in (IMAGE_KIND, LABEL_KIND)}
        for entry in old.values():
            for p in entry.get("patches", []) if isinstance(entry, dict) else []:
                for k in (IMAGE_KIND, LABEL_KIND):
                    rel = _rel(k, entry.get("domain", ""), p[0])
                    if rel not in keep:
                        (out / rel).unlink(missing_ok=True)
        done = True
    finally:  # an interrupted run keeps the old entries of unfinished tiles: their fingerprints force a re-cut
        state_file.parent.mkdir(parents=True, exist_ok=True)
        saved = new if done else {**old, **new}
        state_file.write_text(json.dumps({"format": _PATCH_FORMAT, "tiles": saved}), encoding="utf-8")
    return [
        ISPRSPatch(t.domain, t.id, p[0], out / _rel(IMAGE_KIND, t.domain, p[0]), out / _rel(LABEL_KIND, t.domain, p[0]),
                   tuple(p[1]))
        for t in tiles
        for p in new[t.id]["patches"]
    ]
