"""The road users of a synthetic street scene: vehicles, persons and riders on their bikes.

Each class is a :class:`~llseg.data.cityscapes.canvas.StreetCanvas` mixin; sizes follow the
ground geometry (``ppm(t)`` pixels per metre at depth ``t``).
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np

from llseg.data.cityscapes.canvas import DrawItems, StreetCanvas
from llseg.data.procedural import CLOTHES, SKIN, VEHICLE_COLOURS, Stencil, grey, pick, rgb


class Vehicles(StreetCanvas):
    """Side views of cars, trucks, buses and trams."""

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
            wheels: tuple[float, ...] = (0.2, 0.8)
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


class People(StreetCanvas):
    """Persons, riders and the bicycles and motorcycles they ride or that stand parked."""

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


class RoadUsers(Vehicles, People):
    """Places vehicles on the road and persons, riders and parked bikes on the road and sidewalks."""

    def person_at(self, lateral: float, t: float) -> None:
        """A person standing at ground point (lateral, t)."""
        self.person(self.x_at(lateral, t), self.y_at(t), self.ppm(t))

    def parked_two_wheeler(self, bike: str, lateral: float, t: float, facing: int) -> None:
        """A bicycle or motorcycle parked at ground point (lateral, t); its seat height is not needed."""
        self.two_wheeler(bike, self.x_at(lateral, t), self.y_at(t), self.ppm(t), facing)

    def plan_traffic(self, items: DrawItems) -> None:
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
                items.append((t, partial(self.vehicle, kind, lateral, t, facing)))
        for _ in range(int(rng.choice([0, 1, 2, 2, 3, 4]))):
            lateral, t = on_walk(0.15, 0.9) if rng.random() < 0.7 else on_road(0.15, 0.9)
            items.append((t, partial(self.person_at, lateral, t)))
        for _ in range(int(rng.choice([0, 0, 1, 1, 2]))):
            lateral, t = on_road(0.2, 0.85)
            bike = "motorcycle" if rng.random() < 0.5 else "bicycle"
            facing = 1 if rng.random() < 0.5 else -1
            items.append((t, partial(self.rider, bike, lateral, t, facing)))
        for bike, p in (("bicycle", 0.35), ("motorcycle", 0.3)):
            if rng.random() < p:
                lateral, t = on_walk(0.2, 0.85)
                facing = 1 if rng.random() < 0.5 else -1
                items.append((t, partial(self.parked_two_wheeler, bike, lateral, t, facing)))
