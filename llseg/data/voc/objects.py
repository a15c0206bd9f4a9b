"""The drawing of the synthetic objects dataset: a cluttered background and 20 class silhouettes.

:class:`ObjectCanvas` paints back to front into ``label`` (``uint8 (h, w)``, VOC ids 0..20) and
``rgb``; :meth:`ObjectCanvas.void_outlines` adds VOC's void band (255) along outlines. Every
class has its own painter, drawing several parts in :class:`ObjectShape`'s local coordinates.
"""
from __future__ import annotations

import colorsys
from collections.abc import Callable, Sequence

import numpy as np

from llseg.data.labels import IGNORE_INDEX, VOC
from llseg.data.procedural import (
    CLOTHES,
    SKIN,
    VEHICLE_COLOURS,
    Colour,
    Stencil,
    foliage,
    grey,
    pick,
    rgb,
    smooth_noise,
)

# Class c's tint (c = 1..20, row 0 unused): hue (c - 1) % 10 of 10 evenly spaced hues, saturation
# 0.75, value 1 for c <= 10 and 0.55 after (nearest two tints are 47 RGB units apart).
CLASS_HUES = np.asarray(
    [(0.0, 0.0, 0.0)] + [tuple(255 * x for x in colorsys.hsv_to_rgb(h / 10, 0.75, v)) for v in (1.0, 0.55) for h in range(10)],
    dtype=np.float32,
)
_WOOD = ((150, 100, 55), (115, 75, 40), (185, 140, 90), (90, 60, 35))
_FABRIC = ((150, 40, 45), (60, 80, 140), (120, 120, 115), (170, 150, 110), (70, 110, 70), (190, 185, 175))
_FUR = ((120, 80, 45), (200, 160, 100), (40, 35, 30), (160, 150, 140), (225, 215, 190), (165, 95, 45))
_PAINT = ((215, 35, 30), (230, 190, 30), (230, 230, 230), (35, 80, 160), (40, 120, 70), (230, 120, 30))


class ObjectCanvas:
    """An image being painted back to front: ``label`` uint8 (h, w) VOC ids, ``rgb`` float32 (h, w, 3).

    ``class_tint`` blends every object colour towards :data:`CLASS_HUES` (see
    :mod:`llseg.data.voc.synthetic`)."""

    def __init__(self, rng: np.random.Generator, h: int, w: int, class_tint: float = 0.0) -> None:
        self.rng, self.h, self.w, self.class_tint = rng, h, w, class_tint
        self.label = np.zeros((h, w), dtype=np.uint8)
        self.rgb = np.zeros((h, w, 3), dtype=np.float32)
        self.grain = rng.standard_normal((h, w)).astype(np.float32)
        self.blob = smooth_noise(rng, h, w, max(2, h // 24))

    def paint(self, cls: int, st: Stencil, colour: Colour, grain: float = 4.0, blob: float = 0.0) -> None:
        """Label the stencil's pixels ``cls``; colour = ``colour`` (RGB or box-shaped) + noise."""
        if st.empty:
            return
        m = st.mask()
        if not m.any():
            return
        sl = st.slices
        self.label[sl][m] = cls
        tex = np.broadcast_to(colour, (st.bh, st.bw, 3))[m]
        if cls and self.class_tint:
            tex = (1.0 - self.class_tint) * tex + self.class_tint * CLASS_HUES[cls]
        self.rgb[sl][m] = tex + (grain * self.grain[sl][m] + blob * self.blob[sl][m])[:, None]

    def box(self) -> Stencil:
        return Stencil(self.h, self.w, 0, 0, self.w, self.h)

    def background(self) -> None:
        """Two-tone room or landscape plus 3..9 clutter shapes, all labelled background (0)."""
        rng, h, w = self.rng, self.h, self.w
        split = h * rng.uniform(0.35, 0.75)
        if rng.random() < 0.4:  # outdoor: sky over grass, sand or water
            top = rgb(rng, (60, 100, 160), (190, 210, 245))
            bottom = pick(rng, ((90, 130, 55), (190, 170, 120), (50, 90, 120), (120, 115, 105)), 20)
        else:  # indoor: wall over floor
            top = pick(rng, ((215, 210, 195), (180, 160, 130), (150, 165, 175), (200, 190, 160), (120, 110, 100)), 20)
            bottom = pick(rng, _WOOD + ((110, 110, 115), (160, 150, 140)), 20)
        rows = np.arange(h, dtype=np.float32)[:, None, None]
        colour = np.where(rows < split, top * (0.9 + 0.2 * rows / h), bottom)
        self.paint(0, self.box().rect(0, 0, w, h), colour, grain=3.0, blob=10.0)
        for _ in range(int(rng.integers(3, 10))):
            x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.04, 0.2) * min(h, w)
            st = Stencil(h, w, x - r, y - r, x + r, y + r)
            kind = int(rng.integers(4))
            if kind == 0:  # irregular blob
                angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(4, 8))))
                radii = r * rng.uniform(0.4, 1.0, angles.size)
                st.polygon([(x + a * np.cos(t), y + a * np.sin(t)) for a, t in zip(radii, angles)])
            elif kind == 1:  # bar (shelf, frame, pipe)
                st.line([(x - r, y + rng.uniform(-r, r)), (x + r, y + rng.uniform(-r, r))], rng.uniform(0.1, 0.3) * r)
            elif kind == 2:  # round spot
                st.ellipse(x, y, r, r * rng.uniform(0.3, 1.0))
            else:  # striped panel (curtain, blinds)
                st.rect(x - r, y - r, x + r, y + r)
            base = pick(rng, _PAINT + _FABRIC + _WOOD, 30)
            ys, xs = st.grid()
            stripes = ((xs if rng.random() < 0.5 else ys) % rng.uniform(3, 8)) < 1.5
            colour = np.where(stripes[..., None], base * 0.75, base) if kind == 3 else base
            self.paint(0, st, colour, grain=5.0, blob=8.0)

    def add_object(self, cls: int) -> None:
        rng, h, w = self.rng, self.h, self.w
        s = rng.uniform(0.2, 0.42) * min(h, w)
        cx, cy = rng.uniform(0.12, 0.88) * w, rng.uniform(0.15, 0.85) * h
        _DRAW[cls](ObjectShape(self, cls, cx, cy, s, 1 if rng.random() < 0.5 else -1), rng)

    def void_outlines(self) -> np.ndarray:
        """``label`` with 255 on a 1-pixel band along every object outline: of two 4-neighbours
        with different ids, the one with the lower id (background, or the occluded class) is void."""
        lab = self.label
        void = np.zeros(lab.shape, dtype=bool)
        void[1:] |= lab[1:] < lab[:-1]
        void[:-1] |= lab[:-1] < lab[1:]
        void[:, 1:] |= lab[:, 1:] < lab[:, :-1]
        void[:, :-1] |= lab[:, :-1] < lab[:, 1:]
        return np.where(void, np.uint8(IGNORE_INDEX), lab)

    def finish(self) -> np.ndarray:
        """Global light jitter and sensor noise; returns ``uint8 (h, w, 3)``."""
        rng = self.rng
        rgb = self.rgb * rng.uniform(0.75, 1.15) * (1.0 + rng.uniform(-0.06, 0.06, 3)).astype(np.float32)
        rgb = rgb + rng.normal(0.0, 3.0, rgb.shape).astype(np.float32)
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


class ObjectShape:
    """Drawing helper for one object: local coordinates ``(u, v)`` in units of the object size
    ``s`` around ``(cx, cy)``; ``u`` points forward (mirrored when ``facing`` is -1), ``v`` down."""

    def __init__(self, canvas: ObjectCanvas, cls: int, cx: float, cy: float, s: float, facing: int) -> None:
        self.canvas, self.cls, self.cx, self.cy, self.s, self.facing = canvas, cls, cx, cy, s, facing

    def pt(self, u: float, v: float) -> tuple[float, float]:
        return self.cx + self.facing * u * self.s, self.cy + v * self.s

    def stencil(self) -> Stencil:
        r = 1.3 * self.s
        return Stencil(self.canvas.h, self.canvas.w, self.cx - r, self.cy - r, self.cx + r, self.cy + r)

    def poly(self, pts: Sequence[tuple[float, float]]) -> Stencil:
        return self.stencil().polygon([self.pt(u, v) for u, v in pts])

    def rect(self, u0: float, v0: float, u1: float, v1: float) -> Stencil:
        return self.poly([(u0, v0), (u1, v0), (u1, v1), (u0, v1)])

    def ellipse(self, u: float, v: float, ru: float, rv: float) -> Stencil:
        x, y = self.pt(u, v)
        return self.stencil().ellipse(x, y, ru * self.s, rv * self.s)

    def line(self, pts: Sequence[tuple[float, float]], width: float) -> Stencil:
        return self.stencil().line([self.pt(u, v) for u, v in pts], max(1.0, width * self.s))

    def paint(self, st: Stencil, colour: Colour, grain: float = 4.0, blob: float = 0.0) -> None:
        self.canvas.paint(self.cls, st, colour, grain, blob)

    def stripes(self, st: Stencil, period: float, base: Colour, dark: float = 0.55, slope: float = 0.3) -> Colour:
        """``base`` with darker bands ``period`` object units apart, roughly across ``u``."""
        ys, xs = st.grid()
        phase = ((xs - self.cx) * self.facing + slope * (ys - self.cy)) / (period * self.s)
        return np.where((phase % 1 < 0.4)[..., None], base * dark, base)


# One painter per class: each draws a silhouette of several parts within about |u|, |v| <= 1.


def _aeroplane(o: ObjectShape, rng: np.random.Generator) -> None:
    body = pick(rng, ((230, 230, 235), (190, 195, 200), (225, 225, 215)), 10)
    o.paint(o.poly([(-0.95, -0.55), (-0.75, -0.55), (-0.55, -0.08), (-0.9, -0.08)]), pick(rng, _PAINT, 10), grain=2.0)
    o.paint(o.ellipse(0.0, 0.0, 1.0, 0.14), body, grain=2.0)
    o.paint(o.poly([(0.2, 0.02), (-0.15, 0.02), (-0.45, 0.5), (-0.28, 0.5)]), body * 0.85, grain=2.0)
    o.paint(o.line([(-0.7, -0.02), (0.75, -0.02)], 0.05), pick(rng, _PAINT, 10), grain=2.0)


def _bicycle(o: ObjectShape, rng: np.random.Generator) -> None:
    frame = pick(rng, VEHICLE_COLOURS + _PAINT, 20)
    st = o.stencil()
    for u in (-0.55, 0.55):
        x, y = o.pt(u, 0.4)
        st.ellipse(x, y, 0.38 * o.s, 0.38 * o.s, width=max(1, round(0.06 * o.s)))
    pts = [(-0.55, 0.4), (0.0, 0.4), (-0.15, -0.2), (-0.55, 0.4)]
    st.line([o.pt(u, v) for u, v in pts], max(1.0, 0.06 * o.s))
    st.line([o.pt(u, v) for u, v in ((0.0, 0.4), (0.45, -0.25), (0.55, 0.4))], max(1.0, 0.06 * o.s))
    st.line([o.pt(u, v) for u, v in ((-0.15, -0.2), (0.45, -0.25), (0.35, -0.38))], max(1.0, 0.06 * o.s))
    o.paint(st, frame, grain=3.0)


def _bird(o: ObjectShape, rng: np.random.Generator) -> None:
    feathers = pick(rng, ((110, 75, 45), (40, 40, 45), (60, 90, 150), (200, 190, 170), (170, 60, 40)), 15)
    o.paint(o.poly([(-0.35, 0.0), (-0.85, -0.12), (-0.85, 0.15)]), feathers * 0.7, grain=6.0)
    o.paint(o.ellipse(0.0, 0.05, 0.45, 0.25), feathers, grain=9.0)
    o.paint(o.ellipse(0.42, -0.22, 0.17, 0.16), feathers * 0.9, grain=6.0)
    o.paint(o.poly([(0.55, -0.26), (0.8, -0.2), (0.55, -0.15)]), rgb(rng, (200, 150, 20), (240, 200, 60)), grain=3.0)
    o.paint(o.poly([(-0.2, -0.05), (0.2, -0.05), (-0.35, -0.8)]), feathers * 0.6, grain=9.0)
    o.paint(o.line([(0.0, 0.25), (-0.05, 0.55)], 0.04), grey(rng, 40, 90, 4), grain=2.0)


def _boat(o: ObjectShape, rng: np.random.Generator) -> None:
    hull = pick(rng, _PAINT + ((120, 80, 50),), 15)
    o.paint(o.poly([(-0.95, 0.2), (0.95, 0.2), (0.65, 0.55), (-0.7, 0.55)]), hull, grain=3.0, blob=4.0)
    o.paint(o.line([(0.0, 0.2), (0.0, -0.9)], 0.05), grey(rng, 60, 120, 4), grain=2.0)
    sail = o.poly([(0.05, -0.85), (0.05, 0.12), (0.65, 0.12)])
    o.paint(sail, o.stripes(sail, 0.35, grey(rng, 215, 245, 3), dark=0.85, slope=-2.0), grain=3.0)


def _bottle(o: ObjectShape, rng: np.random.Generator) -> None:
    glass = pick(rng, ((40, 110, 50), (110, 60, 25), (150, 190, 200), (25, 45, 30)), 15)
    body = o.poly([(-0.22, 0.95), (0.22, 0.95), (0.22, -0.15), (0.09, -0.4), (-0.09, -0.4), (-0.22, -0.15)])
    ys, xs = body.grid()
    shine = np.abs((xs - o.cx) / o.s + 0.1) < 0.05
    o.paint(body, np.where(shine[..., None], glass + 80, glass), grain=3.0)
    o.paint(o.rect(-0.09, -0.75, 0.09, -0.38), glass, grain=3.0)
    o.paint(o.rect(-0.11, -0.85, 0.11, -0.74), pick(rng, _PAINT, 15), grain=3.0)
    o.paint(o.rect(-0.22, 0.2, 0.22, 0.55), pick(rng, _PAINT, 15), grain=3.0)


def _wheels(o: ObjectShape, rng: np.random.Generator, us: Sequence[float], v: float, r: float) -> None:
    tyre, hub = grey(rng, 15, 40, 3), grey(rng, 130, 180, 4)
    for u in us:
        o.paint(o.ellipse(u, v, r, r), tyre, grain=3.0)
        o.paint(o.ellipse(u, v, 0.45 * r, 0.45 * r), hub, grain=3.0)


def _bus(o: ObjectShape, rng: np.random.Generator) -> None:
    body = pick(rng, ((230, 190, 30), (210, 40, 35), (230, 230, 230), (40, 90, 170)), 15)
    o.paint(o.poly([(-1.0, -0.55), (0.95, -0.55), (1.0, -0.45), (1.0, 0.4), (-1.0, 0.4)]), body, grain=3.0, blob=3.0)
    glass = rgb(rng, (30, 40, 55), (80, 95, 120))
    for i in range(5):
        u0 = -0.92 + 0.36 * i
        o.paint(o.rect(u0, -0.45, u0 + 0.28, -0.1), glass, grain=3.0)
    o.paint(o.rect(-1.0, 0.05, 1.0, 0.13), pick(rng, _PAINT, 15), grain=3.0)
    _wheels(o, rng, (-0.6, 0.6), 0.42, 0.17)


def _car(o: ObjectShape, rng: np.random.Generator) -> None:
    body = pick(rng, VEHICLE_COLOURS, 18)
    o.paint(o.poly([(-0.95, 0.35), (-0.95, 0.0), (-0.55, -0.08), (-0.35, -0.4), (0.35, -0.4), (0.6, -0.05),
                    (0.95, 0.02), (0.95, 0.35)]), body, grain=3.0, blob=3.0)
    glass = rgb(rng, (30, 40, 55), (80, 95, 120))
    o.paint(o.poly([(-0.3, -0.34), (-0.02, -0.34), (-0.02, -0.08), (-0.45, -0.08)]), glass, grain=3.0)
    o.paint(o.poly([(0.04, -0.34), (0.32, -0.34), (0.5, -0.08), (0.04, -0.08)]), glass, grain=3.0)
    _wheels(o, rng, (-0.55, 0.55), 0.35, 0.19)


def _legs(o: ObjectShape, colour: Colour, us: Sequence[float], v0: float, v1: float, width: float) -> None:
    st = o.stencil()
    for u in us:
        st.line([o.pt(u, v0), o.pt(u + 0.03, v1)], max(1.0, width * o.s))
    o.paint(st, colour, grain=5.0)


def _cat(o: ObjectShape, rng: np.random.Generator) -> None:
    fur = pick(rng, _FUR, 15)
    o.paint(o.line([(-0.55, 0.1), (-0.8, -0.1), (-0.75, -0.45)], 0.07), fur * 0.8, grain=5.0)
    _legs(o, fur * 0.8, (-0.4, -0.25, 0.2, 0.35), 0.2, 0.55, 0.08)
    body = o.ellipse(-0.05, 0.12, 0.52, 0.24)
    o.paint(body, o.stripes(body, 0.16, fur), grain=6.0)
    head = o.ellipse(0.5, -0.15, 0.2, 0.18)
    o.paint(head, o.stripes(head, 0.12, fur), grain=6.0)
    o.paint(o.poly([(0.36, -0.25), (0.42, -0.46), (0.5, -0.3)]), fur, grain=5.0)
    o.paint(o.poly([(0.52, -0.3), (0.62, -0.46), (0.66, -0.25)]), fur, grain=5.0)


def _chair(o: ObjectShape, rng: np.random.Generator) -> None:
    wood = pick(rng, _WOOD + _FABRIC[:2], 15)
    st = o.stencil()
    for u0, u1 in ((-0.4, -0.4), (0.4, 0.4), (-0.28, -0.25), (0.28, 0.3)):
        st.line([o.pt(u0, 0.1), o.pt(u1, 0.85)], max(1.0, 0.06 * o.s))
    st.polygon([o.pt(u, v) for u, v in ((-0.45, 0.0), (0.45, 0.0), (0.45, 0.12), (-0.45, 0.12))])
    st.polygon([o.pt(u, v) for u, v in ((-0.45, -0.85), (-0.32, -0.85), (-0.32, 0.05), (-0.45, 0.05))])
    st.polygon([o.pt(u, v) for u, v in ((-0.45, -0.85), (0.1, -0.85), (0.1, -0.72), (-0.45, -0.72))])
    o.paint(st, wood, grain=4.0, blob=3.0)


def _cow(o: ObjectShape, rng: np.random.Generator) -> None:
    hide = pick(rng, ((235, 230, 220), (130, 80, 45), (60, 45, 35)), 12)
    spots = grey(rng, 15, 45, 4)
    _legs(o, hide * 0.8, (-0.5, -0.35, 0.35, 0.5), 0.2, 0.85, 0.1)
    body = o.ellipse(0.0, 0.0, 0.65, 0.3)
    patches = (o.canvas.blob[body.slices] > 0.4)[..., None]
    o.paint(body, np.where(patches, spots, hide), grain=4.0)
    o.paint(o.poly([(0.55, -0.25), (0.85, -0.2), (0.95, 0.1), (0.75, 0.12), (0.55, 0.0)]), hide * 0.9, grain=4.0)
    o.paint(o.poly([(0.6, -0.25), (0.55, -0.4), (0.68, -0.28)]), grey(rng, 200, 230, 3), grain=2.0)
    o.paint(o.line([(-0.62, -0.05), (-0.75, 0.4)], 0.04), hide * 0.7, grain=3.0)


def _diningtable(o: ObjectShape, rng: np.random.Generator) -> None:
    wood = pick(rng, _WOOD, 15)
    top = o.poly([(-0.8, -0.2), (0.8, -0.2), (1.0, 0.05), (-1.0, 0.05)])
    o.paint(top, o.stripes(top, 0.09, wood, dark=0.8, slope=-6.0), grain=4.0)
    o.paint(o.rect(-1.0, 0.05, 1.0, 0.14), wood * 0.7, grain=4.0)
    for u in (-0.85, -0.65, 0.65, 0.85):
        o.paint(o.rect(u - 0.05, 0.1, u + 0.05, 0.75), wood * 0.75, grain=4.0)
    if rng.random() < 0.5:  # a plate or a bowl on it
        o.paint(o.ellipse(rng.uniform(-0.5, 0.5), -0.1, 0.18, 0.06), grey(rng, 215, 245, 3), grain=2.0)


def _dog(o: ObjectShape, rng: np.random.Generator) -> None:
    fur = pick(rng, _FUR, 15)
    o.paint(o.line([(-0.5, 0.0), (-0.75, -0.35)], 0.07), fur, grain=5.0)
    _legs(o, fur * 0.9, (-0.4, -0.28, 0.28, 0.4), 0.15, 0.7, 0.1)
    o.paint(o.ellipse(-0.02, 0.05, 0.52, 0.22), fur, grain=5.0, blob=6.0)
    o.paint(o.ellipse(0.52, -0.28, 0.2, 0.17), fur, grain=5.0, blob=6.0)
    o.paint(o.poly([(0.62, -0.3), (0.88, -0.22), (0.86, -0.12), (0.62, -0.14)]), fur * 0.85, grain=5.0)
    o.paint(o.poly([(0.4, -0.4), (0.36, -0.05), (0.48, -0.18)]), fur * 0.6, grain=5.0)


def _horse(o: ObjectShape, rng: np.random.Generator) -> None:
    coat = pick(rng, ((120, 70, 35), (60, 40, 30), (170, 120, 70), (215, 210, 200)), 12)
    mane = coat * 0.45
    o.paint(o.poly([(-0.6, -0.2), (-0.85, 0.3), (-0.7, 0.32)]), mane, grain=5.0)
    _legs(o, coat * 0.85, (-0.5, -0.38, 0.35, 0.48), 0.0, 0.95, 0.07)
    o.paint(o.ellipse(-0.05, -0.12, 0.6, 0.24), coat, grain=4.0, blob=4.0)
    o.paint(o.poly([(0.35, -0.25), (0.55, -0.75), (0.72, -0.7), (0.55, -0.05)]), coat, grain=4.0)
    o.paint(o.poly([(0.5, -0.8), (0.62, -0.9), (0.98, -0.6), (0.9, -0.5), (0.6, -0.58)]), coat, grain=4.0)
    o.paint(o.line([(0.5, -0.78), (0.38, -0.25)], 0.06), mane, grain=4.0)


def _motorbike(o: ObjectShape, rng: np.random.Generator) -> None:
    _wheels(o, rng, (-0.6, 0.6), 0.45, 0.32)
    o.paint(o.poly([(-0.85, -0.05), (-0.1, -0.1), (0.4, -0.2), (0.65, -0.45), (0.75, -0.05), (0.3, 0.25),
                    (-0.4, 0.2)]), pick(rng, VEHICLE_COLOURS + _PAINT, 20), grain=3.0)
    o.paint(o.poly([(-0.25, 0.1), (0.25, 0.1), (0.2, 0.4), (-0.2, 0.4)]), grey(rng, 90, 150, 5), grain=3.0)
    o.paint(o.line([(0.55, -0.4), (0.55, -0.7), (0.4, -0.75)], 0.05), grey(rng, 40, 80, 4), grain=2.0)


def _person(o: ObjectShape, rng: np.random.Generator) -> None:
    clothes, skin = pick(rng, CLOTHES, 15), pick(rng, SKIN, 10)
    stride = rng.uniform(-0.15, 0.15)
    _legs(o, pick(rng, CLOTHES, 15) * 0.7, (-0.1 - stride, 0.1 + stride), 0.15, 0.95, 0.12)
    o.paint(o.poly([(-0.18, 0.2), (0.18, 0.2), (0.25, -0.5), (-0.25, -0.5)]), clothes, grain=4.0, blob=4.0)
    arms = o.stencil()
    for side in (-1, 1):
        arms.line([o.pt(0.22 * side, -0.45), o.pt(0.35 * side, 0.15)], max(1.0, 0.08 * o.s))
    o.paint(arms, clothes * 0.9, grain=4.0)
    head = o.ellipse(0.0, -0.68, 0.15, 0.18)
    ys, _ = head.grid()
    o.paint(head, np.where((ys < o.cy - 0.75 * o.s)[..., None], grey(rng, 20, 90, 8), skin), grain=4.0)


def _pottedplant(o: ObjectShape, rng: np.random.Generator) -> None:
    leaves = o.stencil()
    for _ in range(6):
        x, y = o.pt(rng.uniform(-0.35, 0.35), rng.uniform(-0.75, 0.05))
        r = rng.uniform(0.15, 0.3) * o.s
        leaves.ellipse(x, y, r, r * rng.uniform(0.5, 1.0))
    o.paint(leaves, foliage(rng), grain=10.0, blob=18.0)
    o.paint(o.poly([(-0.35, 0.3), (0.35, 0.3), (0.25, 0.95), (-0.25, 0.95)]),
            pick(rng, ((180, 90, 50), (210, 200, 190), (60, 60, 65)), 15), grain=4.0)


def _sheep(o: ObjectShape, rng: np.random.Generator) -> None:
    wool = pick(rng, ((235, 230, 215), (210, 200, 180), (190, 185, 175)), 10)
    _legs(o, grey(rng, 25, 60, 4), (-0.35, -0.2, 0.2, 0.35), 0.2, 0.65, 0.06)
    fleece = o.stencil()
    for u, v in ((-0.4, 0.0), (-0.15, -0.15), (0.15, -0.15), (0.35, 0.0), (0.0, 0.15), (-0.25, 0.15), (0.25, 0.15)):
        x, y = o.pt(u + rng.uniform(-0.04, 0.04), v)
        fleece.ellipse(x, y, 0.22 * o.s, 0.2 * o.s)
    o.paint(fleece, wool, grain=14.0, blob=10.0)
    o.paint(o.ellipse(0.6, -0.12, 0.15, 0.12), grey(rng, 30, 80, 6), grain=4.0)


def _sofa(o: ObjectShape, rng: np.random.Generator) -> None:
    fabric = pick(rng, _FABRIC, 15)
    o.paint(o.rect(-0.9, -0.5, 0.9, 0.05), fabric * 0.9, grain=5.0, blob=5.0)
    seat = o.rect(-0.9, 0.0, 0.9, 0.45)
    ys, xs = seat.grid()
    seams = np.abs(((xs - o.cx) / o.s) % 0.6 - 0.3) < 0.02
    o.paint(seat, np.where(seams[..., None], fabric * 0.6, fabric), grain=5.0, blob=5.0)
    for u in (-1.0, 0.8):
        o.paint(o.rect(u, -0.2, u + 0.2, 0.45), fabric * 0.8, grain=5.0, blob=5.0)
    _legs(o, pick(rng, _WOOD, 10), (-0.85, 0.85), 0.45, 0.55, 0.06)


def _train(o: ObjectShape, rng: np.random.Generator) -> None:
    body = pick(rng, _PAINT + VEHICLE_COLOURS[:3], 15)
    o.paint(o.poly([(-1.0, -0.45), (0.7, -0.45), (1.0, -0.05), (1.0, 0.35), (-1.0, 0.35)]), body, grain=3.0, blob=3.0)
    glass = rgb(rng, (30, 40, 55), (80, 95, 120))
    for i in range(4):
        u0 = -0.95 + 0.4 * i
        o.paint(o.rect(u0, -0.35, u0 + 0.25, -0.12), glass, grain=3.0)
    o.paint(o.poly([(0.72, -0.38), (0.9, -0.1), (0.72, -0.1)]), glass, grain=3.0)
    o.paint(o.rect(-1.0, 0.0, 1.0, 0.08), pick(rng, _PAINT, 15), grain=3.0)
    o.paint(o.rect(-1.0, 0.35, 1.0, 0.48), grey(rng, 30, 60, 4), grain=3.0)
    o.paint(o.line([(-0.2, -0.45), (0.0, -0.65), (0.2, -0.45)], 0.03), grey(rng, 40, 80, 3), grain=2.0)


def _tvmonitor(o: ObjectShape, rng: np.random.Generator) -> None:
    o.paint(o.poly([(-0.1, 0.4), (0.1, 0.4), (0.25, 0.65), (-0.25, 0.65)]), grey(rng, 20, 60, 4), grain=3.0)
    o.paint(o.rect(-0.75, -0.55, 0.75, 0.42), grey(rng, 15, 70, 4), grain=3.0)
    screen = o.rect(-0.65, -0.45, 0.65, 0.32)
    glow = rgb(rng, (60, 60, 90), (230, 230, 250))
    picture = glow + 60 * o.canvas.blob[screen.slices][..., None] * rgb(rng, (-1, -1, -1), (1, 1, 1))
    o.paint(screen, picture, grain=3.0)


_DRAW: dict[int, Callable[[ObjectShape, np.random.Generator], None]] = {
    VOC.class_index(fn.__name__[1:]): fn
    for fn in (_aeroplane, _bicycle, _bird, _boat, _bottle, _bus, _car, _cat, _chair, _cow, _diningtable, _dog,
               _horse, _motorbike, _person, _pottedplant, _sheep, _sofa, _train, _tvmonitor)
}
