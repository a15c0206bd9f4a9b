"""Build ``report.html`` and ``report.md`` of a benchmark folder from the files in it alone.

``llseg bench`` calls :func:`write_workspace_report` at the end of a job; ``llseg report`` calls it
on any ``<workspace>/<job name>`` folder, including one written by Ianvs, where it shows what
Ianvs records and says what is missing. Per test case: configuration, the results matrix,
mIoU per step, IoU per class and the predictions of every step on a few fixed test images.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image

from llseg import __version__
from llseg.data.imageio import read_label_png, read_rgb
from llseg.data.labels import IGNORE_INDEX, DatasetInfo, get_dataset_info
from llseg.data.predictions import load_prediction
from llseg.errors import DataError
from llseg.methods.predict import colorize
from llseg.metrics.continual import summarize
from llseg.report import plots
from llseg.report.capture import CASE_DIR, class_names, display_size, resized, sample_rows
from llseg.report.render import Block, Document, Note, Picture, Section, Table, Text, write_document
from llseg.report.workspace import (
    RANK_DIR,
    Case,
    case_matrix,
    checkpoint_dataset,
    final_test_predictions,
    rank_files,
    read_cases,
    read_csv,
)

BY_IANVS = "not recorded by Ianvs"


def generic_palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct colours (matplotlib's tab20, repeated) for datasets llseg has no metadata for."""
    cmap = matplotlib.colormaps["tab20"]
    colours = [cmap(k % cmap.N) for k in range(n)]
    return [(round(255 * r), round(255 * g), round(255 * b)) for r, g, b, _ in colours]


def _palette(info: DatasetInfo | None, n: int) -> list[tuple[int, int, int]]:
    return list(info.palette) if info is not None and info.num_classes == n else generic_palette(n)


def _lut(info: DatasetInfo | None, n: int) -> np.ndarray:
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:n] = np.asarray(_palette(info, n), dtype=np.uint8)
    return lut


def _info(name: str | None) -> DatasetInfo | None:
    try:
        return None if name is None else get_dataset_info(name)
    except KeyError:
        return None


def _fmt(text: str) -> str:
    """Rank cells: numbers with a decimal point to 4 decimals, the rest as written."""
    try:
        value = float(text)
    except ValueError:
        return text
    return f"{value:.4f}" if "." in text and math.isfinite(value) else text


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


# ------------------------------------------------------------------ sections
def leaderboard(header: list[str], rows: list[dict[str, str]], cases: dict[str, Case], source: str) -> Section:
    columns = [c for c in header if c not in ("url", "MATRIX")]
    table = Table(
        [*columns, "test case"],
        [[_fmt(row.get(c, "")) for c in columns] + [cases[row.get("url", "")].label if row.get("url", "") in cases else "–"]
         for row in rows],
    )
    return Section("Leaderboard", 2, [Text(f"From rank/{source}; values as written there (fractions, not %)."), table])


def _summary(case: Case) -> list[Block]:
    blocks: list[Block] = [Text(f"Rank {case.rank}. Test case folder: {case.algorithm}/{case.case_id}.")]
    if case.folder is None:
        return blocks + [Note(f"the test case folder {case.algorithm}/{case.case_id} is not next to the rank files; "
                              "only its rank row is shown")]
    results = case.results
    if results is None:
        finished = case.row.get("time") or "not recorded"
        return blocks + [Text(f"Finished: {finished}."),
                         Note(f"seed, versions and wall time: {BY_IANVS}; run the benchmark with 'llseg bench' to record them")]
    blocks.append(
        Text(f"Seed: {results.get('seed')}. Wall time: {results['wall_time_s']:.1f} s. Finished: {results['finished']}.")
    )
    versions = results.get("versions")
    if versions:
        blocks.append(Text("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."))
    else:
        blocks.append(Note("versions: not in results.json (written by an older llseg)"))
    return blocks


def configuration(case: Case) -> Section:
    modules, hps = case.modules(), case.hyperparameters()
    rows = []
    for kind, name in modules.items():
        rows += [[kind, name, hp, value] for hp, value in hps.get(kind, {}).items()] or [[kind, name, "", ""]]
    if not rows:
        return Section("Configuration", 3, [Note("no module or hyperparameter columns in the rank file")])
    return Section("Configuration", 3, [Table(["module", "name", "hyperparameter", "value"], rows)])


def _cl_metrics(case: Case, matrix: list[list[float | None]]) -> list[Block]:
    try:
        gem = summarize([[math.nan if v is None else v for v in row] for row in matrix])
    except ValueError as exc:
        return [Note(f"GEM metrics undefined: {exc}")]
    rows = [["ACC (GEM)", _pct(gem["acc"])], ["BWT (GEM)", _pct(gem["bwt"])], ["forgetting", _pct(gem["forgetting"])]]
    rows += [[f"{name} (Ianvs)", _pct(float(case.row[name]))] for name in ("BWT", "FWT") if _is_number(case.row.get(name, ""))]
    return [Table(["metric", "value (%)"], rows)]


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def matrix_sections(case: Case) -> list[Section]:
    matrix, source = case_matrix(case)
    if matrix is None:
        note = Note(f"results matrix: {source}")
        return [Section("Results matrix", 3, [note]), Section("mIoU per step", 3, [note])]
    text = Text(f"Rows: after training round 1..R; columns: eval set 1..R; mIoU in %. Source: {source}.")
    heat = Picture(f"{case.slug}_matrix", plots.png(plots.matrix_heatmap(matrix)), f"results matrix of {case.label}")
    curves = Picture(f"{case.slug}_steps", plots.png(plots.step_curves(matrix)), f"mIoU per step of {case.label}")
    return [
        Section("Results matrix", 3, [text, heat, *_cl_metrics(case, matrix)]),
        Section("mIoU per step", 3, [Text("Each eval set holds the labels of one round's classes."), curves]),
    ]


def class_iou_section(case: Case) -> Section:
    title = "IoU per class after the last step"
    if case.results is None:
        return Section(title, 3, [Note(f"IoU per class: {BY_IANVS} (it needs the test labels, which Ianvs does not keep in "
                                       "the workspace); 'llseg bench' stores it in results.json")])
    ious = case.results.get("class_iou")
    if not ious:
        why = "not in results.json (written by an older llseg)" if "class_iou" not in case.results else \
            "not computed at bench time: the test predictions are not llseg prediction records (see report/report.json)"
        return Section(title, 3, [Note(f"IoU per class: {why}")])
    info = _info(case.results.get("dataset"))
    fig = plots.class_iou_bars(ious, _palette(info, len(ious)))
    return Section(title, 3, [
        Text("Test set, class-incremental prediction of the final model; classes not learned score 0, "
             "n/a = class neither labelled nor predicted."),
        Picture(f"{case.slug}_classes", plots.png(fig), f"IoU per class of {case.label}"),
    ])


def _legend(maps: Sequence[np.ndarray], names: list[str], lut: np.ndarray) -> list[tuple[str, tuple[int, int, int]]]:
    present = sorted({int(v) for m in maps for v in np.unique(m) if v != IGNORE_INDEX and v < len(names)})
    return [(names[k], tuple(int(c) for c in lut[k])) for k in present]  # type: ignore[misc]


def _stored(folder: Path, name: str | None, label: bool, notes: list[str]) -> np.ndarray | None:
    if name is None:
        return None
    try:
        return read_label_png(folder / name) if label else read_rgb(folder / name)
    except DataError as exc:
        notes.append(str(exc))
        return None


def samples_section(case: Case) -> Section:
    title = "Predictions on fixed test images"
    assert case.folder is not None
    if case.manifest is None:
        return _final_predictions_section(case, title)
    manifest, folder = case.manifest, case.folder / CASE_DIR
    notes: list[str] = list(manifest.get("notes", []))
    inputs, label_maps, row_titles = [], [], []
    for entry in manifest["samples"]:
        inputs.append(_stored(folder, entry["input"], False, notes))
        label_maps.append(
            [_stored(folder, entry["label"], True, notes)] + [_stored(folder, r, True, notes) for r in entry["rounds"]]
        )
        row_titles.append(Path(entry["image"]).stem.removesuffix("_leftImg8bit"))
    maps = [m for row in label_maps for m in row if m is not None]
    info = _info(manifest.get("dataset"))
    n = info.num_classes if info is not None else 1 + max((int(m[m != IGNORE_INDEX].max(initial=0)) for m in maps), default=0)
    lut = _lut(info, n)
    blocks: list[Block] = [Note(note) for note in notes]
    if maps or any(rgb is not None for rgb in inputs):
        panels = [[rgb] + [None if m is None else colorize(m, lut) for m in row] for rgb, row in zip(inputs, label_maps)]
        columns = ["input", "ground truth", *(f"after round {r}" for r in manifest["rounds"])]
        fig = plots.image_grid(panels, columns, row_titles, _legend(maps, class_names(info, n), lut))
        blocks = [
            Text(f"{len(panels)} test images (evenly spaced in the test index); ground truth and the prediction of "
                 "the model after each round, coloured with the dataset palette (black: ignored)."),
            Picture(f"{case.slug}_samples", plots.png(fig), f"predictions of {case.label} per round"),
            *blocks,
        ]
    return Section(title, 3, blocks)


def _final_predictions_section(case: Case, title: str) -> Section:
    """Ianvs case: the final model's predictions of a few test images, without input or ground truth."""
    assert case.folder is not None
    missing = Note(f"per-round predictions of fixed test images, with input and ground truth: {BY_IANVS}; "
                   "'llseg bench' stores them in <case>/report/")
    folder, records = final_test_predictions(case.folder)
    where = "output/eval/<r>/predictions" if folder is None else folder.relative_to(case.folder).as_posix()
    if not records:
        return Section(title, 3, [missing, Note(f"final test predictions: no llseg prediction record in {where}")])
    chosen = [records[k] for k in sample_rows(len(records))]
    try:
        preds = [(path, record.pred, record.num_classes) for path, record in ((p, load_prediction(p)) for p in chosen)]
    except DataError as exc:
        return Section(title, 3, [missing, Note(f"final test predictions: {exc}")])
    num_classes = preds[0][2]
    info = _info(checkpoint_dataset(case.folder))
    info = info if info is not None and info.num_classes == num_classes else None
    lut = _lut(info, num_classes)
    panels = [[colorize(resized(pred, display_size(*pred.shape), Image.Resampling.NEAREST), lut)] for _, pred, _ in preds]
    legend = _legend([p for _, p, _ in preds], class_names(info, num_classes), lut)
    fig = plots.image_grid(panels, ["final prediction"], [p.stem.rsplit("-", 1)[0] for p, _, _ in preds], legend)
    blocks: list[Block] = [
        Text(f"Final predictions of {len(chosen)} of the {len(records)} test images found in {where}, "
             "titled with their image names."),
        Picture(f"{case.slug}_final", plots.png(fig), f"final test predictions of {case.label}"),
        missing,
    ]
    if info is None:
        blocks.append(Note("class names and palette: no llseg checkpoint names the dataset; generic colours are used"))
    return Section(title, 3, blocks)


def case_sections(number: int, case: Case) -> list[Section]:
    head = Section(f"Test case {number}: {case.label}", 2, _summary(case))
    if case.folder is None:
        return [head]
    return [head, configuration(case), *matrix_sections(case), class_iou_section(case), samples_section(case)]


def build_document(job_dir: Path) -> Document:
    """The report of a benchmark folder (see the module docstring)."""
    all_path, selected_path = rank_files(job_dir)
    case_path = all_path or selected_path
    assert case_path is not None
    header, rows = read_csv(case_path)
    cases = read_cases(job_dir, header, rows)
    board_path = selected_path or all_path
    assert board_path is not None
    board_header, board_rows = (header, rows) if board_path == case_path else read_csv(board_path)
    by_url = {row.get("url", ""): case for row, case in zip(rows, cases)}
    llseg_cases = [c for c in cases if c.results is not None]
    kind = "llseg bench" if len(llseg_cases) == len(cases) else "Ianvs" if not llseg_cases else "llseg bench and Ianvs"
    intro: list[Block] = [Text(f"{len(cases)} test case(s) of a {kind} run, built by llseg {__version__} from the "
                               f"files in {job_dir.name}/ (rebuild with: llseg report <workspace>/{job_dir.name}).")]
    if llseg_cases:
        total = sum(c.results["wall_time_s"] for c in llseg_cases if c.results is not None)
        intro.append(Text(f"Total wall time of the test cases with llseg results: {total:.1f} s."))
    sections = [leaderboard(board_header, board_rows, by_url, board_path.name)]
    for number, case in enumerate(cases, 1):
        sections += case_sections(number, case)
    return Document(f"Benchmark report: {job_dir.name}", intro, sections)


def write_workspace_report(job_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` (+ ``report_files/``) into ``<job_dir>/rank``."""
    job_dir = Path(job_dir)
    return write_document(build_document(job_dir), job_dir / RANK_DIR)

