from __future__ import annotations

import numpy as np
import pytest

from llseg.data.labels import CITYSCAPES, CITYSCAPES_TRAIN_CITIES
from llseg.data.splits import (
    PRESETS,
    CityClassIncrementalSpec,
    ClassIncrementalSpec,
    DomainIncrementalSpec,
    class_presence,
    domain_membership,
    eval_covering_order,
    get_preset,
    membership,
    parse_increments,
    test_label_lut,
    train_label_lut,
)
from llseg.errors import ConfigError, DataError


@pytest.mark.parametrize(
    "text, num, expected",
    [
        ("15-5", 20, (15, 5)),
        ("15-1", 20, (15, 1, 1, 1, 1, 1)),
        ("10-1", 20, (10,) + (1,) * 10),
        ("5-3", 20, (5, 3, 3, 3, 3, 3)),
        ("19-1", 20, (19, 1)),
        ("4-1", 5, (4, 1)),
        ("2-3", 5, (2, 3)),
        ("2-2-1", 5, (2, 2, 1)),
        ("2-1", 5, (2, 1, 1, 1)),
        ("5", 5, (5,)),
        ([15, 1, 1, 1, 1, 1], 20, (15, 1, 1, 1, 1, 1)),
    ],
)
def test_parse_increments(text: object, num: int, expected: tuple[int, ...]) -> None:
    assert parse_increments(text, num) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text, num, message",
    [
        ("15-4", 20, r"20 classes minus the first 15 leave 5, which is not a positive multiple of 4"),
        ("20-1", 20, r"leave 0"),
        ("2-2-2", 5, r"\[2, 2, 2\] sum to 6, but there are 5 classes"),
        ([10, 5], 20, r"sum to 15, but there are 20"),
        ("15-x", 20, r"expected integers joined by '-'"),
        ([3, 0, 2], 5, r"at least one class, got \[3, 0, 2\]"),
        ([2.5, 2.5], 5, r"list of ints"),
    ],
)
def test_parse_increments_errors(text: object, num: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_increments(text, num)  # type: ignore[arg-type]


def test_spec_defaults_and_tasks() -> None:
    voc = ClassIncrementalSpec(num_classes=21, increments="15-1", background_id=0)
    assert voc.increments == (15, 1, 1, 1, 1, 1)
    assert voc.class_order == tuple(range(1, 21))
    assert voc.tasks == [list(range(1, 16)), [16], [17], [18], [19], [20]]
    cs = ClassIncrementalSpec(num_classes=4, increments=[1, 3], class_order=[2, 0, 3, 1])
    assert cs.tasks == [[2], [0, 3, 1]] and cs.num_steps == 2
    assert cs.seen_classes(1) == [2, 0, 3, 1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(class_order=[1, 2, 2, 3]), r"repeats classes \[2\]"),
        (dict(class_order=[0, 1, 2, 3, 4]), r"must not contain .* background id 0"),
        (dict(class_order=[1, 2, 3, 255]), r"must not contain the ignore index 255"),
        (dict(class_order=[1, 2, 3, 7]), r"contains \[7\], outside the class ids 0..4"),
        (dict(class_order=[1, 2, 3]), r"lacks classes \[4\]"),
        (dict(increments=[2, 0, 2]), r"at least one class"),
        (dict(increments=[2, 1]), r"sum to 3, but there are 4"),
        (dict(mode="joint"), r"mode must be one of overlap, disjoint, sequential"),
        (dict(background_id=5), r"background_id must be None or in 0..4"),
        (dict(ignore_index=3), r"ignore_index must be in 5..255"),
    ],
)
def test_spec_validation(kwargs: dict, message: str) -> None:
    args = dict(num_classes=5, increments="2-1", background_id=0) | kwargs
    with pytest.raises(ConfigError, match=message):
        ClassIncrementalSpec(**args)


# Tiny VOC-like world: 0 = background, classes 1..4, steps [1, 2], [3], [4].
def _spec(mode: str, background_id: int | None = 0) -> ClassIncrementalSpec:
    return ClassIncrementalSpec(num_classes=5, increments="2-1", mode=mode, background_id=background_id)  # type: ignore[arg-type]


IMAGES = [{0, 1}, {0, 1, 3}, {0, 255}, {3, 4}, {2, 4, 255}, {0, 4}]
OVERLAP = [[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 1], [1, 0, 1], [0, 0, 1]]
DISJOINT = [[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]]


@pytest.mark.parametrize("mode, expected", [("overlap", OVERLAP), ("disjoint", DISJOINT), ("sequential", DISJOINT)])
def test_membership_per_mode(mode: str, expected: list[list[int]]) -> None:
    got = membership(_spec(mode), IMAGES)
    assert got.dtype == bool and got.shape == (6, 3)
    np.testing.assert_array_equal(got, np.array(expected, dtype=bool))


def test_membership_from_count_matrix_matches_sets() -> None:
    counts = np.zeros((len(IMAGES), 5), dtype=np.int64)
    for i, classes in enumerate(IMAGES):
        for k in classes - {255}:
            counts[i, k] = 10 + k
    np.testing.assert_array_equal(membership(_spec("disjoint"), counts), np.array(DISJOINT, dtype=bool))
    with pytest.raises(DataError, match=r"shape \(n_images, 5\)"):
        membership(_spec("overlap"), counts[:, :4])
    with pytest.raises(DataError, match="image 0 lists class 9"):
        class_presence([{9}], 5)


def test_train_lut_with_background() -> None:
    labels = np.array([0, 1, 2, 3, 4, 255, 7], dtype=np.uint8)  # 7 is no class
    np.testing.assert_array_equal(train_label_lut(_spec("overlap"), 1)[labels], [0, 0, 0, 3, 0, 255, 255])
    np.testing.assert_array_equal(train_label_lut(_spec("disjoint"), 0)[labels], [0, 1, 2, 0, 0, 255, 255])
    np.testing.assert_array_equal(train_label_lut(_spec("sequential"), 1)[labels], [0, 1, 2, 3, 0, 255, 255])
    np.testing.assert_array_equal(train_label_lut(_spec("sequential"), 2)[labels], [0, 1, 2, 3, 4, 255, 255])
    assert train_label_lut(_spec("overlap"), 0).dtype == np.uint8


def test_train_lut_without_background() -> None:
    # Cityscapes-like: classes 0..3 (0 is a real class), steps [0, 1], [2], [3]
    spec = ClassIncrementalSpec(num_classes=4, increments="2-1", mode="overlap")
    labels = np.array([0, 1, 2, 3, 255], dtype=np.uint8)
    np.testing.assert_array_equal(train_label_lut(spec, 0)[labels], [0, 1, 255, 255, 255])
    np.testing.assert_array_equal(train_label_lut(spec, 1)[labels], [255, 255, 2, 255, 255])
    seq = ClassIncrementalSpec(num_classes=4, increments="2-1", mode="sequential")
    np.testing.assert_array_equal(train_label_lut(seq, 1)[labels], [0, 1, 2, 255, 255])
    # with no background, class 0 makes an image eligible
    np.testing.assert_array_equal(membership(spec, [{0}, {3}]), [[True, False, False], [False, False, True]])


def test_test_lut() -> None:
    labels = np.array([0, 1, 2, 3, 4, 255], dtype=np.uint8)
    np.testing.assert_array_equal(test_label_lut(_spec("overlap"), 0)[labels], [0, 1, 2, 255, 255, 255])
    np.testing.assert_array_equal(test_label_lut(_spec("overlap"), 1)[labels], [0, 1, 2, 3, 255, 255])
    np.testing.assert_array_equal(test_label_lut(_spec("overlap"), 0, unseen="background")[labels], [0, 1, 2, 0, 0, 255])
    cs = ClassIncrementalSpec(num_classes=4, increments="2-1")
    np.testing.assert_array_equal(test_label_lut(cs, 0)[labels[:4]], [0, 1, 255, 255])
    with pytest.raises(ConfigError, match="background_id=None"):
        test_label_lut(cs, 0, unseen="background")
    with pytest.raises(ConfigError, match=r"step 3 is out of range 0..2"):
        train_label_lut(cs, 3)


def test_domain_spec() -> None:
    spec = DomainIncrementalSpec([["a", "b"], ["c"]])
    assert spec.tasks == [["a", "b"], ["c"]] and spec.num_steps == 2
    assert (spec.task_of("c"), spec.task_of("z")) == (1, None)
    np.testing.assert_array_equal(
        domain_membership(spec, ["c", "a", "z"]), [[False, True], [True, False], [False, False]]
    )
    with pytest.raises(ConfigError, match=r"domains \['b'\] appear in more than one group"):
        DomainIncrementalSpec([["a", "b"], ["b"]])
    with pytest.raises(ConfigError, match="non-empty lists"):
        DomainIncrementalSpec([["a"], []])
    with pytest.raises(ConfigError, match="without spaces"):
        DomainIncrementalSpec([["new york"]])


def test_city_class_spec_validation_and_membership() -> None:
    classes = ClassIncrementalSpec(num_classes=4, increments="2-2")
    with pytest.raises(ConfigError, match="2 class groups but 3 domain groups"):
        CityClassIncrementalSpec(classes, DomainIncrementalSpec([["a"], ["b"], ["c"]]))
    with pytest.raises(ConfigError, match=r"held-out domains \['a'\] are also training domains"):
        CityClassIncrementalSpec(classes, DomainIncrementalSpec([["a"], ["b"]]), held_out=("a",))
    spec = CityClassIncrementalSpec(classes, DomainIncrementalSpec([["a"], ["b"]]), held_out=("v",))
    got = spec.membership([{0, 2}, {0, 2}, {3}, {1}], ["a", "b", "a", "v"])
    np.testing.assert_array_equal(got, [[True, False], [False, True], [False, False], [False, False]])


def test_cil3_preset() -> None:
    spec = get_preset("cil-3")
    assert isinstance(spec, CityClassIncrementalSpec)
    names = [[CITYSCAPES.class_names[k] for k in task] for task in spec.classes.tasks]
    assert names == [
        ["road", "sidewalk", "vegetation", "terrain", "sky"],
        ["building", "wall", "fence", "pole", "traffic light", "traffic sign"],
        ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"],
    ]
    assert spec.classes.tasks[0] == [0, 1, 8, 9, 10]
    assert spec.domains.tasks == [
        ["hanover", "aachen", "strasbourg", "dusseldorf"],
        ["jena", "monchengladbach", "ulm", "tubingen", "bochum", "hamburg", "weimar"],
        ["zurich", "darmstadt", "bremen", "cologne", "stuttgart", "krefeld"],
    ]
    assert spec.held_out == ("erfurt",)
    assert sorted(sum(spec.domains.tasks, []) + ["erfurt"]) == sorted(CITYSCAPES_TRAIN_CITIES)
    assert spec.classes.background_id is None and spec.classes.mode == "overlap"
    # every non-task pixel is 255 in training labels
    lut = train_label_lut(spec.classes, 1)
    assert [int(lut[k]) for k in range(19)] == [255, 255, 2, 3, 4, 5, 6, 7] + [255] * 11


def test_registry() -> None:
    assert get_preset("voc-15-1").increments == (15, 1, 1, 1, 1, 1)  # type: ignore[union-attr]
    assert get_preset("voc-5-3").num_steps == 6
    with pytest.raises(KeyError, match=r"unknown split preset 'cil-4'; valid: cil-3, voc-15-5"):
        get_preset("cil-4")
    assert "cil-3" in PRESETS


def test_eval_covering_order() -> None:
    # classes: a in 0, 1, 3; b in 1, 4; c in 2 only; n_train = 3 -> tail of 2
    present = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=bool)
    order = eval_covering_order(present, 3)
    assert sorted(order.tolist()) == [0, 1, 2, 3, 4]
    head, tail = present[order[:3]], present[order[3:]]
    assert head.any(axis=0).tolist() == [True, True, True]  # c (single image) stays in the head
    assert tail.any(axis=0).tolist() == [True, True, False]
    # 1 covers a and b; then 3 is the last image the head can spare (4 is the head's only b)
    assert order.tolist() == [0, 2, 4, 1, 3]
    np.testing.assert_array_equal(eval_covering_order(present, 5), np.arange(5))
