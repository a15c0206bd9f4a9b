"""What a KubeEdge Sedna worker reads from its environment, checked before any work starts.

Sedna's local controller starts each worker with environment variables (dataset and model URLs,
output folder, knowledge-base address) plus the ``env`` entries of the job's pod templates (the
job's parameters). They are read through Sedna's ``Context.get_parameters`` when KubeEdge Sedna is
installed (it also accepts the upper-case spelling), else straight from ``os.environ`` with the
same rule. Every problem raises :class:`ConfigError` naming the variable and the fix; the table of
variables is in docs/sedna.md.
"""
from __future__ import annotations

import json
import math
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from llseg.errors import ConfigError, DataError
from llseg.ianvs import registry

ESTIMATORS = ("llseg_erfnet", "llseg_deeplabv3")
SEDNA_HINT = (
    "KubeEdge Sedna is not installed; install its wheel (Sedna is not on PyPI: build it from kubeedge/sedna lib/ "
    "with 'python setup.py bdist_wheel', or take sedna-0.6.0.1-py3-none-any.whl from kubeedge/ianvs "
    "examples/resources/third_party/), see docs/sedna.md"
)


def param(name: str, default: str | None = None) -> str | None:
    """A job parameter or Sedna variable (Sedna's ``Context.get_parameters`` rule: name, then NAME)."""
    if registry.sedna_class_factory() is not None:
        from sedna.common.config import Context

        value = Context.get_parameters(name)
    else:
        value = os.environ.get(name) or os.environ.get(name.upper())
    return value if value else default


def required(name: str, role: str, what: str) -> str:
    value = param(name)
    if value is None:
        raise ConfigError(f"{role} worker: environment variable {name} is not set ({what}); "
                          "Sedna's local controller sets it, or export it to run the worker by hand (docs/sedna.md)")
    return value


def existing_path(name: str, role: str, what: str, *, folder: bool = False) -> Path:
    path = Path(required(name, role, what))
    if not (path.is_dir() if folder else path.is_file()):
        kind = "folder" if folder else "file"
        raise ConfigError(f"{role} worker: {name}={path} is not an existing {kind} ({what})")
    return path


def number(name: str, role: str, default: float, low: float, high: float) -> float:
    text = param(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{role} worker: {name}={text!r} is not a number; give a value in [{low}, {high}]") from None
    if not low <= value <= high:
        raise ConfigError(f"{role} worker: {name}={value} lies outside [{low}, {high}]")
    return value


def flag(name: str, role: str) -> bool:
    text = (param(name) or "false").strip().lower()
    if text not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"{role} worker: {name}={text!r} must be true or false")
    return text in ("true", "1", "yes")


def estimator_spec(role: str) -> tuple[str, dict[str, Any]]:
    """``(ESTIMATOR, HYPERPARAMETERS)``: the llseg estimator alias and its hyperparameters (a JSON/YAML mapping)."""
    name = param("ESTIMATOR", ESTIMATORS[0]) or ESTIMATORS[0]
    if name not in ESTIMATORS:
        raise ConfigError(f"{role} worker: ESTIMATOR={name!r} is unknown; choose one of {', '.join(ESTIMATORS)}")
    text = param("HYPERPARAMETERS", "{}") or "{}"
    try:
        hps = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"{role} worker: HYPERPARAMETERS is not valid JSON/YAML ({reason}); "
                          "give a mapping such as '{\"epochs\": 20, \"batch_size\": 8}'") from None
    if hps is None:
        hps = {}
    if not isinstance(hps, dict):
        raise ConfigError(f"{role} worker: HYPERPARAMETERS must be a mapping, got {type(hps).__name__}: {text!r}")
    return name, hps


def check_kb_server(role: str, timeout: float = 3.0) -> str | None:
    """``KB_SERVER`` if set and answering HTTP; unset means Sedna's knowledge-base calls are answered locally."""
    url = param("KB_SERVER")
    if not url:
        return None
    try:
        urllib.request.urlopen(url, timeout=timeout).close()
    except urllib.error.HTTPError:
        pass  # the server answered (e.g. 404 on its root): it is reachable
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ConfigError(f"{role} worker: knowledge base KB_SERVER={url} is unreachable ({exc}); "
                          "start Sedna's KB server or unset KB_SERVER to keep the index locally") from None
    return url


@dataclass(frozen=True)
class IndexRows:
    """Rows of a Sedna txt dataset index: ``x`` = [image, full_label], ``y`` = train labels (absolute paths)."""

    x: list[list[str]]
    y: list[str]


def read_dataset_index(name: str, role: str) -> IndexRows:
    """Read the index named by variable ``name``: lines ``<image> <full_label> <train_label>``.

    Relative tokens resolve against the folder of ``ORIGINAL_DATASET_URL`` (the Dataset's own index,
    which Sedna copies elsewhere for each round) when set, else against the index's folder.
    """
    index = existing_path(name, role, "the dataset index, written by 'llseg prepare'")
    original = param("ORIGINAL_DATASET_URL")
    base = Path(original).parent if original else index.parent
    x: list[list[str]] = []
    y: list[str] = []
    for number_, line in enumerate(index.read_text(encoding="utf-8").splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 3:
            raise DataError(f"{index}:{number_}: expected '<image> <full_label> <train_label>', got {line!r}; "
                            "write the index with 'llseg prepare'")
        paths = [p if os.path.isabs(p) else str(base / p) for p in tokens]
        for path in paths:
            if not os.path.isfile(path):
                raise DataError(f"{index}:{number_}: {path} does not exist (relative paths resolve against {base})")
        x.append(paths[:2])
        y.append(paths[2])
    if not y:
        raise DataError(f"{index} ({name}) holds no sample; the Dataset's index is empty")
    return IndexRows(x, y)


def kb_model(index_url: Path, role: str) -> Path:
    """The task model of a Sedna knowledge-base index (``index.pkl``) written by the train worker."""
    if registry.sedna_class_factory() is None:
        raise ConfigError(SEDNA_HINT)
    from sedna.common.file_ops import FileOps

    try:
        index = FileOps.load(str(index_url))
        groups = index["seen_task"]["task_groups"]
        url = str(groups[0].model.model)
    except Exception as exc:  # joblib/pickle raise many types on a foreign or truncated file
        raise ConfigError(f"{role} worker: {index_url} is not a Sedna knowledge-base index of llseg ({exc!r})") from None
    if FileOps.is_remote(url):  # a model held by Sedna's KB server (KB_SERVER set): fetch a local copy
        local = index_url.parent / "kb_models" / f"{groups[0].entry}.model"
        try:
            FileOps.download(url, str(local))
        except Exception as exc:  # urllib / minio errors
            raise ConfigError(f"{role} worker: the knowledge base {index_url} names the model {url}, "
                              f"which could not be downloaded ({exc!r})") from None
        return local
    model = Path(url)
    if not model.is_absolute():
        model = index_url.parent / model
    if not model.is_file():
        raise ConfigError(f"{role} worker: the knowledge base {index_url} names the model {model}, which does not exist")
    return model


def _finite(data: Any) -> Any:
    """``data`` with NaN/inf floats (scores of absent classes) as ``None``, so the JSON is strict."""
    if isinstance(data, dict):
        return {str(k): _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    if isinstance(data, (float, np.floating)):
        return float(data) if math.isfinite(data) else None
    return data


def json_dump(path: Path, data: Any) -> None:
    """Write ``data`` as JSON at ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_finite(data), indent=2, default=str, allow_nan=False), encoding="utf-8")
    os.replace(tmp, path)
