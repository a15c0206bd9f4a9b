"""Hyperparameter grids: Ianvs' expansion of ``hyperparameters`` into test cases (docs/ianvs-sedna.md §1.7).

Within a module: the cartesian product of the ``values`` lists (in YAML order), each laid over a
copy of the base dict merged from the ``other_hyperparameters`` files. Across modules: the
cartesian product of the per-module variants; each combination is one test case.
"""
from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from typing import Any

import yaml

from llseg.runner.checks import fail, repo_path

OTHER = "other_hyperparameters"


def _other_hyperparameters(files: list[Any], file: str, key: str) -> dict[str, Any]:
    base: dict[str, Any] = {}
    for i, path in enumerate(files):
        path = repo_path(path, file, f"{key}[{i}]")
        try:
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle)
        except yaml.YAMLError as exc:
            raise fail(file, f"{key}[{i}]", f"{path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise fail(file, f"{key}[{i}]", f"{path} must hold a mapping of hyperparameter names to values")
        base.update(data)
    return base


def expand_module(items: Any, file: str, key: str) -> list[dict[str, Any]]:
    """All hyperparameter dicts of one module, in Ianvs' order (``[{}]`` when there are none)."""
    if items is None:
        return [{}]
    if not isinstance(items, list):
        raise fail(file, key, "must be a list of single-key dicts, e.g. '- lr: {values: [0.1, 0.01]}'")
    base: dict[str, Any] = {}
    names: list[str] = []
    value_lists: list[list[Any]] = []
    for i, item in enumerate(items):
        where = f"{key}[{i}]"
        if not isinstance(item, dict) or len(item) != 1:
            raise fail(file, where, f"each entry must be a single-key dict like '- lr: {{values: [0.1]}}', got {item!r}")
        ((name, spec),) = item.items()
        where = f"{where}.{name}"
        if not isinstance(spec, dict) or list(spec) != ["values"]:
            raise fail(file, where, f"must be a mapping with the single key 'values', got {spec!r}")
        values = spec["values"]
        if not isinstance(values, list):
            raise fail(file, f"{where}.values", "must be a list; write a list-valued hyperparameter as 'values: [[a, b]]'")
        if not values:
            raise fail(
                file, f"{where}.values", "is empty: that gives zero test cases (and crashes Ianvs); list at least one value"
            )
        if name == OTHER:
            base.update(_other_hyperparameters(values, file, f"{where}.values"))
        elif name in names:
            raise fail(file, where, f"hyperparameter '{name}' is listed twice; merge its values into one list")
        else:
            names.append(name)
            value_lists.append(values)
    return [{**copy.deepcopy(base), **copy.deepcopy(dict(zip(names, combo)))} for combo in itertools.product(*value_lists)]


def combine(variants: Sequence[list[dict[str, Any]]]) -> list[tuple[dict[str, Any], ...]]:
    """Cartesian product across modules: one tuple (one dict per module) per test case."""
    return [tuple(copy.deepcopy(c) for c in combo) for combo in itertools.product(*variants)]
