"""Hyperparameter grid expansion (docs/ianvs-sedna.md §1.7)."""
from __future__ import annotations

import pytest

from llseg.errors import ConfigError
from llseg.runner.config import load_job
from llseg.runner.grid import combine, expand_module
from tests.runner.conftest import Repo, algorithm_yaml, job_yaml


def test_product_within_a_module_in_yaml_order() -> None:
    items = [{"lr": {"values": [0.1, 0.01]}}, {"epochs": {"values": [1, 2, 3]}}]
    combos = expand_module(items, "a.yaml", "hps")
    assert len(combos) == 6
    assert combos[:3] == [{"lr": 0.1, "epochs": 1}, {"lr": 0.1, "epochs": 2}, {"lr": 0.1, "epochs": 3}]
    assert combos[-1] == {"lr": 0.01, "epochs": 3}


def test_no_hyperparameters_is_one_empty_combination() -> None:
    assert expand_module(None, "a.yaml", "hps") == [{}]


def test_list_valued_hyperparameter() -> None:
    assert expand_module([{"crop_size": {"values": [[64, 128]]}}], "a.yaml", "hps") == [{"crop_size": [64, 128]}]


def test_product_across_modules() -> None:
    combos = combine([[{"a": 1}, {"a": 2}], [{}], [{"b": 1}, {"b": 2}, {"b": 3}]])
    assert len(combos) == 6
    assert combos[0] == ({"a": 1}, {}, {"b": 1}) and combos[-1] == ({"a": 2}, {}, {"b": 3})


def test_other_hyperparameters_are_a_merged_base(repo: Repo) -> None:
    repo.write("hps/base1.yaml", {"lr": 0.5, "epochs": 9})
    repo.write("hps/base2.yaml", {"epochs": 4, "batch_size": 2})
    items = [
        {"lr": {"values": [0.1, 0.2]}},
        {"other_hyperparameters": {"values": ["hps/base1.yaml", "hps/base2.yaml"]}},
    ]
    assert expand_module(items, "a.yaml", "hps") == [
        {"lr": 0.1, "epochs": 4, "batch_size": 2},
        {"lr": 0.2, "epochs": 4, "batch_size": 2},
    ]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([{"lr": {"values": []}}], "zero test cases"),
        ([{"lr": {"values": 0.1}}], "must be a list"),
        ([{"lr": [0.1]}], "single key 'values'"),
        ([{"lr": {"values": [1]}, "epochs": {"values": [1]}}], "single-key dict"),
        ([{"lr": {"values": [1]}}, {"lr": {"values": [2]}}], "listed twice"),
        ({"lr": {"values": [1]}}, "must be a list of single-key dicts"),
    ],
)
def test_bad_grids(items: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        expand_module(items, "a.yaml", "algorithm.modules[0].hyperparameters")
    assert str(info.value).startswith("a.yaml: key 'algorithm.modules[0].hyperparameters")


def test_other_hyperparameters_file_must_exist(repo: Repo) -> None:
    with pytest.raises(ConfigError, match="'hps/missing.yaml' does not exist"):
        expand_module([{"other_hyperparameters": {"values": ["hps/missing.yaml"]}}], "a.yaml", "hps")


def test_job_test_case_count(repo: Repo) -> None:
    from llseg.runner.job import build_cases

    repo.write(
        "testalgorithms/grid.yaml", algorithm_yaml([{"forget": {"values": [True, False]}}, {"tag": {"values": ["x", "y"]}}])
    )
    repo.write("testalgorithms/one.yaml", algorithm_yaml())
    path = repo.write(
        "benchmarkingjob.yaml", job_yaml([("grid", "testalgorithms/grid.yaml"), ("one", "testalgorithms/one.yaml")])
    )
    cases = build_cases(load_job(path))
    assert [c.algorithm.name for c in cases] == ["grid"] * 4 + ["one"]
    assert [c.hyperparameters[0] for c in cases[:2]] == [{"forget": True, "tag": "x"}, {"forget": True, "tag": "y"}]
    assert cases[4].hyperparameters == ({}, {})
