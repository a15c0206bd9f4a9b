"""The recipe registry: ``@register_recipe("name")`` on a :class:`~llseg.methods.recipe.Recipe` subclass.

Every module of :mod:`llseg.methods.recipes` is imported on first use, so a recipe shipped with
llseg is registered by existing; a recipe defined elsewhere (a user's module, a test) registers
when its module is imported. The CLI, the estimators, ``llseg bench`` and ``benchmarks/`` read
this registry and nothing else.
"""
from __future__ import annotations

import difflib
import importlib
import logging
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from llseg.errors import ConfigError

if TYPE_CHECKING:
    from llseg.methods.config import TrainConfig
    from llseg.methods.recipe import Recipe

log = logging.getLogger("llseg.config")
R = TypeVar("R", bound="type[Recipe]")

_RECIPES: dict[str, type[Recipe]] = {}
_ALIASES: dict[str, str] = {}  # deprecated name -> registered name
_LOADED = False


def register_recipe(name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[R], R]:
    """Class decorator registering a recipe under ``name`` (and deprecated ``aliases``)."""

    def decorate(cls: R) -> R:
        for key in (name, *aliases):
            if key in _RECIPES or key in _ALIASES:
                raise ValueError(f"recipe name {key!r} is already registered")
        cls.name = name
        _RECIPES[name] = cls
        _ALIASES.update({alias: name for alias in aliases})
        return cls

    return decorate


def _load_builtin() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from llseg.methods import recipes

        for module in pkgutil.iter_modules(recipes.__path__):
            importlib.import_module(f"{recipes.__name__}.{module.name}")


def list_recipes() -> list[str]:
    """Registered recipe names, sorted (deprecated aliases excluded)."""
    _load_builtin()
    return sorted(_RECIPES)


def canonical_name(name: str) -> str:
    """``name``, or the registered name of a deprecated alias (logged once per call)."""
    _load_builtin()
    if name in _ALIASES:
        log.warning("recipe %r is deprecated; it is now called %r", name, _ALIASES[name])
        return _ALIASES[name]
    if name not in _RECIPES:
        close = difflib.get_close_matches(name, _RECIPES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown recipe {name!r}{hint}; registered recipes: {', '.join(sorted(_RECIPES))}")
    return name


def get_recipe(name: str) -> type[Recipe]:
    """The recipe class registered as ``name`` (or as its deprecated alias)."""
    return _RECIPES[canonical_name(name)]


def make_recipe(config: TrainConfig) -> Recipe:
    """The recipe object of ``config`` (on its dataset's label table)."""
    from llseg.data.labels import get_dataset_info

    return get_recipe(config.recipe)(config, get_dataset_info(config.dataset))
