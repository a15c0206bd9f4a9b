"""The canvas of a synthetic street scene: ground-plane geometry and the labelled paint call.

Every part of :class:`~llseg.data.cityscapes.synthetic.StreetScene` (sky, buildings, ground,
roadside, street furniture, road users) is a mixin over :class:`StreetCanvas`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from llseg.data.labels import CITYSCAPES_LABELS
from llseg.data.procedural import Colour, Stencil, smooth_noise

_ID: dict[str, int] = {lab.name: lab.id for lab in CITYSCAPES_LABELS}
_PPM = 0.3  # pixels per metre at the bottom image row, as a fraction of the image height
DrawItems = list[tuple[float, Callable[[], None]]]  # (depth t, draw), painted far (small t) to near


class StreetCanvas:
    """One street scene being painted back to front.

    ``label`` is ``uint8 (h, w)`` of raw Cityscapes ids (void ids included: they map to 255 =
    ignore); ``rgb`` is ``float32 (h, w, 3)``. Ground geometry: horizon row ``yh``, vanishing
    column ``vx``; a ground point at depth parameter ``t = (y - yh) / (h - yh)`` (0 at the horizon,
    1 at the bottom row) and lateral position ``X`` (in image widths at the bottom row) is at
    ``x = vx + X * t * w``; ``ppm(t)`` pixels per metre.
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
              mask: np.ndarray | None = None) -> None:
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

    def brick_colour(self, st: Stencil, base: Colour) -> Colour:
        """``base`` with light mortar joints of offset brick courses over the stencil's box (walls)."""
        ys, xs = st.grid()
        course = max(2.0, self.h / 40)
        row = np.floor(ys / course)
        mortar = ((ys % course) < 0.8) | (((xs + row * course) % (2.5 * course)) < 0.8)
        return np.where(mortar[..., None], base * 1.25 + 10, base)
