"""Incremental split definitions as pure functions (no file IO, no Ianvs or Sedna imports).

Conventions: class ids are train ids ``0..num_classes-1``; ``ignore_index`` (255) is never a
class; ``background_id`` is the id of a background class (VOC: 0) or ``None`` when the dataset
has none (Cityscapes, where train id 0 is *road*). Steps are numbered from 0 here; index files
and folders name them ``task1``, ``task2``, ... Image membership is a ``bool (n_images,
n_steps)`` matrix, because one image can belong to several steps.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from llseg.data.labels import ADE20K, CITYSCAPES, IGNORE_INDEX, ISPRS, ISPRS_DOMAINS, ISPRS_NOBG
from llseg.errors import ConfigError, DataError

Mode = Literal["overlap", "disjoint", "sequential"]
MODES: tuple[Mode, ...] = ("overlap", "disjoint", "sequential")
ImageClasses = Sequence[set[int]] | np.ndarray


def parse_increments(spec: str | Sequence[int], num_classes: int) -> tuple[int, ...]:
    """Classes per step from the field's grammar, checked against ``num_classes`` learnable classes.

    ``"a-b"`` means ``a`` classes first, then steps of ``b`` until the classes run out
    (``"15-1"`` with 20 classes -> ``(15, 1, 1, 1, 1, 1)``). Three or more numbers
    (``"2-2-1"``), a single number or a list of ints are explicit per-step counts.

    Raises:
        ConfigError: unparsable text, a step with no class, or counts that do not add up.
    """
    if isinstance(spec, str):
        try:
            parts = [int(p) for p in spec.strip().split("-")]
        except ValueError:
            raise ConfigError(
                f"increments {spec!r}: expected integers joined by '-', e.g. '15-5', '15-1' or '2-2-1'"
            ) from None
    else:
        parts = list(spec)
        if not all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in parts):
            raise ConfigError(f"increments {spec!r}: expected a list of ints such as [15, 1, 1, 1, 1, 1]")
    if not parts or any(p <= 0 for p in parts):
        raise ConfigError(f"increments {spec!r}: every step needs at least one class, got {parts}")
    if isinstance(spec, str) and len(parts) == 2:
        first, step = parts
        rest = num_classes - first
        if rest <= 0 or rest % step:
            raise ConfigError(
                f"increments {spec!r}: {num_classes} classes minus the first {first} leave {rest}, "
                f"which is not a positive multiple of {step}"
            )
        parts = [first] + [step] * (rest // step)
    if sum(parts) != num_classes:
        raise ConfigError(f"increments {spec!r} = {parts} sum to {sum(parts)}, but there are {num_classes} classes to learn")
    return tuple(int(p) for p in parts)


@dataclass(frozen=True)
class ClassIncrementalSpec:
    """Class-incremental split: which classes each step learns and how labels are masked.

    Attributes:
        num_classes: label ids ``0..num_classes-1``, background included (VOC 21, Cityscapes 19).
        increments: classes learned per step, background excluded: ``"15-1"``-style text or a
            list of ints (see :func:`parse_increments`); stored as a tuple.
        class_order: arrival order of the learnable classes; default: ids ascending without
            the background. Stored as a tuple.
        mode: image filter and label masking, see :func:`membership` and :func:`train_label_lut`.
        background_id: background class (learned from step 0 and kept by every step), or None.
        ignore_index: label of ignored pixels; never a class.
    """

    num_classes: int
    increments: str | Sequence[int]
    class_order: Sequence[int] | None = None
    mode: Mode = "overlap"
    background_id: int | None = None
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        c, bg, ign = self.num_classes, self.background_id, self.ignore_index
        if not 1 <= c <= 255:
            raise ConfigError(f"num_classes must be in 1..255, got {c}")
        if not c <= ign <= 255:
            raise ConfigError(f"ignore_index must be in {c}..255 (not a class id), got {ign}")
        if bg is not None and not 0 <= bg < c:
            raise ConfigError(f"background_id must be None or in 0..{c - 1}, got {bg}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        learnable = [k for k in range(c) if k != bg]
        order = learnable if self.class_order is None else [int(k) for k in self.class_order]
        if ign in order or (bg is not None and bg in order):
            raise ConfigError(
                f"class_order {order} must not contain the ignore index {ign} or the background id {bg}"
            )
        outside = sorted({k for k in order if not 0 <= k < c})
        if outside:
            raise ConfigError(f"class_order contains {outside}, outside the class ids 0..{c - 1}")
        repeated = sorted({k for k in order if order.count(k) > 1})
        if repeated:
            raise ConfigError(f"class_order repeats classes {repeated}")
        missing = sorted(set(learnable) - set(order))
        if missing:
            raise ConfigError(f"class_order lacks classes {missing}; it must list all {len(learnable)} learnable classes")
        object.__setattr__(self, "class_order", tuple(order))
        object.__setattr__(self, "increments", parse_increments(self.increments, len(learnable)))

    @property
    def tasks(self) -> list[list[int]]:
        """Classes learned at each step, in arrival order (background not included)."""
        order = list(self.class_order or ())
        bounds = np.cumsum([0, *self.increments])
        return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    @property
    def num_steps(self) -> int:
        return len(self.increments)

    def seen_classes(self, step: int) -> list[int]:
        """Classes learned in steps ``0..step`` (background not included)."""
        self._check_step(step)
        return [k for task in self.tasks[: step + 1] for k in task]

    def _check_step(self, step: int) -> None:
        if not 0 <= step < self.num_steps:
            raise ConfigError(f"step {step} is out of range 0..{self.num_steps - 1}")


def class_presence(image_classes: ImageClasses, num_classes: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """``bool (n_images, num_classes)``: which classes each image contains.

    ``image_classes`` is either an ``ndarray (n_images, num_classes)`` of pixel counts (> 0 means
    present) or a sequence of per-image class-id sets (``ignore_index`` entries are skipped).
    """
    if isinstance(image_classes, np.ndarray):
        if image_classes.ndim != 2 or image_classes.shape[1] != num_classes:
            raise DataError(f"class-count matrix must have shape (n_images, {num_classes}), got {image_classes.shape}")
        return image_classes > 0
    present = np.zeros((len(image_classes), num_classes), dtype=bool)
    for i, classes in enumerate(image_classes):
        for k in classes:
            if k == ignore_index:
                continue
            if not 0 <= k < num_classes:
                raise DataError(f"image {i} lists class {k}, outside 0..{num_classes - 1} (ignore = {ignore_index})")
            present[i, k] = True
    return present


def membership(spec: ClassIncrementalSpec, image_classes: ImageClasses) -> np.ndarray:
    """``bool (n_images, n_steps)``: which images enter each step (Continuum/MiB semantics).

    * overlap: the image has >= 1 pixel of the step's classes; old and future classes may appear.
    * disjoint: overlap, and every class in the image is old, current, background or ignore
      (no future class).
    * sequential: the same filter as disjoint; only the labelling differs (old classes keep
      their labels, see :func:`train_label_lut`).

    The background never makes an image eligible; it is allowed in every mode.
    """
    present = class_presence(image_classes, spec.num_classes, spec.ignore_index)
    tasks = spec.tasks
    out = np.zeros((present.shape[0], len(tasks)), dtype=bool)
    for t, current in enumerate(tasks):
        out[:, t] = present[:, current].any(axis=1)
        future = [k for task in tasks[t + 1 :] for k in task]
        if spec.mode != "overlap" and future:
            out[:, t] &= ~present[:, future].any(axis=1)
    return out


def train_label_lut(spec: ClassIncrementalSpec, step: int) -> np.ndarray:
    """``uint8[256]`` map from full train ids to the training labels of ``step``.

    overlap/disjoint: the step's classes keep their id; sequential: old and current classes
    keep their id. Every other class becomes ``background_id``, or ``ignore_index`` when the
    dataset has no background (Klingner's Cityscapes protocol). Background and ignore are
    kept; ids that are not classes become ignore.
    """
    spec._check_step(step)
    lut = np.full(256, spec.ignore_index, dtype=np.uint8)
    lut[list(spec.class_order or ())] = spec.ignore_index if spec.background_id is None else spec.background_id
    keep = spec.seen_classes(step) if spec.mode == "sequential" else spec.tasks[step]
    lut[keep] = keep
    if spec.background_id is not None:
        lut[spec.background_id] = spec.background_id
    return lut


def test_label_lut(
    spec: ClassIncrementalSpec, step: int, unseen: Literal["ignore", "background"] = "ignore"
) -> np.ndarray:
    """``uint8[256]`` map from full train ids to the test labels after ``step``.

    Classes seen in steps ``0..step`` (and the background) keep their id. Classes not yet
    learned become ``ignore_index`` (``unseen="ignore"``, the VOC protocol of SSUL/MiB) or the
    background (``unseen="background"``, Continuum's ``test_background=True``), which scores
    them as background and so penalises predicting them early.
    """
    if unseen not in ("ignore", "background"):
        raise ConfigError(f"unseen must be 'ignore' or 'background', got {unseen!r}")
    unseen_label = spec.background_id if unseen == "background" else None  # None: unseen classes stay ignore_index
    if unseen == "background" and unseen_label is None:
        raise ConfigError("unseen='background' needs a background class; this spec has background_id=None")
    spec._check_step(step)
    lut = np.full(256, spec.ignore_index, dtype=np.uint8)
    if unseen_label is not None:  # unseen == "background"
        lut[list(spec.class_order or ())] = unseen_label
    seen = spec.seen_classes(step)
    lut[seen] = seen
    if spec.background_id is not None:
        lut[spec.background_id] = spec.background_id
    return lut


test_label_lut.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name


@dataclass(frozen=True)
class DomainIncrementalSpec:
    """Domain-incremental split: step ``t`` trains on the images of the domains in ``groups[t]``
    (cities, sensors, ...); every class is labelled in every step. Stored as a tuple of tuples."""

    groups: Sequence[Sequence[str]]

    def __post_init__(self) -> None:
        groups = tuple(tuple(g) for g in self.groups)
        if not groups or any(not g for g in groups):
            raise ConfigError(f"domain groups must be non-empty lists of names, got {[list(g) for g in groups]}")
        names = [d for g in groups for d in g]
        bad = [d for d in names if not isinstance(d, str) or not d or any(ch.isspace() for ch in d)]
        if bad:
            raise ConfigError(f"domain names must be non-empty strings without spaces, got {bad}")
        repeated = sorted({d for d in names if names.count(d) > 1})
        if repeated:
            raise ConfigError(f"domains {repeated} appear in more than one group")
        object.__setattr__(self, "groups", groups)

    @property
    def tasks(self) -> list[list[str]]:
        return [list(g) for g in self.groups]

    @property
    def num_steps(self) -> int:
        return len(self.groups)

    def task_of(self, domain: str) -> int | None:
        """Step whose group holds ``domain``, or None."""
        return next((t for t, g in enumerate(self.groups) if domain in g), None)


def domain_membership(spec: DomainIncrementalSpec, image_domains: Sequence[str]) -> np.ndarray:
    """``bool (n_images, n_steps)``: image ``i`` enters the step whose group holds its domain."""
    out = np.zeros((len(image_domains), spec.num_steps), dtype=bool)
    for i, domain in enumerate(image_domains):
        t = spec.task_of(domain)
        if t is not None:
            out[i, t] = True
    return out


@dataclass(frozen=True)
class CityClassIncrementalSpec:
    """Class groups x domain groups (Klingner et al.'s CIL): step ``t`` learns
    ``classes.tasks[t]`` from the images of ``domains.groups[t]`` only; ``held_out`` domains are
    kept for validation. Training labels follow :func:`train_label_lut` of ``classes``."""

    classes: ClassIncrementalSpec
    domains: DomainIncrementalSpec
    held_out: tuple[str, ...] = ()
    dataset: str = "cityscapes"

    def __post_init__(self) -> None:
        if self.classes.num_steps != self.domains.num_steps:
            raise ConfigError(
                f"{self.classes.num_steps} class groups but {self.domains.num_steps} domain groups; "
                "give one domain group per step"
            )
        clash = sorted(d for d in self.held_out if self.domains.task_of(d) is not None)
        if clash:
            raise ConfigError(f"held-out domains {clash} are also training domains")

    @property
    def num_steps(self) -> int:
        return self.classes.num_steps

    def membership(self, image_classes: ImageClasses, image_domains: Sequence[str]) -> np.ndarray:
        """``bool (n_images, n_steps)``: the image's domain is the step's and it passes the class filter."""
        if len(image_domains) != len(image_classes):
            raise DataError(f"{len(image_classes)} class rows but {len(image_domains)} domains")
        return membership(self.classes, image_classes) & domain_membership(self.domains, image_domains)


@dataclass(frozen=True)
class ClassDomainIncrementalSpec(ClassIncrementalSpec):
    """Class-incremental split whose step ``t`` draws its images from the domain
    ``step_domains[t]`` only; unlike :class:`CityClassIncrementalSpec` a domain may serve several
    steps (LAG's ISPRS protocol: Potsdam RGB at step 0, Vaihingen IRRG at every later step).
    Everything label-related is the :class:`ClassIncrementalSpec` part (:func:`train_label_lut`,
    :func:`test_label_lut`, :func:`membership` for the class filter).

    Attributes:
        step_domains: one domain name per step; stored as a tuple.
        dataset: the dataset the domain names belong to.
    """

    step_domains: Sequence[str] = ()
    dataset: str = "isprs"

    def __post_init__(self) -> None:
        super().__post_init__()
        domains = tuple(self.step_domains)
        if len(domains) != self.num_steps:
            raise ConfigError(f"{self.num_steps} class groups but {len(domains)} step domains {list(domains)}; give one per step")
        bad = [d for d in domains if not isinstance(d, str) or not d or any(ch.isspace() for ch in d)]
        if bad:
            raise ConfigError(f"domain names must be non-empty strings without spaces, got {bad}")
        object.__setattr__(self, "step_domains", domains)

    def membership(self, image_classes: ImageClasses, image_domains: Sequence[str]) -> np.ndarray:
        """``bool (n_images, n_steps)``: the image is of the step's domain and passes the class filter."""
        if len(image_domains) != len(image_classes):
            raise DataError(f"{len(image_classes)} class rows but {len(image_domains)} domains")
        in_domain = np.asarray(image_domains, dtype=object)[:, None] == np.asarray(self.step_domains, dtype=object)[None, :]
        return membership(self, image_classes) & in_domain.reshape(len(image_domains), self.num_steps)


ISPRS_TASKS = ("4-1", "2-3", "2-2-1", "2-1")
ADE_TASKS = ("100-50", "50-50", "100-10", "100-5")
ISPRS_BACKGROUNDS = ("impervious", "none")


def isprs_split(task: str, background: str = "impervious") -> ClassDomainIncrementalSpec:
    """The ISPRS Potsdam -> Vaihingen split ``task`` (docs/methods.md §8.2), e.g. ``"2-2-1"``.

    Train ids 0..4 = impervious surfaces, building, low vegetation, tree, car; the counts are the
    papers' (class 0 included). Step 0 uses Potsdam, later steps Vaihingen. ``background``:
    ``"impervious"``: class 0 is the background (``background_id`` 0, learned at step 0; other
    steps' classes train as 0); ``"none"``: no background (other steps' classes train as 255).
    Both give the same class groups, so old / new / all are the papers' "1-2 / 3-5 / all".
    ``dataset`` names the matching :data:`~llseg.data.labels.DATASETS` entry (``isprs`` or
    ``isprs-nobg``), the estimator's ``dataset`` hyperparameter.
    """
    if task not in ISPRS_TASKS:
        raise ConfigError(f"unknown isprs task {task!r}; valid: {', '.join(ISPRS_TASKS)}")
    if background not in ISPRS_BACKGROUNDS:
        raise ConfigError(f"background must be one of {', '.join(ISPRS_BACKGROUNDS)}, got {background!r}")
    counts = list(parse_increments(task, ISPRS.num_classes))
    if background == "impervious":
        counts[0] -= 1  # class 0 is the background, not one of step 0's learnable classes
    first, later = ISPRS_DOMAINS
    return ClassDomainIncrementalSpec(
        num_classes=ISPRS.num_classes,
        increments=counts,
        mode="overlap",
        background_id=0 if background == "impervious" else None,
        step_domains=(first,) + (later,) * (len(counts) - 1),
        dataset=ISPRS.name if background == "impervious" else ISPRS_NOBG.name,
    )


def eval_covering_order(present: np.ndarray, n_train: int) -> np.ndarray:
    """Reorder a chunk so that its tail (the eval part) covers the classes the head also has.

    Ianvs cuts each chunk of ``n`` lines into ``n_train`` train lines and ``n - n_train`` eval
    lines by position. ``present`` is ``bool (n, k)`` (image x class, rows in their shuffled
    order). Images are moved to the tail greedily, each time the one adding most classes not yet
    in the tail while every such class stays in the head; the tail is then filled with images
    whose move costs the head no class. Returns a permutation of ``0..n-1``: head, then tail.
    """
    n = present.shape[0]
    if not 0 <= n_train <= n:
        raise ValueError(f"n_train={n_train} must be in 0..{n}")
    head_count = present.sum(axis=0)
    covered = np.zeros(present.shape[1], dtype=bool)
    head = list(range(n))
    tail: list[int] = []
    while len(tail) < n - n_train:
        rows = present[head]
        safe = ~(rows & (head_count <= 1)).any(axis=1)  # moving it leaves the head all its classes
        gain = np.where(safe, (rows & ~covered).sum(axis=1), 0)
        if gain.max() > 0:
            pick = int(np.argmax(gain))
        else:  # fill from the end, preferring images the head can spare
            candidates = np.flatnonzero(safe)
            pick = int(candidates[-1]) if candidates.size else len(head) - 1
        i = head.pop(pick)
        tail.append(i)
        covered |= present[i]
        head_count = head_count - present[i]
    return np.asarray(head + tail, dtype=np.int64)


def _class_ids(*names: str) -> list[int]:
    return [CITYSCAPES.class_index(n) for n in names]


_CIL3_CLASS_GROUPS = (
    _class_ids("road", "sidewalk", "vegetation", "terrain", "sky"),
    _class_ids("building", "wall", "fence", "pole", "traffic light", "traffic sign"),
    _class_ids("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"),
)

Preset = ClassIncrementalSpec | DomainIncrementalSpec | CityClassIncrementalSpec

# PLOP's / RCIL's Cityscapes domain ids (the 18 train cities, then the 3 val cities; docs/methods.md §8.3).
CITYSCAPES_DOMAIN_ORDER: tuple[str, ...] = (
    "aachen", "bremen", "darmstadt", "erfurt", "hanover", "krefeld", "strasbourg", "tubingen", "weimar", "bochum",
    "cologne", "dusseldorf", "hamburg", "jena", "monchengladbach", "stuttgart", "ulm", "zurich",
    "frankfurt", "lindau", "munster",
)
CITYSCAPES_DOMAIN_TASKS = ("11-5", "11-1", "1-1")


def cityscapes_domain_split(task: str) -> DomainIncrementalSpec:
    """PLOP/RCIL's domain-incremental Cityscapes split ``task`` (``"11-5"``, ``"11-1"`` or ``"1-1"``):
    the 21 cities in :data:`CITYSCAPES_DOMAIN_ORDER` as domains, all 19 classes labelled in every step."""
    if task not in CITYSCAPES_DOMAIN_TASKS:
        raise ConfigError(f"unknown cityscapes domain task {task!r}; valid: {', '.join(CITYSCAPES_DOMAIN_TASKS)}")
    counts = parse_increments(task, len(CITYSCAPES_DOMAIN_ORDER))
    bounds = np.cumsum([0, *counts])
    return DomainIncrementalSpec([CITYSCAPES_DOMAIN_ORDER[a:b] for a, b in zip(bounds[:-1], bounds[1:])])

# Pascal VOC settings: (mode, preset-name suffix)
_VOC_MODES: tuple[tuple[Mode, str], ...] = (("overlap", ""), ("disjoint", "-disjoint"))

PRESETS: dict[str, Preset] = {
    # Klingner et al. (ITSC 2020), docs/methods.md §1.1: three class groups learned on three disjoint
    # city groups; non-task pixels are 255 (no background); erfurt is held out for validation.
    "cil-3": CityClassIncrementalSpec(
        classes=ClassIncrementalSpec(
            num_classes=CITYSCAPES.num_classes,
            increments=[len(g) for g in _CIL3_CLASS_GROUPS],
            class_order=[k for g in _CIL3_CLASS_GROUPS for k in g],
            mode="overlap",
            background_id=CITYSCAPES.background_id,
        ),
        domains=DomainIncrementalSpec(
            [
                ["hanover", "aachen", "strasbourg", "dusseldorf"],
                ["jena", "monchengladbach", "ulm", "tubingen", "bochum", "hamburg", "weimar"],
                ["zurich", "darmstadt", "bremen", "cologne", "stuttgart", "krefeld"],
            ]
        ),
        held_out=("erfurt",),
    ),
    # Pascal VOC 2012 (21 ids, 0 = background), docs/methods.md §8.1: voc-<task> is the overlapped
    # setting, voc-<task>-disjoint the disjoint one (images with a future class are left out).
    **{
        f"voc-{name}{suffix}": ClassIncrementalSpec(num_classes=21, increments=name, mode=mode, background_id=0)
        for name in ("15-5", "15-1", "10-1", "5-3", "19-1")
        for mode, suffix in _VOC_MODES
    },
    # ISPRS Potsdam RGB -> Vaihingen IRRG (LAG, docs/methods.md §8.2): step 0 on Potsdam, later steps on
    # Vaihingen; clutter is never a class. Registered with impervious surfaces as the background;
    # `llseg prepare --background none` builds the variant without one (same class groups).
    **{f"isprs-{task}": isprs_split(task) for task in ISPRS_TASKS},
    # Cityscapes domain-incremental (PLOP, RCIL; docs/methods.md §8.3): cities as domains, every class in every step.
    **{f"cityscapes-domain-{task}": cityscapes_domain_split(task) for task in CITYSCAPES_DOMAIN_TASKS},
    # ADE20K (151 ids, 0 = "other", the background channel), docs/methods.md §8.4: overlapped, classes in
    # index order, as MiB, PLOP and SSUL; 50-50 has three steps.
    **{
        f"ade-{name}": ClassIncrementalSpec(
            num_classes=ADE20K.num_classes, increments=name, mode="overlap", background_id=ADE20K.background_id
        )
        for name in ADE_TASKS
    },
}


def get_preset(name: str) -> Preset:
    """The split registered as ``name``; raises ``KeyError`` listing the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown split preset {name!r}; valid: {', '.join(PRESETS)}") from None


def preset_dataset(spec: Preset) -> str:
    """The dataset (``llseg prepare --dataset``) a preset belongs to."""
    if isinstance(spec, (CityClassIncrementalSpec, ClassDomainIncrementalSpec)):
        return spec.dataset
    if isinstance(spec, DomainIncrementalSpec):
        return "cityscapes"
    return {21: "voc", ADE20K.num_classes: "ade20k"}.get(spec.num_classes, "?")


def dataset_preset(split: str, dataset: str) -> Preset:
    """The preset ``split`` of ``dataset`` (as :func:`preset_dataset` names it).

    Raises:
        ConfigError: ``split`` is unknown or another dataset's; lists the presets of ``dataset``.
    """
    valid = {name: spec for name, spec in PRESETS.items() if preset_dataset(spec) == dataset}
    if split not in valid:
        what = ("is not an" if dataset[0] in "aeiou" else "is not a") if split in PRESETS else "is an unknown"
        raise ConfigError(f"split {split!r} {what} {dataset} split; valid: {', '.join(valid)}")
    return valid[split]


def describe_presets() -> str:
    """Every preset, one block each: name, dataset, mode, steps and the classes (or domains) per step
    (``llseg prepare --list-splits``)."""
    from llseg.data.labels import get_dataset_info

    blocks = []
    for name, spec in PRESETS.items():
        dataset = preset_dataset(spec)
        if isinstance(spec, DomainIncrementalSpec):
            head = f"{name}: dataset {dataset}, domain-incremental, {spec.num_steps} steps, all classes every step"
            rows = [f"  step {t}: {', '.join(g)}" for t, g in enumerate(spec.tasks)]
        else:
            classes = spec.classes if isinstance(spec, CityClassIncrementalSpec) else spec
            names = get_dataset_info(dataset).class_names
            bg = classes.background_id
            head = (f"{name}: dataset {dataset}, {classes.mode}, {classes.num_steps} steps "
                    f"({'-'.join(str(len(t)) for t in classes.tasks)} classes), background "
                    f"{'none' if bg is None else names[bg]}")
            rows = []
            for t, task in enumerate(classes.tasks):
                where = ""
                if isinstance(spec, CityClassIncrementalSpec):
                    where = f" [cities {', '.join(spec.domains.groups[t])}]"
                elif isinstance(spec, ClassDomainIncrementalSpec):
                    where = f" [domain {spec.step_domains[t]}]"
                shown = ", ".join(f"{k} {names[k]}" for k in task[:6]) + (f", ... {task[-1]} {names[task[-1]]}"
                                                                          if len(task) > 6 else "")
                rows.append(f"  step {t}: {len(task)} {'class' if len(task) == 1 else 'classes'} ({shown}){where}")
        blocks.append("\n".join([head, *rows]))
    return "\n".join(blocks)
