"""The skeleton every ``llseg synth`` generator runs: reuse a complete dataset, else regenerate it.

A generator writes its files under ``out`` plus a JSON sidecar there that records ``generator``,
``version``, ``args``, ``complete`` and the generator's own statistics. :func:`reuse_or_generate`
owns that life cycle, so each dataset's generator supplies only its file list and its writer.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llseg.errors import DataError

PNG_LEVEL = 3  # fixed zlib level: reproducible bytes, fast writes


@dataclass(frozen=True)
class Sidecar:
    """Where a generator records itself and what a reusable dataset must hold.

    Attributes:
        path: the sidecar file, ``<out>/<name>.json``.
        generator: its ``generator`` entry (an id, unchanged across releases).
        version: bump when the same arguments would draw other files.
        args: the arguments the files were drawn with.
        required: sidecar keys that must hold dicts (the statistics) for the dataset to be reused.
    """

    path: Path
    generator: str
    version: int
    args: dict[str, Any]
    required: tuple[str, ...]


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar's content, or ``None`` if it is missing or unreadable (then it is rewritten)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def clear_generated(out: Path, sidecar_path: Path, trees: Sequence[Path], *, holds: str, command: str) -> None:
    """Remove a generator's old ``trees`` before regenerating; never delete a dataset it did not write.

    Without a sidecar, existing ``trees`` are somebody's data (e.g. a real dataset): ``DataError``
    naming ``holds`` (what was found) and ``command`` (the generator's CLI).
    """
    if not sidecar_path.exists() and any(t.exists() for t in trees):
        raise DataError(
            f"{out} already holds {holds} but no {sidecar_path.name}, so it was not written by "
            f"{command}; choose an empty output folder or delete those folders yourself"
        )
    for tree in trees:
        if tree.exists():
            shutil.rmtree(tree)


def reuse_or_generate(
    out: Path,
    sidecar: Sidecar,
    *,
    files: Sequence[Path],
    trees: Sequence[Path],
    holds: str,
    command: str,
    header: dict[str, Any],
    write: Callable[[], dict[str, Any]],
) -> tuple[dict[str, Any], bool]:
    """Return ``(sidecar content, reused)``: the old content if a complete dataset with the same
    version and arguments is there (every path in ``files`` exists), else regenerate it.

    Regenerating removes the old ``trees`` (see :func:`clear_generated`), writes the sidecar with
    ``header`` and ``complete: false`` (an interrupted run is regenerated next time), runs
    ``write()``, which writes every file and returns the statistics, and marks the sidecar complete.
    """
    old = read_sidecar(sidecar.path)
    if (
        old is not None
        and old.get("version") == sidecar.version
        and old.get("args") == sidecar.args
        and old.get("complete") is True
        and all(isinstance(old.get(key), dict) for key in sidecar.required)
        and all(p.is_file() for p in files)
    ):
        return old, True
    clear_generated(out, sidecar.path, trees, holds=holds, command=command)
    out.mkdir(parents=True, exist_ok=True)
    content: dict[str, Any] = {
        "generator": sidecar.generator,
        "version": sidecar.version,
        "args": sidecar.args,
        "complete": False,
        **header,
    }
    write_json(sidecar.path, content)
    content.update(write())
    content["complete"] = True
    write_json(sidecar.path, content)
    return content, False
