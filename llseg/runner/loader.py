"""Import module files the way Ianvs' ``load_module`` does, and resolve registered names.

Ianvs puts ``dirname(url)`` at ``sys.path[0]`` and imports the file by its **bare name**, so
modules are cached in ``sys.modules`` by that name (docs/ianvs-sedna.md §1.6, P10). Where Ianvs would
silently reuse a different file of the same name, the runner raises a ConfigError instead.
Each job behaves like a fresh Ianvs process for files the runner imported in earlier jobs.
"""
from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from llseg.errors import ConfigError
from llseg.ianvs import registry
from llseg.runner.checks import fail, suggest

# Bare module name -> real path of the file the runner imported under that name.
_IMPORTED: dict[str, str] = {}


def bare_name(url: str) -> str:
    """The name Ianvs imports ``url`` under (file name without extension)."""
    return os.path.splitext(os.path.basename(url))[0]


def check_unique(urls: Iterable[tuple[str, str, str]]) -> None:
    """Reject two different files with one bare name in a job; ``urls`` holds (url, yaml file, key)."""
    seen: dict[str, tuple[str, str, str]] = {}
    for url, file, key in urls:
        name = bare_name(url)
        first = seen.setdefault(name, (url, file, key))
        if os.path.realpath(first[0]) != os.path.realpath(url):
            raise fail(
                file,
                key,
                f"'{url}' and '{first[0]}' ({first[1]}, key '{first[2]}') share the bare module name '{name}'; "
                "Ianvs imports module files by bare name and would silently use only the first. Give each file a unique name",
            )


def load_module(url: str, file: str, key: str) -> ModuleType:
    """Import the module file ``url`` by bare name with its folder at ``sys.path[0]`` (restored after)."""
    if not url.endswith(".py"):
        raise fail(file, key, f"'{url}' must be a Python file (.py)")
    name, real = bare_name(url), os.path.realpath(url)
    cached = sys.modules.get(name)
    if cached is not None:
        cached_file = getattr(cached, "__file__", None)
        if cached_file and os.path.realpath(cached_file) == real:
            return cached
        if name not in _IMPORTED:
            raise fail(
                file,
                key,
                f"'{url}' would be imported as '{name}', but a module of that name is already imported from "
                f"{cached_file or 'the interpreter'}; Ianvs would silently use that one. Rename the file, e.g. 'llseg_{name}.py'",
            )
        del sys.modules[name]
    folder = os.path.dirname(os.path.abspath(url))
    sys.path.insert(0, folder)
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        raise fail(file, key, f"importing '{url}' failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(folder)
    _IMPORTED[name] = real
    return module


def resolve(kind: str, name: str, file: str, key: str, where: str) -> Any:
    """The object registered as ``(kind, name)``; ConfigError with the closest registered name."""
    try:
        return registry.lookup(kind, name)
    except KeyError:
        known = registry.registered(kind)
        raise ConfigError(
            f"{file}: key '{key}': no {kind} entry named '{name}' is registered{suggest(name, known)} "
            f"after importing {where}; registered: {', '.join(known) or 'nothing'}"
        ) from None
