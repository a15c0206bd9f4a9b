"""Errors llseg raises for bad input. Messages name the file or key and say how to fix it."""
from __future__ import annotations


class DataError(ValueError):
    """A dataset file is missing, unreadable or inconsistent (the message names the file)."""


class ConfigError(ValueError):
    """A YAML file, split spec or hyperparameter is invalid (the message names the file and key)."""
