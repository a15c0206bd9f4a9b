"""Procedural street scenes written in the exact Cityscapes layout (``llseg synth``).

Each image is a cartoon street seen from a car: sky on top, buildings, walls and trees behind,
a perspective road at the bottom with sidewalks and terrain beside it, fences and hedges along
the sidewalk edge, poles carrying traffic lights and signs, and vehicles, persons and riders
(on bicycles or motorcycles) on the road and sidewalks. All 19 Cityscapes train classes occur;
each has its own shape, colour range and texture, but colour ranges overlap and every texture is
noisy, so a network needs shape and context, not just per-pixel colour.

Files (``<stem>`` = ``<city>_<seq:06d>_000019``)::

    <out>/leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png        RGB uint8
    <out>/gtFine/<split>/<city>/<stem>_gtFine_labelIds.png         mode "L", raw Cityscapes ids
    <out>/llseg_synthetic.json                                     sidecar (see below)

Label PNGs hold raw Cityscapes label ids (road = 7, sky = 23, car = 26, ...) plus the void ids
0 "unlabeled", 1 "ego vehicle", 4 "static" and 9 "parking"; ``CITYSCAPES.id_to_train_id`` maps
them to train ids 0..18 (0 = road; Cityscapes has no background class) and 255 = ignore.

Splits: ``train`` holds all 18 ``CITYSCAPES_TRAIN_CITIES``, ``val`` the 3 ``CITYSCAPES_VAL_CITIES``,
``images_per_city`` images each. Every image has a visual domain, ``clear``, ``dusk`` or ``fog``:
a global colour/contrast/haze change, never different geometry. Per city every third image is
non-clear (alternately dusk and fog), so all city groups have about the same domain mix.

The sidecar ``llseg_synthetic.json`` holds ``generator``, ``version``, ``args`` (seed, size,
images_per_city), ``complete``, ``splits`` (split -> cities), ``class_pixels`` (split -> class
name or ``"ignore"`` -> pixel count) and ``images`` (``"<split>/<city>/<stem>"`` -> domain).

Defaults: 128x256 (HxW, the Cityscapes 1:2 aspect) and 12 images per city, i.e. 216 train and 36
val images. That is enough for every class to be frequent in every Klingner city group (48 to
84 images per task), small enough for an ERFNet to train for tens of epochs on a CPU, and it is
written in a few seconds. The same arguments give byte-identical files (with the same numpy
and Pillow versions); each image's generator is seeded from (seed, split, city, index).
"""
from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
from PIL import Image
from tqdm import tqdm

from llseg.data.labels import (
    CITYSCAPES,
    CITYSCAPES_LABELS,
    CITYSCAPES_TRAIN_CITIES,
    CITYSCAPES_VAL_CITIES,
    IGNORE_INDEX,
)
from llseg.data.procedural import (
    CLOTHES,
    SKIN,
    VEHICLE_COLOURS,
    Colour,
    Stencil,
    check_out_dir,
    check_seed,
    check_size,
    clear_generated,
    foliage,
    grey,
    pick,
    read_sidecar,
    rgb,
    smooth_noise,
    write_json,
)
from llseg.errors import ConfigError

GENERATOR_VERSION = 1
DEFAULT_SIZE: tuple[int, int] = (128, 256)
DEFAULT_IMAGES_PER_CITY = 12
DOMAINS: tuple[str, ...] = ("clear", "dusk", "fog")
SIDECAR_NAME = "llseg_synthetic.json"
SPLIT_CITIES: dict[str, tuple[str, ...]] = {"train": CITYSCAPES_TRAIN_CITIES, "val": CITYSCAPES_VAL_CITIES}
FRAME = 19  # Cityscapes' annotated frame number

_ID: dict[str, int] = {lab.name: lab.id for lab in CITYSCAPES_LABELS}
_LUT: np.ndarray = CITYSCAPES.id_to_train_id  # type: ignore[assignment]  # set for Cityscapes
_PPM = 0.3  # pixels per metre at the bottom image row, as a fraction of the image height
_PNG_LEVEL = 3  # fixed zlib level: reproducible bytes, fast writes



# ----------------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate_city_dataset` wrote (or found already written).

    ``class_share`` is the share of train-split pixels per train class name, plus ``"ignore"``
    for pixels whose raw id maps to 255.
    """

    out: Path
    images: dict[str, int]  # split -> image count
    size: tuple[int, int]  # (H, W)
    seed: int
    images_per_city: int
    domains: dict[str, int]  # domain -> image count over all splits
    class_share: dict[str, float]
    seconds: float
    reused: bool  # True: matching files were already there, nothing was written

    def __str__(self) -> str:
        h, w = self.size
        action = "reused existing files" if self.reused else "generated"
        split_text = ", ".join(f"{split} {n} ({len(SPLIT_CITIES[split])} cities)" for split, n in self.images.items())
        shares = ", ".join(f"{name} {100 * share:.1f}%" for name, share in self.class_share.items())
        return "\n".join((
            f"synthetic city dataset in {self.out} ({action} in {self.seconds:.1f} s)",
            f"  images: {split_text}; {self.images_per_city} per city; size {h}x{w} (HxW); seed {self.seed}",
            "  domains: " + ", ".join(f"{d} {n}" for d, n in self.domains.items()),
            f"  train pixel share: {shares}",
        ))


def generate_city_dataset(
    out: Union[str, Path],
    *,
    seed: int = 0,
    size: Optional[Sequence[int]] = None,
    images_per_city: Optional[int] = None,
) -> SynthSummary:
    """Write the synthetic city dataset under ``out`` (Cityscapes layout) and summarise it.

    Args:
        out: output folder, created if needed. Only its ``leftImg8bit/``, ``gtFine/`` and
            ``llseg_synthetic.json`` are ever written or removed.
        seed: non-negative base seed; another seed gives other images.
        size: ``(H, W)`` of every image, both >= 16; ``None``: :data:`DEFAULT_SIZE`.
        images_per_city: images per city in each split, >= 1; ``None``:
            :data:`DEFAULT_IMAGES_PER_CITY`.

    If the sidecar says a complete dataset with the same arguments and generator version is
    there (and all its files exist), nothing is written. Otherwise the old ``leftImg8bit/`` and
    ``gtFine/`` trees are removed and everything is regenerated.

    Raises:
        ConfigError: an argument is invalid.
        DataError: ``out`` is a file, or holds ``leftImg8bit/``/``gtFine/`` not written by this
            generator (no sidecar): a real dataset is never deleted.
    """
    start = time.perf_counter()
    h, w = check_size(size, DEFAULT_SIZE)
    n = _check_count(images_per_city)
    seed = check_seed(seed)
    out = check_out_dir(out)
    args = {"seed": seed, "size": [h, w], "images_per_city": n}
    plan = _plan(n)
    sidecar_path = out / SIDECAR_NAME

    old = read_sidecar(sidecar_path)
    if old is not None and _is_complete_match(old, args, out, plan):
        return _summary(out, old, time.perf_counter() - start, reused=True)
    clear_generated(out, sidecar_path, [out / "leftImg8bit", out / "gtFine"],
                    holds="leftImg8bit/ or gtFine/", command="llseg synth")
    out.mkdir(parents=True, exist_ok=True)

    sidecar: dict[str, Any] = {
        "generator": "llseg.data.synthetic",
        "version": GENERATOR_VERSION,
        "args": args,
        "complete": False,  # set once every file is written; an interrupted run is regenerated
        "splits": {split: list(cities) for split, cities in SPLIT_CITIES.items()},
    }
    write_json(sidecar_path, sidecar)
    counts = {split: np.zeros(256, dtype=np.int64) for split in SPLIT_CITIES}
    images: dict[str, str] = {}
    for split, city, index, domain in tqdm(plan, desc="llseg synth", unit="img", disable=None):
        rng = np.random.default_rng([seed, _SPLIT_CODE[split], zlib.crc32(city.encode()), index])
        rgb, label = render_scene(rng, h, w, domain)
        stem = f"{city}_{index:06d}_{FRAME:06d}"
        for kind, arr, suffix in (("leftImg8bit", rgb, "_leftImg8bit.png"), ("gtFine", label, "_gtFine_labelIds.png")):
            folder = out / kind / split / city
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(folder / f"{stem}{suffix}", format="PNG", compress_level=_PNG_LEVEL)
        counts[split] += np.bincount(label.ravel(), minlength=256)
        images[f"{split}/{city}/{stem}"] = domain
    sidecar["complete"] = True
    sidecar["class_pixels"] = {split: _class_pixels(c) for split, c in counts.items()}
    sidecar["images"] = images
    write_json(sidecar_path, sidecar)
    return _summary(out, sidecar, time.perf_counter() - start, reused=False)


def domain_of(index: int, city_position: int) -> str:
    """Visual domain of image ``index`` of the city at ``city_position`` in its split's city list.

    Every third image is non-clear, alternately dusk and fog; the city position shifts the
    pattern so that small ``images_per_city`` still yield every domain across cities.
    """
    k = index + city_position
    if k % 3 != 2:
        return "clear"
    return "dusk" if (k // 3) % 2 == 0 else "fog"


def render_scene(rng: np.random.Generator, h: int, w: int, domain: str) -> tuple[np.ndarray, np.ndarray]:
    """One random street scene: ``(rgb uint8 (h, w, 3), label uint8 (h, w))`` with raw Cityscapes ids."""
    if domain not in DOMAINS:
        raise ConfigError(f"unknown domain {domain!r}; valid: {', '.join(DOMAINS)}")
    scene = _Scene(rng, h, w)
    scene.draw()
    return _finish(scene, domain), scene.label


# ------------------------------------------------------------------------------ dataset helpers

_SPLIT_CODE = {"train": 0, "val": 1}
_PlanItem = tuple[str, str, int, str]  # (split, city, index, domain)


def _check_count(images_per_city: Optional[int]) -> int:
    if images_per_city is None:
        return DEFAULT_IMAGES_PER_CITY
    if isinstance(images_per_city, bool) or not isinstance(images_per_city, int) or images_per_city < 1:
        raise ConfigError(f"images_per_city must be an integer >= 1, got {images_per_city!r}")
    return images_per_city


def _plan(n: int) -> list[_PlanItem]:
    """``(split, city, index, domain)`` of every image, in writing order."""
    return [
        (split, city, index, domain_of(index, pos))
        for split, cities in SPLIT_CITIES.items()
        for pos, city in enumerate(cities)
        for index in range(n)
    ]


def _is_complete_match(old: dict[str, Any], args: dict[str, Any], out: Path, plan: list[_PlanItem]) -> bool:
    if old.get("version") != GENERATOR_VERSION or old.get("args") != args or old.get("complete") is not True:
        return False
    if not isinstance(old.get("images"), dict) or not isinstance(old.get("class_pixels"), dict):
        return False
    for split, city, index, _ in plan:
        stem = f"{city}_{index:06d}_{FRAME:06d}"
        if not (out / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png").is_file():
            return False
        if not (out / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png").is_file():
            return False
    return True


def _class_pixels(id_counts: np.ndarray) -> dict[str, int]:
    """Raw-id histogram ``int[256]`` -> pixel count per train class name and ``"ignore"``."""
    train = np.bincount(_LUT, weights=id_counts, minlength=256).astype(np.int64)
    result = {name: int(train[i]) for i, name in enumerate(CITYSCAPES.class_names)}
    result["ignore"] = int(train[IGNORE_INDEX])
    return result


def _summary(out: Path, sidecar: dict[str, Any], seconds: float, reused: bool) -> SynthSummary:
    args = sidecar["args"]
    images = sidecar["images"]
    per_split = {split: sum(key.startswith(split + "/") for key in images) for split in SPLIT_CITIES}
    domains = {d: sum(v == d for v in images.values()) for d in DOMAINS}
    pixels = sidecar["class_pixels"]["train"]
    total = max(sum(pixels.values()), 1)
    return SynthSummary(
        out=out,
        images=per_split,
        size=(args["size"][0], args["size"][1]),
        seed=args["seed"],
        images_per_city=args["images_per_city"],
        domains=domains,
        class_share={name: pixels[name] / total for name in (*CITYSCAPES.class_names, "ignore")},
        seconds=seconds,
        reused=reused,
    )


# ------------------------------------------------------------------------------------- drawing


_FACADES = ((150, 150, 150), (195, 175, 145), (150, 85, 65), (210, 205, 195), (105, 100, 95), (175, 160, 120))
_LAMPS = ((235, 45, 35), (240, 175, 35), (45, 225, 120))


class _Scene:
    """One street scene being painted back to front.

    ``label`` is ``uint8 (h, w)`` of raw Cityscapes ids; ``rgb`` is ``float32 (h, w, 3)``. Ground
    geometry: horizon row ``yh``, vanishing column ``vx``; a ground point at depth parameter
    ``t = (y - yh) / (h - yh)`` (0 at the horizon, 1 at the bottom row) and lateral position ``X``
    (in image widths at the bottom row) is at ``x = vx + X * t * w``; ``ppm(t)`` pixels per metre.
    """

    def __init__(self, rng: np.random.Generator, h: int, w: int) -> None:
        self.rng, self.h, self.w = rng, h, w
        self.label = np.zeros((h, w), dtype=np.uint8)
        self.rgb = np.zeros((h, w, 3), dtype=np.float32)
        self.grain = rng.standard_normal((h, w)).astype(np.float32)
        self.blob = smooth_noise(rng, h, w, max(2, h // 40))
        self.cloud = smooth_noise(rng, h, w, max(4, h // 6))
        self.yh = h * rng.uniform(0.36, 0.47)
        self.vx = w * rng.uniform(0.38, 0.62)
        # Ground layout: road from -road_l to road_r, sidewalks beyond, then terrain/sidewalk/parking.
        self.road_l, self.road_r = rng.uniform(0.3, 0.55, 2)
        self.walk_l, self.walk_r = rng.uniform(0.1, 0.25, 2)

    # geometry
    def y_at(self, t: float) -> float:
        return self.yh + t * (self.h - self.yh)

    def x_at(self, lateral: float, t: float) -> float:
        return self.vx + lateral * t * self.w

    def ppm(self, t: float) -> float:
        return _PPM * self.h * t

    def stencil(self, pts: Sequence[tuple[float, float]]) -> Stencil:
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return Stencil(self.h, self.w, min(xs), min(ys), max(xs), max(ys))

    def paint(self, name: str, st: Stencil, colour: Colour, grain: float = 4.0, blob: float = 0.0,
              mask: Optional[np.ndarray] = None) -> None:
        """Label the stencil's pixels (or ``mask``, ``bool`` box-shaped) ``name``; colour = ``colour`` + noise."""
        if st.empty:
            return
        m = st.mask() if mask is None else mask
        if not m.any():
            return
        sl = st.slices
        self.label[sl][m] = _ID[name]
        tex = np.broadcast_to(colour, (st.bh, st.bw, 3))[m]
        noise = grain * self.grain[sl][m] + blob * self.blob[sl][m]
        self.rgb[sl][m] = tex + noise[:, None]

    # whole scene
    def draw(self) -> None:
        rng = self.rng
        self.sky()
        self.buildings()
        if rng.random() < 0.35:
            self.far_band("vegetation")
        if rng.random() < 0.3:
            self.far_band("wall")
        self.ground()
        items: list[tuple[float, Callable[[], None]]] = []
        self.plan_side_structures(items)
        self.plan_street_furniture(items)
        self.plan_traffic(items)
        items.sort(key=lambda item: item[0])  # far (small t) first; stable for equal t
        for _, draw in items:
            draw()
        self.void_overlays()

    def sky(self) -> None:
        rng, h, w = self.rng, self.h, self.w
        if rng.random() < 0.3:  # overcast: grey, like buildings and road
            top = grey(rng, 140, 200, 5)
            bottom = top + rng.uniform(5, 25)
        else:
            top = rgb(rng, (50, 95, 165), (115, 155, 230))
            bottom = rgb(rng, (150, 170, 200), (215, 225, 250))
        ramp = np.clip(np.arange(h, dtype=np.float32) / max(self.yh, 1.0), 0, 1)[:, None, None]
        colour = top * (1 - ramp) + bottom * ramp
        clouds = np.clip(self.cloud * rng.uniform(0.6, 1.2) - rng.uniform(0.0, 0.6), 0, 1)[..., None]
        colour = colour * (1 - clouds) + grey(rng, 215, 245, 3) * clouds
        self.paint("sky", Stencil(h, w, 0, 0, w, h).rect(0, 0, w, h), colour, grain=2.0)

    def buildings(self) -> None:
        rng, h, w = self.rng, self.h, self.w
        x = -rng.uniform(0, 0.1) * w
        while x < w:
            bw = rng.uniform(0.1, 0.32) * w
            if rng.random() < 0.18:  # a gap showing sky
                x += rng.uniform(0.03, 0.12) * w
                continue
            top = self.yh - rng.uniform(0.12, 0.45) * h
            st = Stencil(h, w, x, top, x + bw, self.yh + 2).rect(x, top, x + bw, self.yh + 2)
            if not st.empty:
                ys, xs = st.grid()
                px, py = rng.uniform(0.025, 0.05) * w, rng.uniform(0.05, 0.09) * h
                fx, fy = rng.uniform(0.35, 0.7), rng.uniform(0.35, 0.65)
                windows = (((xs - x) / px) % 1 < fx) & (((ys - top) / py) % 1 < fy) & (ys > top + 0.4 * py)
                glass = rgb(rng, (35, 45, 60), (95, 105, 130))
                facade = pick(rng, _FACADES, 20)
                colour = np.where(windows[..., None], glass, facade)
                colour[ys[:, 0] < top + 1.5] *= 0.75  # darker roof edge
                self.paint("building", st, colour, grain=4.0, blob=6.0)
            x += bw

    def far_band(self, name: str) -> None:
        """A hedge or wall across part of the skyline, in front of the buildings."""
        rng, h, w = self.rng, self.h, self.w
        x0 = rng.uniform(-0.2, 0.7) * w
        x1 = x0 + rng.uniform(0.2, 0.6) * w
        top = self.yh - rng.uniform(0.04, 0.1) * h
        st = Stencil(h, w, x0, top, x1, self.yh + 2)
        if name == "vegetation":
            bumps = [(x0 + f * (x1 - x0), top + rng.uniform(-0.03, 0.02) * h) for f in np.linspace(0, 1, 7)]
            st.polygon([(x0, self.yh + 2), *bumps, (x1, self.yh + 2)])
            self.paint("vegetation", st, foliage(rng), grain=8.0, blob=22.0)
        else:
            st.rect(x0, top, x1, self.yh + 2)
            self.paint("wall", st, self.brick_colour(st, pick(rng, _FACADES, 20)), grain=5.0, blob=3.0)

    def brick_colour(self, st: Stencil, base: Colour) -> Colour:
        ys, xs = st.grid()
        course = max(2.0, self.h / 40)
        row = np.floor(ys / course)
        mortar = ((ys % course) < 0.8) | (((xs + row * course) % (2.5 * course)) < 0.8)
        return np.where(mortar[..., None], base * 1.25 + 10, base)

    def ground(self) -> None:
        rng, h, w = self.rng, self.h, self.w
        y0 = math.ceil(self.yh)
        st = Stencil(h, w, 0, y0, w, h)
        ys, xs = st.grid()
        t = np.maximum((ys - self.yh) / (h - self.yh), 1e-3)
        lateral = (xs - self.vx) / (t * w)  # (bh, bw)
        depth = 1.0 / t
        below = np.broadcast_to(ys >= self.yh, lateral.shape)
        left, right = below & (lateral < 0), below & (lateral >= 0)
        road = below & (lateral > -self.road_l) & (lateral < self.road_r)
        walk_out_l, walk_out_r = -self.road_l - self.walk_l, self.road_r + self.walk_r
        walk = below & ~road & (lateral > walk_out_l) & (lateral < walk_out_r)
        outer = below & ~road & ~walk

        # Outer ground per side: terrain, more sidewalk, or parking (void, road-like).
        kinds = rng.choice(["terrain", "sidewalk", "parking"], size=2, p=[0.6, 0.28, 0.12])
        for side_mask, kind in ((left, kinds[0]), (right, kinds[1])):
            if kind == "sidewalk":
                walk = walk | (outer & side_mask)
        self.paint("sidewalk", st, self.pavement(lateral, depth), grain=5.0, blob=3.0, mask=walk)
        for side_mask, kind in ((left, kinds[0]), (right, kinds[1])):
            region = outer & side_mask
            if kind == "terrain":
                colour = rgb(rng, (85, 100, 45), (150, 165, 95))
                self.paint("terrain", st, colour, grain=14.0, blob=6.0, mask=region)
            elif kind == "parking":
                lines = (lateral % 0.12) < 0.012
                colour = np.where(lines[..., None], grey(rng, 185, 225, 4), grey(rng, 70, 125, 6))
                self.paint("parking", st, colour, grain=7.0, blob=6.0, mask=region)

        # Road: asphalt with dashed centre line, solid edge lines, sometimes a zebra crossing.
        asphalt = grey(rng, 65, 130, 6)
        paint_white = grey(rng, 185, 230, 4)
        centre = (self.road_r - self.road_l) / 2 + rng.uniform(-0.05, 0.05)
        marks = (np.abs(lateral - centre) < 0.012) & ((depth * rng.uniform(0.5, 1.0)) % 1 < 0.5)
        if rng.random() < 0.5:
            marks |= (np.abs(lateral + self.road_l - 0.03) < 0.008) | (np.abs(lateral - self.road_r + 0.03) < 0.008)
        if rng.random() < 0.3:
            t0 = rng.uniform(0.25, 0.7)
            marks |= (t > t0) & (t < t0 + 0.12) & ((lateral % 0.08) < 0.04)
        self.paint("road", st, np.where(marks[..., None], paint_white, asphalt), grain=7.0, blob=6.0, mask=road)

    def pavement(self, lateral: np.ndarray, depth: np.ndarray) -> Colour:
        """Sidewalk tiles in perspective: joints along and across the street."""
        rng = self.rng
        base = pick(rng, ((150, 150, 150), (175, 165, 145), (160, 115, 100), (120, 120, 125)), 20)
        tile = rng.uniform(0.04, 0.08)
        joints = ((np.abs(lateral) % tile) < 0.15 * tile) | ((depth * rng.uniform(2.0, 4.0)) % 1 < 0.12)
        return np.where(joints[..., None], base * 0.7, base)

    # side structures: walls, fences and hedges along the outer sidewalk edge, and trees
    def side_quad(self, lateral: float, t0: float, t1: float, height_m: float) -> list[tuple[float, float]]:
        """Corners of a vertical strip standing on the ground line ``lateral`` from ``t0`` to ``t1``."""
        b0, b1 = (self.x_at(lateral, t0), self.y_at(t0)), (self.x_at(lateral, t1), self.y_at(t1))
        return [b0, b1, (b1[0], b1[1] - height_m * self.ppm(t1)), (b0[0], b0[1] - height_m * self.ppm(t0))]

    def plan_side_structures(self, items: list[tuple[float, Callable[[], None]]]) -> None:
        rng = self.rng
        for side in (-1, 1):
            edge = -self.road_l - self.walk_l if side < 0 else self.road_r + self.walk_r
            for name, p, (lo, hi) in (("wall", 0.35, (1.0, 2.5)), ("fence", 0.5, (1.0, 2.0)),
                                      ("vegetation", 0.25, (0.8, 1.6))):  # height range in metres
                if rng.random() < p:
                    lateral = edge + side * rng.uniform(0.0, 0.15)
                    t0 = rng.uniform(0.03, 0.5)
                    t1 = min(t0 + rng.uniform(0.2, 0.7), 1.3)
                    height = rng.uniform(lo, hi)
                    items.append((t0, lambda n=name, q=self.side_quad(lateral, t0, t1, height): self.strip(n, q)))
            for _ in range(int(rng.integers(0, 3))):
                t = rng.uniform(0.05, 0.55)
                lateral = edge + side * rng.uniform(-0.05, 0.3)
                items.append((t, lambda la=lateral, tt=t: self.tree(la, tt)))

    def strip(self, name: str, quad: list[tuple[float, float]]) -> None:
        rng = self.rng
        st = self.stencil(quad).polygon(quad)
        if name == "wall":
            self.paint("wall", st, self.brick_colour(st, pick(rng, _FACADES, 20)), grain=5.0, blob=3.0)
        elif name == "fence":
            ys, xs = st.grid()
            period = max(3.0, self.h / 32)
            mesh = ((xs + ys) % period < 1.0) | ((xs - ys) % period < 1.0)
            base = pick(rng, ((150, 150, 155), (130, 100, 70), (70, 90, 70), (95, 95, 100)), 15)
            self.paint("fence", st, np.where(mesh[..., None], base * 1.35 + 15, base * 0.6), grain=4.0, blob=2.0)
        else:
            self.paint("vegetation", st, foliage(rng), grain=8.0, blob=22.0)

    def tree(self, lateral: float, t: float) -> None:
        rng = self.rng
        x, y, k = self.x_at(lateral, t), self.y_at(t), self.ppm(t)
        height, radius = rng.uniform(5, 10) * k, rng.uniform(1.5, 3.0) * k
        trunk_w = max(1.0, 0.35 * k)
        cy = y - height + radius
        parts = [(x + rng.uniform(-0.6, 0.6) * radius, cy + rng.uniform(-0.4, 0.4) * radius,
                  radius * rng.uniform(0.6, 1.0), radius * rng.uniform(0.5, 0.9)) for _ in range(4)]
        st = Stencil(self.h, self.w, x - 1.7 * radius, y - height - radius, x + 1.7 * radius, y)
        st.rect(x - trunk_w / 2, cy, x + trunk_w / 2, y)
        self.paint("vegetation", st, rgb(rng, (60, 40, 25), (115, 90, 60)), grain=6.0)
        crown = Stencil(self.h, self.w, x - 1.7 * radius, y - height - radius, x + 1.7 * radius, y)
        for cx, cyy, rx, ry in parts:
            crown.ellipse(cx, cyy, rx, ry)
        self.paint("vegetation", crown, foliage(rng), grain=8.0, blob=22.0)

    # poles, traffic lights and signs, static void objects
    def plan_street_furniture(self, items: list[tuple[float, Callable[[], None]]]) -> None:
        rng = self.rng
        n_poles = int(rng.choice([1, 2, 2, 3, 3, 4]))
        for i in range(n_poles):
            side = -1 if rng.random() < 0.5 else 1
            lateral = (-self.road_l - self.walk_l * rng.uniform(0.2, 0.8) if side < 0
                       else self.road_r + self.walk_r * rng.uniform(0.2, 0.8))
            t = rng.uniform(0.1, 0.75)
            light = rng.random() < (0.75 if i == 0 else 0.35)
            sign = rng.random() < (0.45 if light else 0.9)
            items.append((t, lambda la=lateral, tt=t, s=side, li=light, si=sign: self.pole(la, tt, s, li, si)))
        for _ in range(int(rng.integers(0, 3))):
            lateral = rng.choice([-1, 1]) * (rng.uniform(0.3, 0.7) + 0.2)
            t = rng.uniform(0.15, 0.8)
            items.append((t, lambda la=lateral, tt=t: self.static_object(la, tt)))

    def pole(self, lateral: float, t: float, side: int, light: bool, sign: bool) -> None:
        rng, h, w = self.rng, self.h, self.w
        x, y, k = self.x_at(lateral, t), self.y_at(t), self.ppm(t)
        top = y - rng.uniform(3.5, 6.0) * k
        width = max(1.0, 0.18 * k)
        metal = grey(rng, 85, 165, 6)
        st = Stencil(h, w, x - width, top, x + width, y).rect(x - width / 2, top, x + width / 2, y)
        if light:
            arm = rng.random() < 0.4
            lx = x - side * rng.uniform(1.5, 3.5) * k if arm else x - side * 0.35 * k
            if arm:
                st = Stencil(h, w, min(x, lx) - width, top - width, max(x, lx) + width, y)
                st.rect(x - width / 2, top, x + width / 2, y).line([(x, top), (lx, top)], width)
            self.paint("pole", st, metal, grain=3.0)
            bw, bh = 0.4 * k, 1.0 * k
            ly = top + (0.1 * k if arm else 0.0)
            box = Stencil(h, w, lx - bw / 2, ly, lx + bw / 2, ly + bh).rect(lx - bw / 2, ly, lx + bw / 2, ly + bh)
            ys, xs = box.grid()
            lit = int(rng.integers(3))
            colour = np.broadcast_to(grey(rng, 25, 70, 5), (box.bh, box.bw, 3)).copy()
            for i in range(3):
                lamp = (xs - lx) ** 2 + (ys - ly - (i + 0.5) * bh / 3) ** 2 < (0.13 * k + 0.5) ** 2
                lamp_colour = np.asarray(_LAMPS[i], np.float32) if i == lit else grey(rng, 55, 85, 4)
                colour[np.broadcast_to(lamp, colour.shape[:2])] = lamp_colour
            self.paint("traffic light", box, colour, grain=3.0)
        else:
            self.paint("pole", st, metal, grain=3.0)
        if sign:
            self.sign(x, y - rng.uniform(2.0, 3.0) * k, k)

    def sign(self, x: float, y: float, k: float) -> None:
        rng, h, w = self.rng, self.h, self.w
        r = rng.uniform(0.3, 0.45) * k + 0.5
        st = Stencil(h, w, x - r, y - r, x + r, y + r)
        shape = int(rng.integers(4))
        if shape == 0:
            st.ellipse(x, y, r, r)
        elif shape == 1:
            st.polygon([(x - r, y - 0.8 * r), (x + r, y - 0.8 * r), (x, y + 0.9 * r)])
        elif shape == 2:
            st.rect(x - r, y - 0.8 * r, x + r, y + 0.8 * r)
        else:
            st.polygon([(x, y - r), (x + r, y), (x, y + r), (x - r, y)])
        ys, xs = st.grid()
        ring = np.hypot(xs - x, ys - y) > 0.62 * r
        face, rim = (pick(rng, ((225, 225, 225), (40, 70, 170), (230, 190, 40)), 12),
                     pick(rng, ((200, 30, 30), (230, 230, 230), (40, 70, 170)), 12))
        self.paint("traffic sign", st, np.where(ring[..., None], rim, face), grain=3.0)

    def static_object(self, lateral: float, t: float) -> None:
        """A bin or box (Cityscapes void id 4 "static", ignored in training)."""
        rng = self.rng
        x, y, k = self.x_at(lateral, t), self.y_at(t), self.ppm(t)
        bw, bh = rng.uniform(0.5, 1.2) * k, rng.uniform(0.8, 1.3) * k
        st = Stencil(self.h, self.w, x - bw / 2, y - bh, x + bw / 2, y).rect(x - bw / 2, y - bh, x + bw / 2, y)
        self.paint("static", st, pick(rng, VEHICLE_COLOURS + CLOTHES, 20), grain=4.0)

    # vehicles, persons and riders
    def plan_traffic(self, items: list[tuple[float, Callable[[], None]]]) -> None:
        rng = self.rng

        def on_road(t_lo: float, t_hi: float) -> tuple[float, float]:
            return rng.uniform(-0.8 * self.road_l, 0.8 * self.road_r), rng.uniform(t_lo, t_hi)

        def on_walk(t_lo: float, t_hi: float) -> tuple[float, float]:
            if rng.random() < 0.5:
                return -self.road_l - rng.uniform(0.1, 0.9) * self.walk_l, rng.uniform(t_lo, t_hi)
            return self.road_r + rng.uniform(0.1, 0.9) * self.walk_r, rng.uniform(t_lo, t_hi)

        counts = {
            "car": int(rng.choice([0, 1, 1, 2, 2, 3, 3, 4])),
            "truck": int(rng.random() < 0.5),
            "bus": int(rng.random() < 0.45),
            "train": int(rng.random() < 0.4),
        }
        ranges = {"car": (0.1, 0.7), "truck": (0.08, 0.45), "bus": (0.08, 0.4), "train": (0.05, 0.25)}
        for kind, n in counts.items():
            for _ in range(n):
                lateral, t = on_road(*ranges[kind])
                facing = 1 if rng.random() < 0.5 else -1
                items.append((t, lambda kd=kind, la=lateral, tt=t, f=facing: self.vehicle(kd, la, tt, f)))
        for _ in range(int(rng.choice([0, 1, 2, 2, 3, 4]))):
            lateral, t = on_walk(0.15, 0.9) if rng.random() < 0.7 else on_road(0.15, 0.9)
            items.append((t, lambda la=lateral, tt=t: self.person(self.x_at(la, tt), self.y_at(tt), self.ppm(tt))))
        for _ in range(int(rng.choice([0, 0, 1, 1, 2]))):
            lateral, t = on_road(0.2, 0.85)
            bike = "motorcycle" if rng.random() < 0.5 else "bicycle"
            facing = 1 if rng.random() < 0.5 else -1
            items.append((t, lambda la=lateral, tt=t, b=bike, f=facing: self.rider(b, la, tt, f)))
        for bike, p in (("bicycle", 0.35), ("motorcycle", 0.3)):
            if rng.random() < p:
                lateral, t = on_walk(0.2, 0.85)
                facing = 1 if rng.random() < 0.5 else -1
                items.append((t, lambda la=lateral, tt=t, b=bike, f=facing: self.two_wheeler(
                    b, self.x_at(la, tt), self.y_at(tt), self.ppm(tt), f)))

    def vehicle(self, kind: str, lateral: float, t: float, facing: int) -> None:
        """Side view of a car, truck, bus or tram standing at ground point (lateral, t)."""
        rng, h, w = self.rng, self.h, self.w
        xc, yb, k = self.x_at(lateral, t), self.y_at(t), self.ppm(t)
        dims = {"car": (3.8, 4.8, 1.4, 1.6), "truck": (6.0, 8.5, 2.8, 3.5),
                "bus": (10.0, 12.5, 2.9, 3.2), "train": (18.0, 30.0, 3.2, 3.6)}[kind]
        length, height = rng.uniform(dims[0], dims[1]) * k, rng.uniform(dims[2], dims[3]) * k

        def at(u: float, v: float) -> tuple[float, float]:
            """Point ``u`` of the length from the rear (0..1) and ``v`` of the height up (0..1)."""
            return xc + facing * (u - 0.5) * length, yb - v * height

        def poly(pts: Sequence[tuple[float, float]]) -> Stencil:
            corners = [at(u, v) for u, v in pts]
            return self.stencil(corners).polygon(corners)

        def quad(u0: float, v0: float, u1: float, v1: float) -> Stencil:
            return poly([(u0, v0), (u1, v0), (u1, v1), (u0, v1)])

        body = pick(rng, VEHICLE_COLOURS, 18)
        glass = rgb(rng, (30, 40, 55), (80, 95, 120))
        tyre = grey(rng, 15, 40, 3)
        wheel_r = {"car": 0.32, "truck": 0.5, "bus": 0.5, "train": 0.0}[kind] * k
        if kind == "car":
            self.paint(kind, poly([(0, 0.15), (0, 0.55), (0.2, 0.62), (0.3, 1.0), (0.74, 1.0), (0.86, 0.62),
                                   (1, 0.55), (1, 0.15)]), body, grain=3.0, blob=2.0)
            self.paint(kind, quad(0.34, 0.65, 0.51, 0.93), glass, grain=3.0, blob=3.0)
            self.paint(kind, quad(0.54, 0.65, 0.72, 0.93), glass, grain=3.0, blob=3.0)
            self.paint(kind, quad(0.0, 0.4, 0.03, 0.52), np.asarray((200, 30, 30), np.float32), grain=3.0)
            wheels = (0.2, 0.8)
        elif kind == "truck":
            cargo = pick(rng, ((225, 225, 225), (170, 172, 178), (190, 170, 120), (40, 100, 60)), 15)
            self.paint(kind, quad(0.0, 0.18, 0.72, 1.0), cargo, grain=3.0, blob=2.0)
            self.paint(kind, poly([(0.74, 0.12), (0.74, 0.85), (0.9, 0.85), (1.0, 0.55), (1.0, 0.12)]), body, grain=3.0)
            self.paint(kind, quad(0.8, 0.55, 0.92, 0.78), glass, grain=3.0, blob=3.0)
            self.paint(kind, quad(0.0, 0.1, 1.0, 0.18), tyre * 1.5, grain=3.0)
            wheels = (0.12, 0.28, 0.86)
        elif kind == "bus":
            self.paint(kind, poly([(0, 0.08), (0, 0.95), (0.02, 1.0), (0.97, 1.0), (1.0, 0.9), (1.0, 0.08)]), body,
                       grain=3.0, blob=2.0)
            n_win = max(3, int(length / (1.3 * k)))
            for i in range(n_win):
                u0 = 0.04 + 0.84 * i / n_win
                self.paint(kind, quad(u0, 0.5, u0 + 0.84 / n_win * 0.8, 0.86), glass, grain=3.0, blob=3.0)
            self.paint(kind, quad(0.92, 0.45, 0.99, 0.9), glass, grain=3.0, blob=3.0)
            self.paint(kind, quad(0.75, 0.08, 0.82, 0.75), glass * 0.8, grain=3.0)
            wheels = (0.18, 0.72)
        else:  # train / tram: very long, window band, skirt, pantograph
            self.paint(kind, poly([(0, 0.1), (0, 0.9), (0.01, 0.98), (0.97, 0.98), (1.0, 0.8), (1.0, 0.1)]), body,
                       grain=3.0, blob=2.0)
            self.paint(kind, quad(0.0, 0.0, 1.0, 0.14), tyre * 1.3, grain=3.0)
            n_win = max(4, int(length / (1.8 * k)))
            for i in range(n_win):
                u0 = 0.02 + 0.95 * i / n_win
                self.paint(kind, quad(u0, 0.5, u0 + 0.95 / n_win * 0.7, 0.82), glass, grain=3.0, blob=3.0)
            stripe = pick(rng, VEHICLE_COLOURS, 18)
            self.paint(kind, quad(0.0, 0.3, 1.0, 0.4), stripe, grain=3.0)
            pant = [at(0.45, 0.98), at(0.5, 1.15), at(0.55, 0.98)]
            self.paint(kind, self.stencil(pant).line(pant, max(1.0, 0.08 * k)), grey(rng, 40, 80, 3), grain=2.0)
            wheels = ()
        for u in wheels:
            cx, cy = at(u, 0)
            st = Stencil(h, w, cx - wheel_r, cy - 2 * wheel_r, cx + wheel_r, cy)
            self.paint(kind, st.ellipse(cx, cy - wheel_r, wheel_r, wheel_r), tyre, grain=3.0)
            hub = Stencil(h, w, cx - wheel_r, cy - 2 * wheel_r, cx + wheel_r, cy)
            self.paint(kind, hub.ellipse(cx, cy - wheel_r, wheel_r * 0.45, wheel_r * 0.45), grey(rng, 120, 180, 4),
                       grain=3.0)

    def figure(self, name: str, x: float, y_hip: float, hip_h: float, torso_h: float, lean: float,
               feet: Sequence[tuple[float, float]], hands: Sequence[tuple[float, float]]) -> None:
        """A stick-and-blob human (``name`` person or rider): legs hip->feet, torso, arms, head."""
        rng = self.rng
        body_h = hip_h + torso_h
        limb = max(1.0, 0.075 * body_h)
        shoulder = (x + lean * torso_h, y_hip - torso_h)
        head_r = max(1.0, 0.075 * body_h)
        legs = Stencil(self.h, self.w, *self._span([(x, y_hip), *feet]))
        for fx, fy in feet:
            legs.line([(x, y_hip), (fx, fy)], limb * 1.3)
        self.paint(name, legs, pick(rng, CLOTHES, 15) * 0.7, grain=4.0)
        half = 0.13 * body_h
        torso_pts = [(x - half * 0.8, y_hip), (x + half * 0.8, y_hip),
                     (shoulder[0] + half, shoulder[1]), (shoulder[0] - half, shoulder[1])]
        self.paint(name, self.stencil(torso_pts).polygon(torso_pts), pick(rng, CLOTHES, 15), grain=4.0)
        arms = Stencil(self.h, self.w, *self._span([shoulder, *hands]))
        for hx, hy in hands:
            arms.line([shoulder, (hx, hy)], limb)
        skin = pick(rng, SKIN, 10)
        self.paint(name, arms, pick(rng, CLOTHES, 15), grain=4.0)
        hx, hy = shoulder[0] + 0.3 * lean * head_r, shoulder[1] - head_r * 1.1
        head = Stencil(self.h, self.w, hx - head_r, hy - head_r, hx + head_r, hy + head_r)
        ys, _ = head.grid()
        colour = np.where((ys < hy - 0.3 * head_r)[..., None], grey(rng, 20, 70, 8), skin)  # hair on top
        self.paint(name, head.ellipse(hx, hy, head_r * 0.85, head_r), colour, grain=4.0)

    def _span(self, pts: Sequence[tuple[float, float]]) -> tuple[float, float, float, float]:
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        pad = 0.05 * self.h
        return min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad

    def person(self, x: float, y: float, k: float) -> None:
        height = self.rng.uniform(1.55, 1.95) * k
        stride = self.rng.uniform(-0.14, 0.14) * height
        hip = y - 0.48 * height
        hands = [(x - 0.12 * height, hip + 0.05 * height), (x + 0.12 * height + stride * 0.3, hip + 0.02 * height)]
        self.figure("person", x, hip, 0.48 * height, 0.32 * height, 0.0, [(x - stride, y), (x + stride, y)], hands)

    def rider(self, bike: str, lateral: float, t: float, facing: int) -> None:
        x, y, k = self.x_at(lateral, t), self.y_at(t), self.ppm(t)
        base = self.two_wheeler(bike, x, y, k, facing)
        hip_x, hip_y = x - facing * 0.15 * k, y - base * k
        pedal = (x + facing * 0.05 * k, y - 0.3 * k)
        bar = (x + facing * 0.5 * k, y - (base + 0.15) * k)
        self.figure("rider", hip_x, hip_y, 0.6 * k, 0.62 * k, facing * 0.4, [pedal], [bar])

    def two_wheeler(self, bike: str, x: float, y: float, k: float, facing: int) -> float:
        """A bicycle or motorcycle standing at (x, y); returns its seat height in metres."""
        rng, h, w = self.rng, self.h, self.w
        if bike == "bicycle":
            r, base = 0.34 * k, 0.52 * k
            stroke = max(1.0, 0.06 * k)
            wheels = [(x - facing * base, y - r), (x + facing * base, y - r)]
            seat = (x - facing * 0.2 * k, y - 0.95 * k)
            bar = (x + facing * 0.45 * k, y - 1.05 * k)
            crank = (x, y - r)
            st = Stencil(h, w, x - base - r - 1, y - 1.1 * k - 1, x + base + r + 1, y)
            for cx, cy in wheels:
                st.ellipse(cx, cy, r, r, width=max(1, round(stroke)))
            st.line([wheels[0], crank, seat, wheels[0]], stroke).line([crank, bar, wheels[1]], stroke)
            st.line([seat, (bar[0] - facing * 0.1 * k, bar[1] + 0.1 * k)], stroke)
            self.paint("bicycle", st, pick(rng, VEHICLE_COLOURS, 20) * 0.8, grain=2.0)
            return 0.95
        r, base = 0.31 * k, 0.7 * k
        tyre = grey(rng, 15, 45, 3)
        for cx in (x - facing * base, x + facing * base):
            self.paint("motorcycle", Stencil(h, w, cx - r, y - 2 * r, cx + r, y).ellipse(cx, y - r, r, r), tyre,
                       grain=3.0)
        body = [(x - facing * (base + 0.2 * k), y - 0.8 * k), (x - facing * 0.1 * k, y - 0.85 * k),
                (x + facing * 0.45 * k, y - 0.95 * k), (x + facing * 0.7 * k, y - 1.1 * k),
                (x + facing * 0.8 * k, y - 0.7 * k), (x + facing * 0.3 * k, y - 0.35 * k),
                (x - facing * 0.4 * k, y - 0.4 * k)]
        self.paint("motorcycle", self.stencil(body).polygon(body), pick(rng, VEHICLE_COLOURS, 20), grain=3.0)
        engine = [(x - 0.25 * k, y - 0.5 * k), (x + 0.25 * k, y - 0.5 * k), (x + 0.2 * k, y - 0.25 * k),
                  (x - 0.2 * k, y - 0.25 * k)]
        self.paint("motorcycle", self.stencil(engine).polygon(engine), grey(rng, 90, 150, 5), grain=3.0)
        return 0.85

    def void_overlays(self) -> None:
        """Ego-vehicle hood (id 1) and an unlabeled border strip (id 0), both ignored in training."""
        rng, h, w = self.rng, self.h, self.w
        if rng.random() < 0.5:
            top = h * (1 - rng.uniform(0.05, 0.1))
            st = Stencil(h, w, 0, top, w, h).ellipse(w / 2, h + (h - top) * 0.6, w * 0.75, (h - top) * 1.6)
            ys, _ = st.grid()
            shine = np.abs(ys - top - 0.3 * (h - top)) < 1.0
            self.paint("ego vehicle", st, np.where(shine[..., None], grey(rng, 120, 170, 4), grey(rng, 20, 60, 5)),
                       grain=3.0)
        if rng.random() < 0.3:
            bw = float(rng.integers(1, max(2, w // 64) + 1))
            x0 = 0.0 if rng.random() < 0.5 else w - bw
            st = Stencil(h, w, x0, 0, x0 + bw, h).rect(x0, 0, x0 + bw - 1, h)
            self.paint("unlabeled", st, np.zeros(3, np.float32), grain=2.0)


def _finish(scene: _Scene, domain: str) -> np.ndarray:
    """Apply lighting, the visual domain and sensor noise; returns ``uint8 (h, w, 3)``."""
    rng, h = scene.rng, scene.h
    rgb = scene.rgb * (1.0 + 0.06 * scene.cloud[..., None])
    if domain == "clear":
        rgb = rgb * rng.uniform(0.9, 1.1) * (1.0 + rng.uniform(-0.04, 0.04, 3)).astype(np.float32)
        sigma = 3.0
    elif domain == "dusk":  # dark, warm, lower contrast, noisier
        tint = np.asarray((1.0, 0.78, 0.62), np.float32) * (1.0 + rng.uniform(-0.05, 0.05, 3)).astype(np.float32)
        rgb = rgb * rng.uniform(0.4, 0.6) * tint + np.asarray((20, 8, 14), np.float32)
        sigma = 5.0
    else:  # fog: blend towards a grey haze, densest around the horizon
        rows = np.arange(h, dtype=np.float32)
        amount = rng.uniform(0.4, 0.6) * (0.55 + 0.45 * np.exp(-np.abs(rows - scene.yh) / (0.2 * h)))
        haze = grey(rng, 185, 215, 4)
        rgb = rgb * (1 - amount[:, None, None]) + haze * amount[:, None, None]
        sigma = 3.0
    rgb = rgb + rng.normal(0.0, sigma, rgb.shape).astype(np.float32)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
