"""Label-PNG writing for ``llseg prepare``: rewrites only the label maps whose source or mapping changed.

Label maps are ``uint8 H x W`` train ids, 255 = ignore; a mapping is a ``uint8[256]`` LUT applied
to the source's train ids.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from llseg.data.imageio import write_label_png

STATE_DIR = ".llseg"  # scan cache, label-writing and patch-cutting state, reused by later runs
IDENTITY_LUT = np.arange(256, dtype=np.uint8)
_STATE_FORMAT = 1

_Job = tuple[Callable[[], np.ndarray], list[tuple[str, np.ndarray, str]]]


class LabelWriter:
    """Writes label PNGs, skipping those whose source and mapping are unchanged since the last run.

    State (``<out>/.llseg/labels.json``): output path -> [fingerprint, size, mtime_ns]. Outputs a
    previous run wrote and this run does not are deleted.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.state_file = out / STATE_DIR / "labels.json"
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
            self.old: dict[str, list] = data["outputs"] if data.get("format") == _STATE_FORMAT else {}
        except (OSError, ValueError, KeyError, TypeError):
            self.old = {}
        self.new: dict[str, list] = {}
        self.jobs: list[_Job] = []

    def add(
        self,
        source: Path,
        load: Callable[[], np.ndarray],
        outputs: Sequence[tuple[str, np.ndarray]],
        source_lut: np.ndarray = IDENTITY_LUT,
    ) -> None:
        """Queue the outputs of the label file ``source``: (path relative to out, train-id -> output LUT).

        ``load()`` reads ``source`` as a ``uint8 H x W`` train-id map; ``source_lut`` (the file's
        ids -> train ids) only enters the fingerprint, so a changed conversion rewrites the outputs.
        """
        st = os.stat(source)
        todo = []
        for rel, lut in outputs:
            digest = hashlib.sha1(lut[source_lut].tobytes()).hexdigest()[:16]
            fingerprint = f"{os.path.abspath(source)}|{st.st_size}|{st.st_mtime_ns}|{digest}"
            old = self.old.get(rel)
            target = self.out / rel
            if old and old[0] == fingerprint and target.is_file():
                tst = target.stat()
                if [tst.st_size, tst.st_mtime_ns] == old[1:]:
                    self.new[rel] = old
                    continue
            todo.append((rel, lut, fingerprint))
        if todo:
            self.jobs.append((load, todo))

    def run(self) -> int:
        """Write the queued labels, delete stale ones, save the state; returns files written."""

        def work(job: _Job) -> list[tuple[str, list]]:
            load, todo = job
            full = load()
            done = []
            for rel, lut, fingerprint in todo:
                target = self.out / rel
                write_label_png(target, lut[full])
                tst = target.stat()
                done.append((rel, [fingerprint, tst.st_size, tst.st_mtime_ns]))
            return done

        written = 0
        try:
            with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool, tqdm(
                total=len(self.jobs), desc="writing labels", unit="img", disable=not self.jobs, leave=False
            ) as bar:
                for done in pool.map(work, self.jobs):
                    self.new.update(done)
                    written += len(done)
                    bar.update()
            for rel in self.old.keys() - self.new.keys():
                (self.out / rel).unlink(missing_ok=True)
        finally:  # record what exists so an interrupted run resumes
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            keep = {**{k: v for k, v in self.old.items() if (self.out / k).is_file()}, **self.new}
            self.state_file.write_text(json.dumps({"format": _STATE_FORMAT, "outputs": keep}), encoding="utf-8")
        return written
