"""The static street of a synthetic scene: sky and skyline, ground, roadside structures, street furniture.

Each class is a :class:`~llseg.data.cityscapes.canvas.StreetCanvas` mixin; ``plan_*`` methods
append ``(depth t, draw)`` items that the scene paints far to near, together with the road users.
"""
from __future__ import annotations

import math
from functools import partial

import numpy as np

from llseg.data.cityscapes.canvas import DrawItems, StreetCanvas
from llseg.data.procedural import CLOTHES, VEHICLE_COLOURS, Colour, Stencil, foliage, grey, pick, rgb

_FACADES = ((150, 150, 150), (195, 175, 145), (150, 85, 65), (210, 205, 195), (105, 100, 95), (175, 160, 120))
_LAMPS = ((235, 45, 35), (240, 175, 35), (45, 225, 120))


class Backdrop(StreetCanvas):
    """Sky with clouds, a row of buildings with windows, and hedges or walls across the skyline."""

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


class Ground(StreetCanvas):
    """The ground below the horizon: road with markings, sidewalks, terrain or parking beside them."""

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


class Roadside(StreetCanvas):
    """Walls, fences and hedges along the outer sidewalk edge, and trees."""

    def side_quad(self, lateral: float, t0: float, t1: float, height_m: float) -> list[tuple[float, float]]:
        """Corners of a vertical strip standing on the ground line ``lateral`` from ``t0`` to ``t1``."""
        b0, b1 = (self.x_at(lateral, t0), self.y_at(t0)), (self.x_at(lateral, t1), self.y_at(t1))
        return [b0, b1, (b1[0], b1[1] - height_m * self.ppm(t1)), (b0[0], b0[1] - height_m * self.ppm(t0))]

    def plan_side_structures(self, items: DrawItems) -> None:
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
                    quad = self.side_quad(lateral, t0, t1, height)
                    items.append((t0, partial(self.strip, name, quad)))
            for _ in range(int(rng.integers(0, 3))):
                t = rng.uniform(0.05, 0.55)
                lateral = edge + side * rng.uniform(-0.05, 0.3)
                items.append((t, partial(self.tree, lateral, t)))

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


class StreetFurniture(StreetCanvas):
    """Poles carrying traffic lights and signs, and static void objects (bins, boxes)."""

    def plan_street_furniture(self, items: DrawItems) -> None:
        rng = self.rng
        n_poles = int(rng.choice([1, 2, 2, 3, 3, 4]))
        for i in range(n_poles):
            side = -1 if rng.random() < 0.5 else 1
            lateral = (-self.road_l - self.walk_l * rng.uniform(0.2, 0.8) if side < 0
                       else self.road_r + self.walk_r * rng.uniform(0.2, 0.8))
            t = rng.uniform(0.1, 0.75)
            light = rng.random() < (0.75 if i == 0 else 0.35)
            sign = rng.random() < (0.45 if light else 0.9)
            items.append((t, partial(self.pole, lateral, t, side, light, sign)))
        for _ in range(int(rng.integers(0, 3))):
            lateral = rng.choice([-1, 1]) * (rng.uniform(0.3, 0.7) + 0.2)
            t = rng.uniform(0.15, 0.8)
            items.append((t, partial(self.static_object, lateral, t)))

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
