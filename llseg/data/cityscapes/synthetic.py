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

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from llseg.data.checks import check_out_dir, check_seed, check_size
from llseg.data.cityscapes.canvas import DrawItems
from llseg.data.cityscapes.road_users import RoadUsers
from llseg.data.cityscapes.street import Backdrop, Ground, Roadside, StreetFurniture
from llseg.data.generator import PNG_LEVEL, Sidecar, reuse_or_generate
from llseg.data.labels import CITYSCAPES, CITYSCAPES_TRAIN_CITIES, CITYSCAPES_VAL_CITIES, IGNORE_INDEX
from llseg.data.procedural import Stencil, grey
from llseg.errors import ConfigError

GENERATOR = "llseg.data.synthetic"  # sidecar id: the module's original path, kept so sidecars stay byte-identical
GENERATOR_VERSION = 1
DEFAULT_SIZE: tuple[int, int] = (128, 256)
DEFAULT_IMAGES_PER_CITY = 12
DOMAINS: tuple[str, ...] = ("clear", "dusk", "fog")
SIDECAR_NAME = "llseg_synthetic.json"
SPLIT_CITIES: dict[str, tuple[str, ...]] = {"train": CITYSCAPES_TRAIN_CITIES, "val": CITYSCAPES_VAL_CITIES}
FRAME = 19  # Cityscapes' annotated frame number

_LUT: np.ndarray = CITYSCAPES.id_to_train_id  # type: ignore[assignment]  # set for Cityscapes


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
    out: str | Path,
    *,
    seed: int = 0,
    size: Sequence[int] | None = None,
    images_per_city: int | None = None,
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

    def write() -> dict[str, Any]:
        counts = {split: np.zeros(256, dtype=np.int64) for split in SPLIT_CITIES}
        images: dict[str, str] = {}
        for split, city, index, domain in tqdm(plan, desc="llseg synth", unit="img", disable=None):
            rng = np.random.default_rng([seed, _SPLIT_CODE[split], zlib.crc32(city.encode()), index])
            rgb, label = render_scene(rng, h, w, domain)
            for path, arr in zip(_files(out, split, city, index), (rgb, label)):
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(path, format="PNG", compress_level=PNG_LEVEL)
            counts[split] += np.bincount(label.ravel(), minlength=256)
            images[f"{split}/{city}/{_stem(city, index)}"] = domain
        return {"class_pixels": {split: _class_pixels(c) for split, c in counts.items()}, "images": images}

    sidecar, reused = reuse_or_generate(
        out,
        Sidecar(out / SIDECAR_NAME, GENERATOR, GENERATOR_VERSION, args, required=("images", "class_pixels")),
        files=[path for split, city, index, _ in plan for path in _files(out, split, city, index)],
        trees=[out / "leftImg8bit", out / "gtFine"],
        holds="leftImg8bit/ or gtFine/",
        command="llseg synth",
        header={"splits": {split: list(cities) for split, cities in SPLIT_CITIES.items()}},
        write=write,
    )
    return _summary(out, sidecar, time.perf_counter() - start, reused=reused)


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
    scene = StreetScene(rng, h, w)
    scene.draw()
    return _finish(scene, domain), scene.label


# ------------------------------------------------------------------------------ dataset helpers

_SPLIT_CODE = {"train": 0, "val": 1}
_PlanItem = tuple[str, str, int, str]  # (split, city, index, domain)


def _check_count(images_per_city: int | None) -> int:
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


def _stem(city: str, index: int) -> str:
    return f"{city}_{index:06d}_{FRAME:06d}"


def _files(out: Path, split: str, city: str, index: int) -> tuple[Path, Path]:
    """The image (RGB) and the label (raw ids) file of one plan item."""
    stem = _stem(city, index)
    return (out / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
            out / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")


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


class StreetScene(Backdrop, Ground, Roadside, StreetFurniture, RoadUsers):
    """A whole street scene: the static street and the road users, painted far to near, then void overlays."""

    def draw(self) -> None:
        rng = self.rng
        self.sky()
        self.buildings()
        if rng.random() < 0.35:
            self.far_band("vegetation")
        if rng.random() < 0.3:
            self.far_band("wall")
        self.ground()
        items: DrawItems = []
        self.plan_side_structures(items)
        self.plan_street_furniture(items)
        self.plan_traffic(items)
        items.sort(key=lambda item: item[0])  # far (small t) first; stable for equal t
        for _, draw in items:
            draw()
        self.void_overlays()

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


def _finish(scene: StreetScene, domain: str) -> np.ndarray:
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
