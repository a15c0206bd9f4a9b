"""Procedural object images written in the exact Pascal VOC 2012 layout (``llseg synth --kind objects``).

Each image shows 1 to 4 objects of the 20 VOC classes (a fair share of images repeat a class,
like VOC's herds and crowds) on a cluttered background: a two-tone room or landscape with
random blobs, bars and stripes that belong to no class (label 0, background). Every class has
its own silhouette built from several parts and its own colour range and texture (tabby stripes,
cow patches, curly wool, wood grain, ...); colour ranges overlap, so shape matters. Later objects
occlude earlier ones. As in VOC, a band along every object outline is void (255): 1 pixel on
the side of the lower id.

Files (``<id>`` = ``<split>_<index:06d>``)::

    <out>/JPEGImages/<id>.jpg                           RGB, JPEG quality 90
    <out>/SegmentationClass/<id>.png                    palette PNG (VOC colours), indices = ids 0..20, 255
    <out>/ImageSets/Segmentation/{train,val,trainval}.txt
    <out>/llseg_synthetic_objects.json                  sidecar (see below)

:func:`llseg.data.voc.layout.find_voc_samples` reads it like the real dataset.

Class frequencies follow VOC's shape for the 15-1 protocols: person is the most frequent class,
classes 1..15 are common and 16..20 (pottedplant .. tvmonitor) are drawn 0.7 times as often as
the other base classes, so later steps are small but each still has tens of images.

The sidecar holds ``generator``, ``version``, ``args`` (seed, size, images), ``complete``,
``splits`` (split -> image count), ``class_images`` (split -> class name -> images containing
it) and ``class_pixels`` (split -> class name or ``"ignore"`` -> pixel count).

``class_tint`` t in [0, 1] blends every object colour towards its class's own hue,
``(1 - t) * colour + t * hue`` (:data:`~llseg.data.voc.objects.CLASS_HUES`: 10 hues x 2 brightness levels, one per class),
before the texture noise: t = 0 (default) keeps the overlapping colour families, so only shape
and texture tell classes apart, which a network trained from scratch on a CPU for a few minutes
does not learn (mIoU stays at the background level); t ~ 0.5 adds a local colour cue of the kind a
pretrained backbone gives real VOC, so continual methods can be compared within CPU minutes.

Defaults: 128x128 (HxW), 400 train and 100 val images, written in a few seconds. The same
arguments give byte-identical files (with the same numpy, Pillow and libjpeg versions); each
image's generator is seeded from (seed, split, index).
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
from llseg.data.generator import PNG_LEVEL, Sidecar, reuse_or_generate
from llseg.data.labels import IGNORE_INDEX, VOC, voc_colormap
from llseg.data.voc.layout import IMAGE_DIR, IMAGE_SUFFIX, LABEL_DIR, LIST_DIR
from llseg.data.voc.objects import ObjectCanvas
from llseg.errors import ConfigError

GENERATOR = "llseg.data.synthetic_objects"  # sidecar id: the module's original path, kept so sidecars stay byte-identical
GENERATOR_VERSION = 1
DEFAULT_SIZE: tuple[int, int] = (128, 128)
DEFAULT_IMAGES = 400
SIDECAR_NAME = "llseg_synthetic_objects.json"
SPLITS: tuple[str, ...] = ("train", "val")
JPEG_QUALITY = 90

_SPLIT_CODE = {"train": 0, "val": 1}
_PALETTE: list[int] = voc_colormap().ravel().tolist()
# Relative frequency of each class id when an object is drawn (0 = background is never drawn).
_CLASS_WEIGHTS = np.asarray([0.0] + [1.0] * 14 + [2.5] + [0.7] * 5)
_CLASS_WEIGHTS /= _CLASS_WEIGHTS.sum()
_REPEAT_CLASS = 0.3  # chance that an object repeats the previous object's class
_OBJECTS_P = (0.35, 0.3, 0.2, 0.15)  # P(1..4 objects)


# ----------------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class ObjectsSummary:
    """What :func:`generate_objects_dataset` wrote (or found already written).

    ``class_images`` counts train images containing each foreground class; ``background_share``
    and ``void_share`` are shares of train pixels labelled 0 and 255.
    """

    out: Path
    images: dict[str, int]  # split -> image count
    size: tuple[int, int]  # (H, W)
    seed: int
    class_images: dict[str, int]
    background_share: float
    void_share: float
    seconds: float
    reused: bool  # True: matching files were already there, nothing was written

    def __str__(self) -> str:
        h, w = self.size
        action = "reused existing files" if self.reused else "generated"
        counts = ", ".join(f"{name} {n}" for name, n in self.class_images.items())
        return "\n".join((
            f"synthetic objects dataset (VOC layout) in {self.out} ({action} in {self.seconds:.1f} s)",
            "  images: " + ", ".join(f"{s} {n}" for s, n in self.images.items()) + f"; size {h}x{w} (HxW); seed {self.seed}",
            f"  train pixels: background {100 * self.background_share:.1f}%, void {100 * self.void_share:.1f}%",
            f"  train images per class: {counts}",
        ))


def generate_objects_dataset(
    out: str | Path,
    *,
    seed: int = 0,
    size: Sequence[int] | None = None,
    images: int | None = None,
    class_tint: float = 0.0,
) -> ObjectsSummary:
    """Write the synthetic objects dataset under ``out`` (VOC layout) and summarise it.

    Args:
        out: output folder, created if needed. Only its ``JPEGImages/``, ``SegmentationClass/``,
            ``ImageSets/`` and the sidecar are ever written or removed.
        seed: non-negative base seed; another seed gives other images.
        size: ``(H, W)`` of every image, both >= 16; ``None``: :data:`DEFAULT_SIZE`.
        images: train images, >= 4; val gets ``images // 4``. ``None``: :data:`DEFAULT_IMAGES`.
        class_tint: 0..1, share of each object's colour taken from its class hue (module docstring).

    If the sidecar says a complete dataset with the same arguments and generator version is
    there (and all its files exist), nothing is written; otherwise everything is regenerated.

    Raises:
        ConfigError: an argument is invalid.
        DataError: ``out`` is a file, or holds VOC folders not written by this generator (no
            sidecar): a real dataset is never deleted.
    """
    start = time.perf_counter()
    h, w = check_size(size, DEFAULT_SIZE)
    n_train = DEFAULT_IMAGES if images is None else images
    if isinstance(n_train, bool) or not isinstance(n_train, int) or n_train < 4:
        raise ConfigError(f"images must be an integer >= 4 (train images; val gets a quarter), got {images!r}")
    if isinstance(class_tint, bool) or not isinstance(class_tint, (int, float)) or not 0.0 <= class_tint <= 1.0:
        raise ConfigError(
            f"class_tint must be a number in 0..1 (share of an object's colour from its class hue), got {class_tint!r}"
        )
    seed = check_seed(seed)
    out = check_out_dir(out)
    args = {"seed": seed, "size": [h, w], "images": n_train, "class_tint": float(class_tint)}
    ids = {"train": [f"train_{i:06d}" for i in range(n_train)], "val": [f"val_{i:06d}" for i in range(n_train // 4)]}
    lists = {**ids, "trainval": ids["train"] + ids["val"]}

    def write() -> dict[str, Any]:
        for folder in (out / IMAGE_DIR, out / LABEL_DIR, out / LIST_DIR):
            folder.mkdir(parents=True, exist_ok=True)
        pixels = {split: np.zeros(256, dtype=np.int64) for split in SPLITS}
        present = {split: np.zeros(256, dtype=np.int64) for split in SPLITS}
        plan = [(split, index, stem) for split in SPLITS for index, stem in enumerate(ids[split])]
        for split, index, stem in tqdm(plan, desc="llseg synth objects", unit="img", disable=None):
            rgb, label = render_objects(np.random.default_rng([seed, _SPLIT_CODE[split], index]), h, w, class_tint)
            Image.fromarray(rgb).save(out / IMAGE_DIR / f"{stem}{IMAGE_SUFFIX}", format="JPEG", quality=JPEG_QUALITY)
            png = Image.fromarray(label)
            png.putpalette(_PALETTE)
            png.save(out / LABEL_DIR / f"{stem}.png", format="PNG", compress_level=PNG_LEVEL)
            counts = np.bincount(label.ravel(), minlength=256)
            pixels[split] += counts
            present[split] += counts > 0
        for name, list_ids in lists.items():
            (out / LIST_DIR / f"{name}.txt").write_text("".join(f"{i}\n" for i in list_ids), encoding="utf-8")
        return {
            "class_images": {s: {n: int(present[s][k]) for k, n in enumerate(VOC.class_names)} for s in SPLITS},
            "class_pixels": {
                s: {**{n: int(pixels[s][k]) for k, n in enumerate(VOC.class_names)}, "ignore": int(pixels[s][IGNORE_INDEX])}
                for s in SPLITS
            },
        }

    sidecar, reused = reuse_or_generate(
        out,
        Sidecar(out / SIDECAR_NAME, GENERATOR, GENERATOR_VERSION, args, required=("class_images", "class_pixels")),
        files=[out / LIST_DIR / f"{name}.txt" for name in lists]
        + [out / d / f"{i}{ext}" for i in lists["trainval"] for d, ext in ((IMAGE_DIR, IMAGE_SUFFIX), (LABEL_DIR, ".png"))],
        trees=[out / IMAGE_DIR, out / LABEL_DIR, out / "ImageSets"],
        holds="VOC folders",
        command="llseg synth --kind objects",
        header={"splits": {split: len(ids[split]) for split in SPLITS}},
        write=write,
    )
    return _summary(out, sidecar, time.perf_counter() - start, reused=reused)


def render_objects(rng: np.random.Generator, h: int, w: int, class_tint: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One random image: ``(rgb uint8 (h, w, 3), label uint8 (h, w))``, ids 0..20 and 255 on outlines."""
    canvas = ObjectCanvas(rng, h, w, class_tint)
    canvas.background()
    n = int(rng.choice(len(_OBJECTS_P), p=_OBJECTS_P)) + 1
    cls = 0
    for _ in range(n):
        if cls == 0 or rng.random() >= _REPEAT_CLASS:
            cls = int(rng.choice(len(_CLASS_WEIGHTS), p=_CLASS_WEIGHTS))
        canvas.add_object(cls)
    return canvas.finish(), canvas.void_outlines()


# ------------------------------------------------------------------------------ dataset helpers


def _summary(out: Path, sidecar: dict[str, Any], seconds: float, reused: bool) -> ObjectsSummary:
    args = sidecar["args"]
    pixels = sidecar["class_pixels"]["train"]
    total = max(sum(pixels.values()), 1)
    return ObjectsSummary(
        out=out,
        images=dict(sidecar["splits"]),
        size=(args["size"][0], args["size"][1]),
        seed=args["seed"],
        class_images={n: sidecar["class_images"]["train"][n] for n in VOC.class_names[1:]},
        background_share=pixels[VOC.class_names[0]] / total,
        void_share=pixels["ignore"] / total,
        seconds=seconds,
        reused=reused,
    )
