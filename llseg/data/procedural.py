"""Procedural drawing shared by the synthetic generators: noise fields, colour draws and stencils.

Colours are float32 RGB arrays (shape (3,) or (h, w, 3), values ~0..255); every helper draws
from the ``numpy.random.Generator`` it is given, so images are reproducible from their seed.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

Colour = np.ndarray  # float32 RGB, shape (3,) or (h, w, 3), values ~0..255


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Bilinearly upsampled Gaussian noise ``float32 (h, w)``, blobs about ``cell`` px wide."""
    gh, gw = h // cell + 2, w // cell + 2
    grid = Image.fromarray(rng.standard_normal((gh, gw)).astype(np.float32))
    return np.asarray(grid.resize((gw * cell, gh * cell), Image.Resampling.BILINEAR))[:h, :w]


def grey(rng: np.random.Generator, lo: float, hi: float, tint: float = 8.0) -> Colour:
    return (rng.uniform(lo, hi) + rng.uniform(-tint, tint, 3)).astype(np.float32)


def rgb(rng: np.random.Generator, lo: Sequence[float], hi: Sequence[float]) -> Colour:
    return rng.uniform(lo, hi).astype(np.float32)


def pick(rng: np.random.Generator, palette: Sequence[tuple[float, float, float]], jitter: float = 15.0) -> Colour:
    base = np.asarray(palette[int(rng.integers(len(palette)))], dtype=np.float32)
    return base + rng.uniform(-jitter, jitter, 3).astype(np.float32)


# Overlapping colour families: vehicles, signs, clothes and buildings share many of them.
VEHICLE_COLOURS = (
    (220, 220, 225), (170, 172, 178), (110, 112, 118), (35, 35, 40), (175, 35, 35),
    (30, 55, 150), (25, 35, 80), (40, 100, 60), (190, 170, 120), (210, 170, 40),
)
CLOTHES = (
    (35, 35, 40), (200, 200, 205), (175, 35, 35), (30, 55, 150), (40, 100, 60),
    (190, 170, 120), (120, 80, 50), (230, 140, 30), (110, 112, 118), (150, 60, 130),
)
SKIN = ((225, 185, 150), (190, 140, 100), (140, 95, 65), (95, 65, 45))


def foliage(rng: np.random.Generator) -> Colour:
    """Green with green > red > blue, from dark to yellowish (overlaps terrain)."""
    g = rng.uniform(70, 150)
    return np.asarray((g * rng.uniform(0.45, 0.85), g, g * rng.uniform(0.25, 0.6)), dtype=np.float32)


class Stencil:
    """A binary mask drawn with PIL inside a box of the image, clipped to the image.

    Shape methods take absolute image coordinates ``(x, y)``; ``mask`` is ``bool (bh, bw)`` for
    the rows/columns in ``slices``.
    """

    def __init__(self, h: int, w: int, x0: float, y0: float, x1: float, y1: float) -> None:
        self.x0, self.y0 = max(math.floor(x0) - 1, 0), max(math.floor(y0) - 1, 0)
        x1c, y1c = min(math.ceil(x1) + 2, w), min(math.ceil(y1) + 2, h)
        self.bw, self.bh = max(x1c - self.x0, 0), max(y1c - self.y0, 0)
        self.img = Image.new("L", (max(self.bw, 1), max(self.bh, 1)), 0)
        self.pen = ImageDraw.Draw(self.img)

    @property
    def empty(self) -> bool:
        return self.bw == 0 or self.bh == 0

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y0 + self.bh), slice(self.x0, self.x0 + self.bw)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Absolute pixel-centre coordinates ``(ys (bh, 1), xs (1, bw))``."""
        return (np.arange(self.y0, self.y0 + self.bh, dtype=np.float32)[:, None] + 0.5,
                np.arange(self.x0, self.x0 + self.bw, dtype=np.float32)[None, :] + 0.5)

    def _local(self, pts: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(x - self.x0, y - self.y0) for x, y in pts]

    def polygon(self, pts: Sequence[tuple[float, float]]) -> Stencil:
        self.pen.polygon(self._local(pts), fill=255)
        return self

    def rect(self, x0: float, y0: float, x1: float, y1: float) -> Stencil:
        return self.polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, width: int = 0) -> Stencil:
        box = [cx - rx - self.x0, cy - ry - self.y0, cx + rx - self.x0, cy + ry - self.y0]
        if width:
            self.pen.ellipse(box, outline=255, width=width)
        else:
            self.pen.ellipse(box, fill=255)
        return self

    def line(self, pts: Sequence[tuple[float, float]], width: float) -> Stencil:
        self.pen.line(self._local(pts), fill=255, width=max(1, round(width)))
        return self

    def mask(self) -> np.ndarray:
        return np.asarray(self.img, dtype=np.uint8)[: self.bh, : self.bw] > 0
