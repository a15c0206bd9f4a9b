"""The drawing of the synthetic aerial dataset: a suburban scene seen from above, in four bands.

:class:`AerialScene` paints back to front into ``label`` (``uint8 (h, w)``, ISPRS source ids 0..5:
impervious, building, low vegetation, tree, car, clutter) and a reflectance image (R, G, B, NIR);
layers are ground, roads, squares with parked cars, buildings, clutter, then trees. Shadows
darken what they fall on but keep its label, as in the ISPRS labels.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llseg.data.procedural import Stencil, smooth_noise

IMPERVIOUS, BUILDING, LOW_VEGETATION, TREE, CAR, CLUTTER = range(6)
_AREA = 384 * 384  # object counts are per this many pixels

# Reflectances (R, G, B, NIR), 0..255. Vegetation is dark in red and bright in the near-infrared.
_ASPHALT = (100, 102, 108, 92)
_PAVEMENT = (170, 165, 152, 160)
_MARKING = (235, 235, 230, 225)
_GRASS = (96, 142, 68, 205)
_TREE = (42, 88, 44, 170)
_ROOFS = ((178, 82, 62, 128), (132, 78, 58, 112), (62, 64, 72, 58), (200, 196, 188, 192))
_CLUTTER = ((40, 85, 175, 50), (220, 120, 40, 120), (150, 118, 86, 150), (32, 52, 66, 14))
_GLASS = (30, 36, 48, 30)
# Car paints (R, G, B): saturated or white, never asphalt's or pavement's greys, so a car stands out from the road.
_CAR_PAINT = ((235, 235, 238), (200, 30, 30), (30, 60, 190), (230, 190, 30), (230, 110, 20), (30, 140, 60),
              (20, 150, 160))
Reflectance = np.ndarray  # float32, shape (4,) or (h, w, 4)


def _jitter(rng: np.random.Generator, base: Sequence[float], amount: float) -> Reflectance:
    """``base`` scaled by 1 +- ``amount`` and shifted by up to 8 per band."""
    return (np.asarray(base, dtype=np.float32) * rng.uniform(1 - amount, 1 + amount)
            + rng.uniform(-8, 8, 4)).astype(np.float32)


class AerialCanvas:
    """A tile being painted back to front: ``label`` uint8 (h, w) source ids, ``refl`` float32 (h, w, 4).

    Object counts and sizes are in pixels, so a larger tile shows more objects, not larger ones.
    Shadows multiply the reflectance in :meth:`finish` and never change a label."""

    def __init__(self, rng: np.random.Generator, h: int, w: int) -> None:
        self.rng, self.h, self.w = rng, h, w
        self.n = h * w / _AREA  # expected objects scale with the tile's area
        self.label = np.full((h, w), LOW_VEGETATION, dtype=np.uint8)
        self.refl = np.zeros((h, w, 4), dtype=np.float32)
        self.grain = rng.standard_normal((h, w)).astype(np.float32)
        self.fine = smooth_noise(rng, h, w, 3)
        self.coarse = smooth_noise(rng, h, w, 40)
        self.shadow = np.ones((h, w), dtype=np.float32)
        self.roads_mask = np.zeros((h, w), dtype=bool)  # roads and squares: where cars go, where buildings do not
        self.lanes: list[tuple[str, float, float, float]] = []  # (axis, centre, width, outer half-width) per road

    def count(self, per_area: float) -> int:
        return int(self.rng.poisson(per_area * self.n))

    def start(self, extent: float, size: float, overhang: float) -> float:
        """Random offset of an object of ``size`` px along a side of ``extent`` px; it may stick out by ``overhang``."""
        return float(self.rng.uniform(-overhang, max(extent - size + overhang, -overhang)))

    def paint(self, cls: int, mask: np.ndarray, sl: tuple[slice, slice], colour: Reflectance,
              grain: float = 4.0, fine: float = 0.0) -> None:
        """Label ``mask`` (bool, the shape of ``sl``) ``cls``; reflectance = ``colour`` + texture."""
        if not mask.any():
            return
        self.label[sl][mask] = cls
        tex = np.broadcast_to(colour, (*mask.shape, 4))[mask]
        self.refl[sl][mask] = tex + (grain * self.grain[sl][mask] + fine * self.fine[sl][mask])[:, None]

    def box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice]:
        """Rows and columns of the pixels whose centres lie in the box, clipped to the tile."""
        def side(a: float, b: float, n: int) -> slice:
            lo = min(max(int(round(a)), 0), n)
            return slice(lo, min(max(int(round(b)), lo), n))

        return side(y0, y1, self.h), side(x0, x1, self.w)

    def rect(self, cls: int, x0: float, y0: float, x1: float, y1: float, colour: Reflectance, **tex: float) -> None:
        sl = self.box(x0, y0, x1, y1)
        self.paint(cls, np.ones((sl[0].stop - sl[0].start, sl[1].stop - sl[1].start), dtype=bool), sl, colour, **tex)

    def cast_shadow(self, mask: np.ndarray, sl: tuple[slice, slice], offset: int, strength: float) -> None:
        """Darken to ``strength`` what lies ``offset`` px down-right of the object ``mask`` (bool, the
        shape of ``sl``) but outside it: the light comes from the top left."""
        obj = np.zeros((self.h, self.w), dtype=bool)
        obj[sl] = mask
        ys, xs = np.nonzero(mask)
        ys, xs = ys + sl[0].start + offset, xs + sl[1].start + offset
        keep = (ys < self.h) & (xs < self.w)
        ys, xs = ys[keep], xs[keep]
        ys, xs = ys[~obj[ys, xs]], xs[~obj[ys, xs]]
        self.shadow[ys, xs] = np.minimum(self.shadow[ys, xs], strength)

    def finish(self) -> np.ndarray:
        """``uint8 (h, w, 4)``: reflectance x shadow, with a gentle illumination field."""
        light = (self.shadow * (1 + 0.05 * self.coarse))[..., None]
        return np.clip(self.refl * light, 0, 255).astype(np.uint8)


class Roads(AerialCanvas):
    """Asphalt roads with sidewalks and dashed centre lines, paved squares and parking lots, and cars."""

    def roads(self) -> None:
        for axis, length in (("h", self.w), ("v", self.h)):
            across = self.h if axis == "h" else self.w
            centres: list[float] = []
            for _ in range(int(self.rng.poisson(1.3 * across / 384))):
                c = float(self.rng.uniform(0.05, 0.95) * across)
                if all(abs(c - o) > 90 for o in centres):
                    centres.append(c)
            for c in centres:
                width = float(self.rng.uniform(24, 36))
                walk = float(self.rng.uniform(4, 6))
                self._band(axis, c, width / 2 + walk, _jitter(self.rng, _PAVEMENT, 0.06), length)
                self._band(axis, c, width / 2, _jitter(self.rng, _ASPHALT, 0.1), length)
                marking = _jitter(self.rng, _MARKING, 0.03)
                for s in np.arange(float(self.rng.uniform(0, 20)), length, 22.0):
                    x0, y0, x1, y1 = (s, c - 1, s + 11, c + 1) if axis == "h" else (c - 1, s, c + 1, s + 11)
                    self.rect(IMPERVIOUS, x0, y0, x1, y1, marking, grain=2.0)
                self.lanes.append((axis, c, width, width / 2 + walk))

    def _band(self, axis: str, c: float, half: float, colour: Reflectance, length: int) -> None:
        x0, y0, x1, y1 = (0, c - half, length, c + half) if axis == "h" else (c - half, 0, c + half, length)
        self.rect(IMPERVIOUS, x0, y0, x1, y1, colour, grain=4.0, fine=3.0)
        self.roads_mask[self.label == IMPERVIOUS] = True

    def squares(self) -> None:
        """Paved squares and parking lots, the latter with rows of parked cars; then the cars in the lanes."""
        for _ in range(self.count(1.5)):
            bw, bh = self.rng.uniform(50, 120, 2)
            x0, y0 = self.start(self.w, bw, 10), self.start(self.h, bh, 10)
            parking = self.rng.random() < 0.6
            colour = _jitter(self.rng, _ASPHALT if parking else _PAVEMENT, 0.08)
            self.rect(IMPERVIOUS, x0, y0, x0 + bw, y0 + bh, colour, grain=4.0, fine=3.0)
            self.roads_mask[self.label == IMPERVIOUS] = True
            if parking:
                for y in np.arange(y0 + 4, y0 + bh - 34, 40.0):
                    for x in np.arange(x0 + 4, x0 + bw - 16, 21.0):
                        if self.rng.random() < 0.75:
                            self._car(x + 10, y + 18, "v")
        for axis, c, width, _ in self.lanes:
            length = self.w if axis == "h" else self.h
            for _ in range(int(self.rng.poisson(6 * length / 384))):
                lane = c + (width / 4 if self.rng.random() < 0.5 else -width / 4)
                s = self.start(length, 0, 0)
                if axis == "h":
                    self._car(s, lane, "h")
                else:
                    self._car(lane, s, "v")

    def _car(self, cx: float, cy: float, axis: str) -> None:
        """A car centred at (cx, cy), about 16 x 31 px along ``axis``, if it lies on a road or square
        and overlaps no other car."""
        cw, cl = float(self.rng.uniform(14, 17)), float(self.rng.uniform(28, 34))
        bw, bh = (cl, cw) if axis == "h" else (cw, cl)
        x0, y0 = cx - bw / 2, cy - bh / 2
        sl = self.box(x0, y0, x0 + bw, y0 + bh)
        if (self.label[sl] == CAR).any() or not self.roads_mask[sl].all():
            return
        paint = np.asarray(_CAR_PAINT[int(self.rng.integers(len(_CAR_PAINT)))], dtype=np.float32)
        body = np.append(paint, 0.6 * paint.mean() + 20).astype(np.float32) + self.rng.uniform(-10, 10, 4).astype(np.float32)
        self.cast_shadow(np.ones((sl[0].stop - sl[0].start, sl[1].stop - sl[1].start), dtype=bool), sl, 3, 0.5)
        self.rect(CAR, x0, y0, x0 + bw, y0 + bh, body, grain=3.0)
        glass = np.asarray(_GLASS, dtype=np.float32)
        front = self.rng.random() < 0.5  # which end the windscreen is at
        for a, b in ((0.18, 0.38), (0.78, 0.9)) if front else ((0.1, 0.22), (0.62, 0.82)):
            if axis == "h":
                self.rect(CAR, x0 + a * bw, y0 + 1.5, x0 + b * bw, y0 + bh - 1.5, glass, grain=2.0)
            else:
                self.rect(CAR, x0 + 1.5, y0 + a * bh, x0 + bw - 1.5, y0 + b * bh, glass, grain=2.0)


class Buildings(AerialCanvas):
    """Houses along the roads and scattered, with gabled or flat roofs casting shadows."""

    def buildings(self) -> None:
        """Rows of houses set back along both sides of every road, then a few anywhere."""
        for axis, c, _, outer in self.lanes:
            length = self.w if axis == "h" else self.h
            for side in (-1, 1):
                s = float(self.rng.uniform(-30, 10))
                while s < length:
                    along, depth = self.rng.uniform(36, 90), self.rng.uniform(36, 80)
                    if self.rng.random() < 0.8:
                        near = c + side * (outer + self.rng.uniform(6, 22))
                        a0 = min(near, near + side * depth)
                        self._building(*((s, a0, along, depth) if axis == "h" else (a0, s, depth, along)))
                    s += along + float(self.rng.uniform(8, 30))
        for _ in range(self.count(12.0)):
            bw, bh = self.rng.uniform(36, 110, 2)
            self._building(self.start(self.w, bw, 20), self.start(self.h, bh, 20), bw, bh)

    def _building(self, x0: float, y0: float, bw: float, bh: float) -> None:
        """A building at (x0, y0) of bw x bh px unless it comes within 4 px of a road, square or building."""
        around = self.box(x0 - 4, y0 - 4, x0 + bw + 4, y0 + bh + 4)
        if not self.roads_mask[around].any() and not (self.label[around] == BUILDING).any():
            self._roof(x0, y0, bw, bh)

    def _roof(self, x0: float, y0: float, bw: float, bh: float) -> None:
        roof = _jitter(self.rng, _ROOFS[int(self.rng.integers(len(_ROOFS)))], 0.08)
        sl = self.box(x0, y0, x0 + bw, y0 + bh)
        mask = np.ones((sl[0].stop - sl[0].start, sl[1].stop - sl[1].start), dtype=bool)
        if not mask.size:
            return
        self.cast_shadow(mask, sl, int(self.rng.integers(5, 9)), 0.55)
        ys = np.arange(sl[0].start, sl[0].stop, dtype=np.float32)[:, None] - y0
        xs = np.arange(sl[1].start, sl[1].stop, dtype=np.float32)[None, :] - x0
        if self.rng.random() < 0.6:  # gable roof: the ridge along the long side, two halves lit differently
            along_x = bw >= bh
            across = ys / bh if along_x else xs / bw
            lit = np.where(across < 0.5, 1.15, 0.8)
            stripes = 1 + 0.07 * np.sign(np.sin((ys if along_x else xs) * np.pi / 2.5))  # tile rows
            colour = roof * (lit * stripes)[..., None]
            colour = np.where((np.abs(across - 0.5) < 0.03)[..., None], roof * 0.6, colour)
        else:  # flat roof: darker parapet and a few rooftop boxes
            edge = np.minimum(np.minimum(ys, bh - 1 - ys), np.minimum(xs, bw - 1 - xs)) < 2.5
            colour = np.where(edge[..., None], roof * 0.7, roof * np.ones_like(ys)[..., None])
            for _ in range(int(self.rng.integers(0, 4))):
                u, v = self.rng.uniform(0.15, 0.75, 2)
                box = (np.abs(xs / bw - u) < 0.07) & (np.abs(ys / bh - v) < 0.07)
                colour = np.where(box[..., None], roof * 0.55, colour)
        self.paint(BUILDING, mask, sl, colour.astype(np.float32), grain=3.0)


class Greenery(AerialCanvas):
    """Grass everywhere first, clutter on open ground, tree crowns last."""

    def ground(self) -> None:
        grass = _jitter(self.rng, _GRASS, 0.08)
        self.refl[:] = grass + 10 * self.coarse[..., None] + 3 * self.grain[..., None]

    def clutter(self) -> None:
        for _ in range(self.count(4.0)):
            r = float(self.rng.uniform(9, 24))
            cx, cy = self.rng.uniform(0, self.w), self.rng.uniform(0, self.h)
            under = self.label[int(cy) % self.h, int(cx) % self.w]
            if under == BUILDING or (under == IMPERVIOUS and self.rng.random() < 0.7):
                continue  # mostly on open ground
            st = Stencil(self.h, self.w, cx - r, cy - r, cx + r, cy + r)
            kind = int(self.rng.integers(len(_CLUTTER)))
            if kind in (2, 3):  # soil heaps and ponds are blobs
                pts = [(cx + r * self.rng.uniform(0.6, 1.0) * np.cos(a), cy + r * self.rng.uniform(0.6, 1.0) * np.sin(a))
                       for a in np.sort(self.rng.uniform(0, 2 * np.pi, 9))]
                st.polygon(pts)
            else:  # tarps and containers are boxes
                st.rect(cx - r, cy - 0.6 * r, cx + r, cy + 0.6 * r)
            if not st.empty:
                self.paint(CLUTTER, st.mask(), st.slices, _jitter(self.rng, _CLUTTER[kind], 0.1), grain=5.0, fine=8.0)

    def trees(self) -> None:
        for _ in range(self.count(12.0)):
            cx, cy = self.rng.uniform(0, self.w), self.rng.uniform(0, self.h)
            for _ in range(int(self.rng.integers(2, 9))):
                r = float(self.rng.uniform(8, 16))
                x, y = cx + self.rng.uniform(-25, 25), cy + self.rng.uniform(-25, 25)
                yi, xi = int(np.clip(y, 0, self.h - 1)), int(np.clip(x, 0, self.w - 1))
                if self.label[yi, xi] in (BUILDING, CAR):
                    continue
                st = Stencil(self.h, self.w, x - r, y - r, x + r, y + r).ellipse(x, y, r, r)
                if st.empty:
                    continue
                mask, sl = st.mask(), st.slices
                self.cast_shadow(mask, sl, int(r * 0.5), 0.6)
                gy, gx = st.grid()
                light = 1.0 + 0.25 * ((x - gx) + (y - gy)) / (2 * r)  # brighter towards the top left
                crown = _jitter(self.rng, _TREE, 0.12) * light[..., None]
                self.paint(TREE, mask, sl, crown.astype(np.float32), grain=6.0, fine=22.0)


class AerialScene(Roads, Buildings, Greenery):
    """A whole tile: grass, roads, squares (with cars), buildings, clutter, then trees."""

    def draw(self) -> None:
        self.ground()
        self.roads()
        self.squares()
        self.buildings()
        self.clutter()
        self.trees()
