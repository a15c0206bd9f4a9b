"""Procedural top-down aerial tiles in the ISPRS Potsdam and Vaihingen layouts (``llseg synth --kind aerial``).

Every tile is a suburban scene drawn in four bands (red, green, blue, near-infrared) with the
six ISPRS classes:

* impervious surfaces: asphalt roads (straight, across the tile) with dashed centre lines and
  pavement sidewalks, and paved squares or parking lots;
* building: rectangular roofs, gabled (two halves lit differently, tile stripes along the slope)
  or flat (a parapet and rooftop boxes), casting a shadow;
* low vegetation: the grass everywhere else, with smooth patches;
* tree: clusters of round crowns, textured, lit from the top left, casting shadows;
* car: small rectangles with windows, in lanes and parking rows;
* clutter: tarps, containers, soil heaps and ponds.

Both domains draw their scenes from the same distribution; only the band mapping differs:
Potsdam-like tiles are RGB (red, green, blue), Vaihingen-like tiles are IRRG (near-infrared,
red, green), so vegetation, bright in the near-infrared, looks red there. Shadows keep the
label of the ground they fall on, as in the ISPRS labels.

Files (the layout :mod:`llseg.data.isprs.layout` reads; tile keys are the first ones of the standard
ISPRS lists, so the standard train/test assignment applies)::

    <out>/potsdam/2_Ortho_RGB/top_potsdam_<a>_<b>_RGB.tif          RGB, deflate-compressed TIFF
    <out>/potsdam/5_Labels_all/top_potsdam_<a>_<b>_label.tif       colour-coded label
    <out>/vaihingen/top/top_mosaic_09cm_area<N>.tif                IRRG
    <out>/vaihingen/ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE/top_mosaic_09cm_area<N>.tif
    <out>/llseg_synthetic_aerial.json                              sidecar (see below)

Per domain :data:`TRAIN_TILES` train and :data:`TEST_TILES` test tiles of :data:`DEFAULT_SIZE`
(384x384 HxW), written in a few seconds. Object sizes are in pixels (about a 16 x 31 px car, 36 to
110 px buildings), so larger tiles show more objects, not larger ones. The sidecar holds
``generator``, ``version``, ``args`` (seed, size), ``complete``, ``tiles`` (domain -> side -> keys),
``class_pixels`` and ``class_tiles`` (domain -> class name -> pixels / tiles containing it).
The same arguments give byte-identical files; each tile is seeded from (seed, domain, key).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from llseg.data.checks import check_out_dir, check_seed, check_size
from llseg.data.generator import Sidecar, reuse_or_generate
from llseg.data.isprs.layout import STANDARD_KEYS, tile_files
from llseg.data.isprs.scene import AerialScene
from llseg.data.labels import ISPRS_DOMAINS, ISPRS_SOURCE_CLASSES

GENERATOR = "llseg.data.synthetic_aerial"  # sidecar id: the module's original path, kept so sidecars stay byte-identical
GENERATOR_VERSION = 1
DEFAULT_SIZE: tuple[int, int] = (384, 384)
TRAIN_TILES, TEST_TILES = 12, 4  # per domain
SIDECAR_NAME = "llseg_synthetic_aerial.json"
# Bands of the four-band scene each domain's tiles show, in file channel order.
BANDS = {"potsdam": (0, 1, 2), "vaihingen": (3, 0, 1)}  # R, G, B / NIR, R, G

_NAMES = tuple(name for name, _ in ISPRS_SOURCE_CLASSES)
_COLOURS = np.asarray([colour for _, colour in ISPRS_SOURCE_CLASSES], dtype=np.uint8)


@dataclass(frozen=True)
class AerialSummary:
    """What :func:`generate_aerial_dataset` wrote (or found already written).

    ``class_share``: per domain, the share of its pixels in each class (clutter included).
    """

    out: Path
    tiles: dict[str, dict[str, int]]  # domain -> side -> tile count
    size: tuple[int, int]  # (H, W)
    seed: int
    class_share: dict[str, dict[str, float]]
    seconds: float
    reused: bool  # True: matching files were already there, nothing was written

    def __str__(self) -> str:
        h, w = self.size
        action = "reused existing files" if self.reused else "generated"
        lines = [
            f"synthetic aerial dataset (ISPRS Potsdam + Vaihingen layout) in {self.out} ({action} in {self.seconds:.1f} s)",
            f"  tiles {h}x{w} (HxW), seed {self.seed}: "
            + "; ".join(f"{d} {n['train']} train + {n['test']} test" for d, n in self.tiles.items()),
        ]
        for domain, shares in self.class_share.items():
            lines.append(f"  {domain} pixels: " + ", ".join(f"{n} {100 * v:.1f}%" for n, v in shares.items()))
        return "\n".join(lines)


def synthetic_keys() -> dict[str, dict[str, tuple[str, ...]]]:
    """Tile keys written per domain and side: the first of the standard ISPRS lists."""
    counts = {"train": TRAIN_TILES, "test": TEST_TILES}
    return {d: {side: STANDARD_KEYS[d][side][:n] for side, n in counts.items()} for d in ISPRS_DOMAINS}


def generate_aerial_dataset(
    out: str | Path, *, seed: int = 0, size: Sequence[int] | None = None
) -> AerialSummary:
    """Write the synthetic aerial dataset under ``out`` (ISPRS layout) and summarise it.

    Args:
        out: output folder, created if needed. Only its ``potsdam/``, ``vaihingen/`` and the
            sidecar are ever written or removed.
        seed: non-negative base seed; another seed gives other scenes.
        size: ``(H, W)`` of every tile, both >= 16; ``None``: :data:`DEFAULT_SIZE`.

    If the sidecar says a complete dataset with the same arguments and generator version is
    there (and all its files exist), nothing is written; otherwise everything is regenerated.

    Raises:
        ConfigError: an argument is invalid.
        DataError: ``out`` is a file, or holds ``potsdam/`` or ``vaihingen/`` not written by this
            generator (no sidecar): a real dataset is never deleted.
    """
    start = time.perf_counter()
    h, w = check_size(size, DEFAULT_SIZE)
    seed = check_seed(seed)
    out = check_out_dir(out)
    args = {"seed": seed, "size": [h, w]}
    keys = synthetic_keys()
    files = [out / d / f for d in ISPRS_DOMAINS for side in keys[d].values() for k in side for f in tile_files(d, k)]

    def write() -> dict[str, Any]:
        pixels = {d: np.zeros(len(_NAMES), dtype=np.int64) for d in ISPRS_DOMAINS}
        present = {d: np.zeros(len(_NAMES), dtype=np.int64) for d in ISPRS_DOMAINS}
        plan = [(d, i, k) for i, d in enumerate(ISPRS_DOMAINS) for side in keys[d].values() for k in side]
        for domain, code, key in tqdm(plan, desc="llseg synth aerial", unit="tile", disable=None):
            rng = np.random.default_rng([seed, code, *(int(p) for p in key.split("_"))])
            bands, label = render_scene(rng, h, w)
            image_rel, label_rel = tile_files(domain, key)
            for rel, array in ((image_rel, bands[..., list(BANDS[domain])]), (label_rel, _COLOURS[label])):
                (out / domain / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.ascontiguousarray(array)).save(out / domain / rel, format="TIFF", compression="tiff_deflate")
            counts = np.bincount(label.ravel(), minlength=len(_NAMES))
            pixels[domain] += counts
            present[domain] += counts > 0
        return {
            "class_pixels": {d: {n: int(v) for n, v in zip(_NAMES, pixels[d])} for d in ISPRS_DOMAINS},
            "class_tiles": {d: {n: int(v) for n, v in zip(_NAMES, present[d])} for d in ISPRS_DOMAINS},
        }

    sidecar, reused = reuse_or_generate(
        out,
        Sidecar(out / SIDECAR_NAME, GENERATOR, GENERATOR_VERSION, args, required=("class_pixels", "tiles")),
        files=files,
        trees=[out / d for d in ISPRS_DOMAINS],
        holds="ISPRS folders (potsdam/, vaihingen/)",
        command="llseg synth --kind aerial",
        header={"tiles": {d: {side: list(k) for side, k in keys[d].items()} for d in ISPRS_DOMAINS}},
        write=write,
    )
    return _summary(out, sidecar, time.perf_counter() - start, reused=reused)


def render_scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """One random scene: ``(bands uint8 (h, w, 4) R, G, B, NIR; label uint8 (h, w) source ids 0..5)``."""
    scene = AerialScene(rng, h, w)
    scene.draw()
    return scene.finish(), scene.label


# ------------------------------------------------------------------------------ dataset helpers


def _summary(out: Path, sidecar: dict[str, Any], seconds: float, reused: bool) -> AerialSummary:
    args = sidecar["args"]
    shares = {}
    for domain, pixels in sidecar["class_pixels"].items():
        total = max(sum(pixels.values()), 1)
        shares[domain] = {n: v / total for n, v in pixels.items()}
    return AerialSummary(
        out=out,
        tiles={d: {side: len(k) for side, k in sides.items()} for d, sides in sidecar["tiles"].items()},
        size=(args["size"][0], args["size"][1]),
        seed=args["seed"],
        class_share=shares,
        seconds=seconds,
        reused=reused,
    )
