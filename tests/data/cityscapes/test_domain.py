"""Cityscapes domain-incremental splits (PLOP/RCIL): presets, prepare on the Cityscapes layout, one class group."""
from __future__ import annotations

from pathlib import Path

import pytest

from llseg.data.cityscapes.synthetic import generate_city_dataset
from llseg.data.indexfile import read_index
from llseg.data.labels import CITYSCAPES_TRAIN_CITIES, CITYSCAPES_VAL_CITIES
from llseg.data.prepare import prepare
from llseg.data.splits import CITYSCAPES_DOMAIN_ORDER, PRESETS, DomainIncrementalSpec
from llseg.errors import ConfigError
from llseg.ianvs.metrics import METRICS
from llseg.methods.config import resolve_config
from llseg.methods.learner import ContinualLearner


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("city")
    generate_city_dataset(root, seed=0, size=(32, 64), images_per_city=5)
    return root


def test_presets_follow_plop() -> None:
    assert sorted(CITYSCAPES_DOMAIN_ORDER) == sorted(CITYSCAPES_TRAIN_CITIES + CITYSCAPES_VAL_CITIES)
    steps = {name: PRESETS[f"cityscapes-domain-{name}"] for name in ("11-5", "11-1", "1-1")}
    assert all(isinstance(s, DomainIncrementalSpec) for s in steps.values())
    assert [len(g) for g in steps["11-5"].tasks] == [11, 5, 5] and steps["11-5"].tasks[0][-1] == "cologne"
    assert [len(g) for g in steps["11-1"].tasks] == [11] + [1] * 10 and steps["1-1"].num_steps == 21
    assert steps["1-1"].tasks[18:] == [["frankfurt"], ["lindau"], ["munster"]]  # PLOP's ids 18..20: the val cities


def test_prepare_domains(city: Path, tmp_path: Path) -> None:
    manifest = prepare("cityscapes", root=city, split="cityscapes-domain-11-5", out=tmp_path, seed=2)
    spec = PRESETS["cityscapes-domain-11-5"]
    rows = read_index(tmp_path / "train_index.txt", columns=3)
    test = read_index(tmp_path / "test_index.txt", columns=3)
    val = read_index(tmp_path / "val_index.txt", columns=3)
    assert len(rows) == 3 * manifest.chunk_size and len(test) == 21  # 5 images per city: 4 to fit, 1 to test
    n_train = int(manifest.chunk_size * manifest.train_ratio)
    for t, group in enumerate(spec.tasks):
        chunk = rows[t * manifest.chunk_size : (t + 1) * manifest.chunk_size]
        assert {Path(str(r[1])).parent.name for r in chunk} <= set(group)  # the label folder names the city
        assert all(str(r[1]) == str(r[2]) for r in chunk)  # every class labelled in every step
        assert not {str(r[0]) for r in chunk[:n_train]} & {str(r[0]) for r in val}
    trained_or_val = {str(r[0]) for r in rows} | {str(r[0]) for r in val}
    assert not trained_or_val & {str(r[0]) for r in test}
    assert {Path(str(r[1])).parent.name for r in test} == set(CITYSCAPES_DOMAIN_ORDER)
    assert manifest.tasks[0].cities == tuple(spec.tasks[0]) and manifest.mode == "domain"


def test_one_class_group_and_per_city_metrics() -> None:
    config = resolve_config({"recipe": "finetune", "dataset": "cityscapes", "split": "cityscapes-domain-1-1"})
    assert ContinualLearner._split_steps(config, ContinualLearner(config).info) == [list(range(19))]
    assert {f"mIoU_all_{c}" for c in CITYSCAPES_DOMAIN_ORDER} <= METRICS.keys()


def test_too_few_images(tmp_path: Path) -> None:
    generate_city_dataset(tmp_path / "tiny", seed=0, size=(32, 64), images_per_city=2)
    with pytest.raises(ConfigError, match="city aachen has 2 image"):
        prepare("cityscapes", root=tmp_path / "tiny", split="cityscapes-domain-11-5", out=tmp_path / "out")
