"""Alias registry for Ianvs-facing classes and functions, mirrored into Sedna's ClassFactory.

Ianvs finds modules and metrics by ``(class type, alias)`` in Sedna's process-global
``ClassFactory``. llseg keeps its own table with the same keys so the built-in runner can resolve
the same YAML without Sedna, and registers into ``ClassFactory`` too whenever KubeEdge Sedna is
importable. The PyPI package named ``sedna`` is an unrelated library: finding it raises an
``ImportError`` that says how to fix the environment.
"""
from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any, TypeVar

# Sedna's ClassType values (sedna.common.class_factory.ClassType).
GENERAL = "general"
STP = "seen_task_processing"
KM = "knowledge_management"
UTD = "unseen_task_detect"
UTP = "unseen_task_processing"
CLASS_TYPES = (GENERAL, STP, KM, UTD, UTP)

_TABLE: dict[str, dict[str, Any]] = {kind: {} for kind in CLASS_TYPES}
T = TypeVar("T")

WRONG_SEDNA_HINT = (
    "the installed Python package 'sedna' is not KubeEdge Sedna (the PyPI package of that name is an "
    "unrelated maths library). Remove it with 'pip uninstall sedna' and, to run under Ianvs, install "
    "KubeEdge Sedna from the wheel Ianvs bundles: examples/resources/third_party/sedna-0.6.0.1-py3-none-any.whl "
    "in the Ianvs repository. llseg itself (and 'llseg bench') works without Sedna."
)


def sedna_class_factory() -> Any | None:
    """KubeEdge Sedna's ``ClassFactory`` if Sedna is installed, else ``None``.

    Raises:
        ImportError: a package named ``sedna`` is installed but it is not KubeEdge Sedna.
    """
    if importlib.util.find_spec("sedna") is None:
        return None
    try:
        module = importlib.import_module("sedna.common.class_factory")
    except ImportError as exc:
        raise ImportError(WRONG_SEDNA_HINT) from exc
    if not hasattr(module, "ClassFactory"):
        raise ImportError(WRONG_SEDNA_HINT)
    return module.ClassFactory


def register(kind: str, alias: str) -> Callable[[T], T]:
    """Decorator: register a class or function under ``(kind, alias)`` here and in Sedna if present."""
    if kind not in _TABLE:
        raise ValueError(f"unknown class type {kind!r}; valid: {', '.join(CLASS_TYPES)}")

    def decorate(obj: T) -> T:
        _TABLE[kind][alias] = obj
        factory = sedna_class_factory()
        if factory is not None:
            factory.register(kind, alias=alias)(obj)
        return obj

    return decorate


def lookup(kind: str, alias: str) -> Any:
    """The object registered under ``(kind, alias)``; ``KeyError`` lists what is registered."""
    try:
        return _TABLE[kind][alias]
    except KeyError:
        known = ", ".join(sorted(_TABLE.get(kind, {}))) or "nothing"
        raise KeyError(f"no {kind} entry named {alias!r} is registered; registered: {known}") from None


def registered(kind: str) -> list[str]:
    """Aliases registered under ``kind``, sorted."""
    return sorted(_TABLE[kind])
