"""Validation helpers shared by the runner's YAML loaders: every error names the file, the key and the fix."""
from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from llseg.errors import ConfigError

STRICT_NOTE = "Ianvs silently ignores unknown keys; the built-in runner rejects them so typos do not go unnoticed"


def fail(file: str, key: str, message: str) -> ConfigError:
    """A ConfigError that starts with ``<file>: key '<key>':``."""
    return ConfigError(f"{file}: key '{key}': {message}")


def closest(word: str, options: Iterable[str]) -> str | None:
    """The option closest to ``word`` (difflib), or ``None``."""
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return match[0] if match else None


def suggest(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest option, or ``""``."""
    match = closest(word, options)
    return f" (did you mean '{match}'?)" if match else ""


def read_yaml(path: str, top: str, file: str, key: str) -> dict[str, Any]:
    """The mapping under top-level key ``top`` of the YAML file ``path`` (named by ``file``/``key``)."""
    if not path.endswith((".yaml", ".yml")):
        raise fail(file, key, f"{path!r} must be a .yaml or .yml file (Ianvs reads only those)")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or top not in data:
        raise ConfigError(f"{path}: missing the top-level key '{top}:'; the whole file must sit under it")
    extra = [k for k in data if k != top]
    if extra:
        raise ConfigError(f"{path}: unknown top-level key '{extra[0]}'; only '{top}:' is allowed. {STRICT_NOTE}")
    section = data[top]
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: key '{top}' must be a mapping, got {type(section).__name__}")
    return section


def check_keys(
    section: Mapping[str, Any],
    file: str,
    where: str,
    allowed: Iterable[str],
    unsupported: Mapping[str, str] | None = None,
) -> None:
    """Reject keys of ``section`` that are not ``allowed``; ``unsupported`` maps Ianvs keys to the reason."""
    allowed = list(allowed)
    unsupported = unsupported or {}
    for key in section:
        if key in allowed:
            continue
        if key in unsupported:
            raise fail(file, f"{where}.{key}", f"not supported by the built-in runner: {unsupported[key]}")
        raise fail(
            file,
            f"{where}.{key}",
            f"unknown key{suggest(str(key), allowed)}; valid keys: {', '.join(allowed)}. {STRICT_NOTE}",
        )


def require(section: Mapping[str, Any], name: str, types: type | tuple[type, ...], file: str, where: str) -> Any:
    """``section[name]``, which must exist and be of ``types`` (bool never counts as a number)."""
    if name not in section:
        raise fail(file, f"{where}.{name}", "missing required key")
    value = section[name]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        expected = " or ".join(t.__name__ for t in _as_tuple(types))
        raise fail(file, f"{where}.{name}", f"must be {expected}, got {value!r}")
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def repo_path(value: Any, file: str, key: str, *, must_exist: bool = True, hint: str = "") -> str:
    """Validate a path written in a YAML file: relative to the repository root (the CWD) and an existing file."""
    if not isinstance(value, str) or not value.strip():
        raise fail(file, key, f"must be a path string, got {value!r}")
    if os.path.isabs(value) or value.startswith("~"):
        cwd = os.getcwd()
        hint = ""
        if os.path.abspath(value).startswith(cwd + os.sep):
            hint = f"; here that is '{os.path.relpath(value, cwd)}'"
        raise fail(
            file,
            key,
            f"'{value}' is absolute; paths in the benchmark YAML files must be relative to the repository root "
            f"(the directory you run from, {cwd}), exactly as `ianvs -f` resolves them{hint}",
        )
    if must_exist and not os.path.isfile(value):
        parent = os.path.dirname(value)
        match = closest(os.path.basename(value), os.listdir(parent or ".")) if os.path.isdir(parent or ".") else None
        near = f" (did you mean '{os.path.join(parent, match)}'?)" if match else ""
        raise fail(file, key, f"file '{value}' does not exist (relative to the repository root {os.getcwd()}){near}{hint}")
    return value
