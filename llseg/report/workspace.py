"""Read a benchmark folder ``<workspace>/<job name>`` written by ``llseg bench`` or by Ianvs.

Both write ``rank/all_rank.csv`` (unless ``save_mode: selected_only``) and ``rank/selected_rank.csv``,
whose ``url`` column names each test case folder ``<job>/<algorithm>/<uuid>``. ``llseg bench``
adds ``results.json`` and ``report/report.json`` (see :mod:`llseg.report.capture`) to each case
folder; for an Ianvs case the results matrix comes from the ``MATRIX`` rank column instead.
"""
from __future__ import annotations

import ast
import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llseg.errors import DataError
from llseg.report.capture import CASE_DIR, MANIFEST

RANK_DIR = "rank"
ALL_RANK = "all_rank.csv"
SELECTED_RANK = "selected_rank.csv"
RESULTS = "results.json"

Matrix = list[list[float | None]]


@dataclass(frozen=True)
class Case:
    """One test case of the leaderboard and what its folder holds (``None`` where absent)."""

    rank: str
    algorithm: str
    case_id: str
    row: dict[str, str]
    columns: list[str]
    folder: Path | None
    results: dict[str, Any] | None
    manifest: dict[str, Any] | None

    @property
    def label(self) -> str:
        """``<algorithm> (<first 8 characters of the case folder name>)``."""
        return f"{self.algorithm} ({self.case_id[:8]})"

    @property
    def slug(self) -> str:
        """File-name-safe identifier of the case."""
        return re.sub(r"[^A-Za-z0-9._-]", "_", f"{self.algorithm}-{self.case_id[:8]}")

    def modules(self) -> dict[str, str]:
        """Module type -> name, from results.json or the rank columns between ``paradigm`` and ``time``."""
        if self.results is not None:
            return dict(self.results["modules"])
        return {c: self.row[c] for c in self._between() if "-" not in c and self.row.get(c)}

    def hyperparameters(self) -> dict[str, dict[str, str]]:
        """Module type -> {hyperparameter: value as text}."""
        if self.results is not None:
            return {kind: {k: str(v) for k, v in hps.items()} for kind, hps in self.results["hyperparameters"].items()}
        out: dict[str, dict[str, str]] = {}
        for column in self._between():
            if "-" in column and self.row.get(column, "") != "":
                kind, name = column.split("-", 1)
                out.setdefault(kind, {})[name] = self.row[column]
        return out

    def _between(self) -> list[str]:
        cols = self.columns
        if "paradigm" not in cols or "time" not in cols:
            return []
        return cols[cols.index("paradigm") + 1 : cols.index("time")]


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a rank CSV; DataError names the file if it is not one."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read rank file {path}: {exc}") from None
    missing = [c for c in ("algorithm", "url") if c not in header]
    if missing:
        raise DataError(f"{path} lacks the rank columns {missing}; it was not written by llseg bench or Ianvs")
    return header, rows


def rank_files(job_dir: Path) -> tuple[Path | None, Path | None]:
    """``(all_rank.csv, selected_rank.csv)`` of a benchmark folder, each ``None`` if absent."""
    if not job_dir.is_dir():
        raise FileNotFoundError(f"benchmark folder {job_dir} does not exist; pass <workspace>/<job name>")
    rank = job_dir / RANK_DIR
    all_path, selected = rank / ALL_RANK, rank / SELECTED_RANK
    found = (all_path if all_path.is_file() else None, selected if selected.is_file() else None)
    if found == (None, None):
        inner = sorted({p.parent.parent.name for p in job_dir.glob(f"*/{RANK_DIR}/*_rank.csv")})
        hint = f" (it holds the benchmark folders {', '.join(inner)}: pass one of them)" if inner else ""
        raise DataError(
            f"{job_dir} has no {RANK_DIR}/{ALL_RANK} or {RANK_DIR}/{SELECTED_RANK}{hint}; pass the "
            "<workspace>/<job name> folder of a finished 'llseg bench' or 'ianvs' run"
        )
    return found


def _json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not readable JSON ({exc}); rerun the benchmark or delete the file") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} does not hold a JSON object; rerun the benchmark or delete the file")
    return data


def case_folder(job_dir: Path, algorithm: str, url: str) -> Path | None:
    """The case folder: ``<job_dir>/<algorithm>/<last part of url>`` (so moved workspaces work), else ``url``."""
    if not url:
        return None
    name = Path(url.rstrip("/\\")).name
    for candidate in (job_dir / algorithm / name, Path(url)):
        if candidate.is_dir():
            return candidate
    return None


def read_cases(job_dir: Path, header: list[str], rows: list[dict[str, str]]) -> list[Case]:
    """One :class:`Case` per rank row, in rank order."""
    cases = []
    for number, row in enumerate(rows, 1):
        folder = case_folder(job_dir, row["algorithm"], row.get("url", ""))
        cases.append(Case(
            rank=row.get("rank") or str(number),
            algorithm=row["algorithm"],
            case_id=Path(row.get("url", "").rstrip("/\\")).name or f"row{number}",
            row=row,
            columns=header,
            folder=folder,
            results=None if folder is None else _json(folder / RESULTS),
            manifest=None if folder is None else _json(folder / CASE_DIR / MANIFEST),
        ))
    return cases


def parse_matrix(text: str) -> Matrix:
    """The ``"all"`` rows of a MATRIX rank cell (``str`` of Ianvs' dict; ``nan`` allowed)."""
    try:
        value = ast.literal_eval(re.sub(r"\bnan\b", "None", text))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ValueError("the MATRIX cell is not a Python literal") from None
    rows = value.get("all") if isinstance(value, dict) else None
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) for r in rows):
        raise ValueError("the MATRIX cell has no 'all' rows")
    if not all(v is None or isinstance(v, (int, float)) for r in rows for v in r):
        raise ValueError("the MATRIX 'all' rows hold non-numbers")
    return [[None if v is None else float(v) for v in r] for r in rows]


def case_matrix(case: Case) -> tuple[Matrix | None, str]:
    """``(R, where it came from)`` or ``(None, why it is missing)``."""
    if case.results is not None:
        return case.results["matrix"]["values"], "results.json"
    text = case.row.get("MATRIX", "")
    if not text:
        where = "all_rank.csv" if "MATRIX" in case.columns else "the rank files"
        return None, f"no MATRIX in {where}: list the system metric MATRIX in the testenv metrics and rerun"
    try:
        return parse_matrix(text), "the MATRIX column of all_rank.csv"
    except ValueError as exc:
        return None, f"{exc}, so no results matrix"


def _numbered(paths: list[Path], part: int) -> list[Path]:
    """Paths whose ``parts[part]`` is a round number, sorted by it."""
    return sorted((p for p in paths if p.parts[part].isdigit()), key=lambda p: int(p.parts[part]))


def final_test_predictions(folder: Path) -> tuple[Path | None, list[Path]]:
    """Prediction records of the test set: the last ``output/eval/<r>/predictions`` folder minus eval-set images.

    In the no-inference mode the final test evaluation and inference write into the last round's
    eval folder, next to that round's eval-set predictions; records are named ``<image stem>-<hash>``,
    so eval-set images (listed in ``dataset/*eval*``) are left out by stem.
    """
    dirs = _numbered([p.relative_to(folder) for p in folder.glob("output/eval/*/predictions") if p.is_dir()], 2)
    if not dirs:
        return None, []
    last = folder / dirs[-1]
    eval_stems = set()
    for index in sorted((folder / "dataset").glob("*eval*")):
        for line in index.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.split():
                eval_stems.add(Path(line.split()[0]).stem)
    records = [p for p in sorted(last.glob("*.npz")) if p.stem.rsplit("-", 1)[0] not in eval_stems]
    return last, records


def checkpoint_dataset(folder: Path) -> str | None:
    """Dataset name in the last round's llseg checkpoint (``output/train/<r>/seen_task/*.model``), if any."""
    models = _numbered([p.relative_to(folder) for p in folder.glob("output/train/*/seen_task/*.model")], 2)
    if not models:
        return None
    from llseg.methods.checkpoint import read_checkpoint  # imports torch: only for Ianvs workspaces

    try:
        return str(read_checkpoint(folder / models[-1])["dataset"])
    except (ValueError, FileNotFoundError, KeyError):
        return None
