"""Dataset metadata as data: class names, palettes and id -> train-id tables.

Label conventions used everywhere in llseg:

* label maps hold *train ids* ``0 .. num_classes-1``; ``255`` (:data:`IGNORE_INDEX`) means "ignore";
* ``DatasetInfo.background_id`` names the background class, or is ``None`` when the dataset has
  none. Cityscapes has none: train id 0 is *road*. Pascal VOC uses 0 = background. ISPRS comes
  twice: ``isprs`` (impervious surfaces = background, as in IDEC/LAG) and ``isprs-nobg`` (none).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

IGNORE_INDEX = 255


class CityscapesLabel(NamedTuple):
    """One row of the official Cityscapes label table."""

    name: str
    id: int
    train_id: int  # 255 = not evaluated
    color: tuple[int, int, int]


# The 34 label ids of gtFine_labelIds PNGs (cityscapesScripts' table, restated as data).
CITYSCAPES_LABELS: tuple[CityscapesLabel, ...] = (
    CityscapesLabel("unlabeled", 0, 255, (0, 0, 0)),
    CityscapesLabel("ego vehicle", 1, 255, (0, 0, 0)),
    CityscapesLabel("rectification border", 2, 255, (0, 0, 0)),
    CityscapesLabel("out of roi", 3, 255, (0, 0, 0)),
    CityscapesLabel("static", 4, 255, (0, 0, 0)),
    CityscapesLabel("dynamic", 5, 255, (111, 74, 0)),
    CityscapesLabel("ground", 6, 255, (81, 0, 81)),
    CityscapesLabel("road", 7, 0, (128, 64, 128)),
    CityscapesLabel("sidewalk", 8, 1, (244, 35, 232)),
    CityscapesLabel("parking", 9, 255, (250, 170, 160)),
    CityscapesLabel("rail track", 10, 255, (230, 150, 140)),
    CityscapesLabel("building", 11, 2, (70, 70, 70)),
    CityscapesLabel("wall", 12, 3, (102, 102, 156)),
    CityscapesLabel("fence", 13, 4, (190, 153, 153)),
    CityscapesLabel("guard rail", 14, 255, (180, 165, 180)),
    CityscapesLabel("bridge", 15, 255, (150, 100, 100)),
    CityscapesLabel("tunnel", 16, 255, (150, 120, 90)),
    CityscapesLabel("pole", 17, 5, (153, 153, 153)),
    CityscapesLabel("polegroup", 18, 255, (153, 153, 153)),
    CityscapesLabel("traffic light", 19, 6, (250, 170, 30)),
    CityscapesLabel("traffic sign", 20, 7, (220, 220, 0)),
    CityscapesLabel("vegetation", 21, 8, (107, 142, 35)),
    CityscapesLabel("terrain", 22, 9, (152, 251, 152)),
    CityscapesLabel("sky", 23, 10, (70, 130, 180)),
    CityscapesLabel("person", 24, 11, (220, 20, 60)),
    CityscapesLabel("rider", 25, 12, (255, 0, 0)),
    CityscapesLabel("car", 26, 13, (0, 0, 142)),
    CityscapesLabel("truck", 27, 14, (0, 0, 70)),
    CityscapesLabel("bus", 28, 15, (0, 60, 100)),
    CityscapesLabel("caravan", 29, 255, (0, 0, 90)),
    CityscapesLabel("trailer", 30, 255, (0, 0, 110)),
    CityscapesLabel("train", 31, 16, (0, 80, 100)),
    CityscapesLabel("motorcycle", 32, 17, (0, 0, 230)),
    CityscapesLabel("bicycle", 33, 18, (119, 11, 32)),
)

# Cities of the Cityscapes fine annotations (train and val splits).
CITYSCAPES_TRAIN_CITIES: tuple[str, ...] = (
    "aachen", "bochum", "bremen", "cologne", "darmstadt", "dusseldorf", "erfurt", "hamburg",
    "hanover", "jena", "krefeld", "monchengladbach", "strasbourg", "stuttgart", "tubingen",
    "ulm", "weimar", "zurich",
)
CITYSCAPES_VAL_CITIES: tuple[str, ...] = ("frankfurt", "lindau", "munster")


@dataclass(frozen=True)
class DatasetInfo:
    """Metadata of a segmentation dataset (mmseg's METAINFO idea).

    Attributes:
        name: dataset name, e.g. ``"cityscapes"``.
        class_names: name of each train id, in train-id order.
        palette: RGB colour of each train id.
        background_id: train id of the background class, or ``None`` if there is none.
        id_to_train_id: ``uint8[256]`` lookup table from raw label ids to train ids
            (unknown ids map to 255), or ``None`` when label files already hold train ids.
        valid_ids: raw ids that may legally appear in label files (``None``: any id < 256).
        unscored: classes left out of every score (ADE20K's "other", ignored when scoring as in
            the papers, but trained as their background channel).
    """

    name: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    background_id: int | None
    id_to_train_id: np.ndarray | None = field(default=None, compare=False, repr=False)
    valid_ids: frozenset[int] | None = None
    unscored: frozenset[int] = frozenset()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_index(self, name: str) -> int:
        """Train id of a class name; raises ``KeyError`` listing the valid names."""
        try:
            return self.class_names.index(name)
        except ValueError:
            raise KeyError(f"unknown {self.name} class {name!r}; valid: {', '.join(self.class_names)}") from None

    def palette_lut(self) -> np.ndarray:
        """``uint8[256, 3]`` colour table for train-id maps; ignore (255) is black."""
        lut = np.zeros((256, 3), dtype=np.uint8)
        lut[: self.num_classes] = np.asarray(self.palette, dtype=np.uint8)
        return lut


def _cityscapes_lut() -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label in CITYSCAPES_LABELS:
        lut[label.id] = label.train_id
    return lut


def _cityscapes_train_classes() -> list[CityscapesLabel]:
    return sorted((lab for lab in CITYSCAPES_LABELS if lab.train_id != IGNORE_INDEX), key=lambda lab: lab.train_id)


CITYSCAPES = DatasetInfo(
    name="cityscapes",
    class_names=tuple(lab.name for lab in _cityscapes_train_classes()),
    palette=tuple(lab.color for lab in _cityscapes_train_classes()),
    background_id=None,
    id_to_train_id=_cityscapes_lut(),
    valid_ids=frozenset(lab.id for lab in CITYSCAPES_LABELS),
)

# Pascal VOC 2012 class names, in id order (0 = background, 255 = void boundary/ignore).
VOC_CLASS_NAMES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def voc_colormap() -> np.ndarray:
    """The standard VOC palette as ``uint8[256, 3]``: bit ``k`` of an index's 3-bit groups sets
    bit ``7 - k`` of red, green, blue (0 black, 1 (128, 0, 0), ..., 255 (224, 224, 192))."""
    ids = np.arange(256)
    cmap = np.zeros((256, 3), dtype=np.uint8)
    for k in range(8):
        for channel in range(3):
            cmap[:, channel] |= (((ids >> (3 * k + channel)) & 1) << (7 - k)).astype(np.uint8)
    return cmap


VOC = DatasetInfo(
    name="voc",
    class_names=VOC_CLASS_NAMES,
    palette=tuple((int(r), int(g), int(b)) for r, g, b in voc_colormap()[: len(VOC_CLASS_NAMES)]),
    background_id=0,
    valid_ids=frozenset(range(len(VOC_CLASS_NAMES))) | {IGNORE_INDEX},
)

# ISPRS 2D semantic labelling, Potsdam and Vaihingen: colour-coded label tiles with six classes.
# Rows: (class name, label colour); the row index is the source id that llseg's patch labels hold.
ISPRS_SOURCE_CLASSES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("impervious surfaces", (255, 255, 255)),
    ("building", (0, 0, 255)),
    ("low vegetation", (0, 255, 255)),
    ("tree", (0, 255, 0)),
    ("car", (255, 255, 0)),
    ("clutter", (255, 0, 0)),
)
ISPRS_DOMAINS: tuple[str, ...] = ("potsdam", "vaihingen")  # Potsdam RGB tiles, Vaihingen IRRG tiles
ISPRS_CLUTTER = 5  # source id of clutter/background: never a benchmark class (LAG, docs/methods.md §8.2)
ISPRS_BOUNDARY_COLOUR = (0, 0, 0)  # the eroded label variants (*_noBoundary) mark boundary pixels black


def _isprs_lut() -> np.ndarray:
    """Source ids -> train ids: 0..4 keep their id, clutter (5) and every other id become 255."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lut[:ISPRS_CLUTTER] = np.arange(ISPRS_CLUTTER)
    return lut


ISPRS_SOURCE_TO_TRAIN = _isprs_lut()


# Train ids 0..4 (impervious surfaces, building, low vegetation, tree, car); clutter is ignored (255).
# "isprs": impervious surfaces doubles as the background (the IDEC/LAG loaders' convention: pixels of
# other steps' classes train as class 0, SSUL's unknown class is drawn from it). "isprs-nobg": no
# background class, pixels of other steps' classes are ignored (docs/methods.md §8.2, §3.4).
ISPRS = DatasetInfo(
    name="isprs",
    class_names=tuple(name for name, _ in ISPRS_SOURCE_CLASSES[:ISPRS_CLUTTER]),
    palette=tuple(colour for _, colour in ISPRS_SOURCE_CLASSES[:ISPRS_CLUTTER]),
    background_id=0,
    id_to_train_id=ISPRS_SOURCE_TO_TRAIN,
    valid_ids=frozenset(range(len(ISPRS_SOURCE_CLASSES))) | {IGNORE_INDEX},
)
ISPRS_NOBG = replace(ISPRS, name="isprs-nobg", background_id=None)

# ADE20K scene parsing (ADEChallengeData2016, the 150-class benchmark of MiB, PLOP, SSUL, ...): annotation
# PNGs hold 0..150; 0 ("other": unlabelled or outside the 150 classes) is the class-incremental papers'
# background channel in training (other steps' classes train as 0) and is ignored when scoring.
ADE20K_CLASS_NAMES: tuple[str, ...] = (
    "other", "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
    "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror",
    "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
    "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
    "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop",
    "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine",
    "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight",
    "booth", "television receiver", "airplane", "dirt track", "apparel", "pole", "land",
    "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship",
    "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food",
    "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher",
    "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan",
    "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
)
ADE20K = DatasetInfo(
    name="ade20k",
    class_names=ADE20K_CLASS_NAMES,
    palette=tuple((int(r), int(g), int(b)) for r, g, b in voc_colormap()[: len(ADE20K_CLASS_NAMES)]),
    background_id=0,
    valid_ids=frozenset(range(len(ADE20K_CLASS_NAMES))),
    unscored=frozenset({0}),
)

DATASETS: dict[str, DatasetInfo] = {
    "cityscapes": CITYSCAPES, "voc": VOC, "isprs": ISPRS, "isprs-nobg": ISPRS_NOBG, "ade20k": ADE20K,
}


def get_dataset_info(name: str) -> DatasetInfo:
    """Metadata of a dataset by name; ``KeyError`` lists the known names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None
