"""A tiny real benchmark (ERFNet, synthetic data 32x64, 1 epoch): the report, its material, rebuilds, Ianvs layout."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from llseg.cli import main
from llseg.data.imageio import read_label_png, read_rgb
from llseg.data.labels import CITYSCAPES
from llseg.data.predictions import load_prediction
from llseg.metrics.incremental import IncrementalScorer
from llseg.report.capture import sample_rows
from llseg.report.workspace import case_matrix, final_test_predictions, read_cases, read_csv
from llseg.runner.dataset import final_metric_y, process_index
from llseg.runner.job import JobResult, run_job
from tests.helpers import JOB, tiny_city_repo
from tests.report.htmlcheck import Page

NAME = "erfnet_cil-3_synthetic-city"
CASE_HEADINGS = ["Configuration", "Results matrix", "mIoU per step", "IoU per class after the last step",
                 "Predictions on fixed test images"]
TEST_INDEX = "data/synthetic-city-cil3/test_index.txt"


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, JobResult]]:
    """``llseg bench`` of the cil and finetune algorithms; yields (repository root, result)."""
    root = tmp_path_factory.mktemp("bench")
    cwd, threads = os.getcwd(), torch.get_num_threads()
    os.chdir(root)
    torch.set_num_threads(1)
    try:
        tiny_city_repo(root)
        job = yaml.safe_load((root / JOB).read_text())
        job["benchmarkingjob"]["test_object"]["algorithms"] = job["benchmarkingjob"]["test_object"]["algorithms"][:2]
        (root / JOB).write_text(yaml.safe_dump(job, sort_keys=False))
        saved = dict(os.environ)
        result = run_job(JOB)
        os.environ.clear()
        os.environ.update(saved)
        yield root, result
    finally:
        torch.set_num_threads(threads)
        os.chdir(cwd)


def _job_dir(root: Path) -> Path:
    return root / "workspace" / NAME


def test_bench_writes_a_self_contained_report(bench: tuple[Path, JobResult]) -> None:
    root, result = bench
    assert not result.failed
    rank = _job_dir(root) / "rank"
    assert result.report_files == (f"workspace/{NAME}/rank/report.html", f"workspace/{NAME}/rank/report.md")
    page = Page((rank / "report.html").read_text())
    assert page.open == [] and page.links == [] and page.notes == []
    _, rows = read_csv(rank / "selected_rank.csv")
    expected = [("h1", f"Benchmark report: {NAME}"), ("h2", "Leaderboard")]
    for number, row in enumerate(rows, 1):
        expected += [("h2", f"Test case {number}: {row['algorithm']} ({Path(row['url']).name[:8]})")]
        expected += [("h3", title) for title in CASE_HEADINGS]
    assert page.headings == expected
    assert len(page.images) == 4 * len(rows)
    pngs = [base64.b64decode(src.removeprefix("data:image/png;base64,")) for src in page.images]
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in pngs)

    markdown = (rank / "report.md").read_text()
    referenced = re.findall(r"!\[[^\]]*\]\((report_files/[^)]+\.png)\)", markdown)
    assert [(rank / ref).read_bytes() for ref in referenced] == pngs
    assert sorted(p.name for p in (rank / "report_files").iterdir()) == sorted(Path(r).name for r in referenced)
    assert "| 1 | " in markdown and "Seed: 1234." in markdown


def test_case_folders_hold_the_report_material(bench: tuple[Path, JobResult]) -> None:
    root, result = bench
    test_y = final_metric_y(str(root / TEST_INDEX))
    lines = process_index(str(root / TEST_INDEX))
    rows = sample_rows(len(lines))
    assert len(rows) == 3
    for case in result.cases:
        folder = Path(case.case_dir)
        results = json.loads((folder / "results.json").read_text())
        assert results["dataset"] == "cityscapes"
        assert set(results["versions"]) == {"llseg", "python", "torch", "numpy"}
        scorer = IncrementalScorer(CITYSCAPES.num_classes)
        for label, pred in zip(test_y, results["test_predictions"]):
            scorer.update(load_prediction(pred), read_label_png(label))
        iou = scorer.class_iou()
        assert list(results["class_iou"]) == list(CITYSCAPES.class_names)
        assert [np.nan if v is None else v for v in results["class_iou"].values()] == pytest.approx(iou.tolist(), nan_ok=True)

        manifest = json.loads((folder / "report" / "report.json").read_text())
        assert manifest["rounds"] == [1, 2, 3] and manifest["notes"] == []
        assert [s["image"] for s in manifest["samples"]] == [lines[k].split()[0] for k in rows]
        for i, sample in enumerate(manifest["samples"]):
            label = read_label_png(folder / "report" / sample["label"])
            assert (label == read_label_png(lines[rows[i]].split()[1])).all()  # 64 px wide: stored as is
            assert read_rgb(folder / "report" / sample["input"]).shape == (32, 64, 3)
            for r, name in enumerate(sample["rounds"], 1):
                records = sorted((folder / "output" / "report" / str(r) / "predictions").glob("*.npz"))
                assert len(records) == len(rows)
                record = next(p for p in records if p.name.startswith(Path(sample["image"]).stem + "-"))
                assert (read_label_png(folder / "report" / name) == load_prediction(record).pred).all()


def test_llseg_report_rebuilds_identically(bench: tuple[Path, JobResult], capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = bench
    rank = _job_dir(root) / "rank"
    before = {name: (rank / name).read_text() for name in ("report.html", "report.md")}
    pictures = {p.name: p.read_bytes() for p in (rank / "report_files").iterdir()}
    for name in before:
        (rank / name).unlink()
    shutil.rmtree(rank / "report_files")
    assert main(["report", str(_job_dir(root))]) == 0
    assert capsys.readouterr().out.split() == [str(rank / "report.html"), str(rank / "report.md")]
    assert {name: (rank / name).read_text() for name in before} == before
    assert {p.name: p.read_bytes() for p in (rank / "report_files").iterdir()} == pictures


def test_report_of_an_ianvs_workspace(bench: tuple[Path, JobResult], tmp_path: Path) -> None:
    """Ianvs writes the same layout without llseg's results.json and report material."""
    root, _ = bench
    job_dir = shutil.copytree(_job_dir(root), tmp_path / NAME)
    header, rows = read_csv(job_dir / "rank" / "all_rank.csv")
    llseg_matrices = [case_matrix(c)[0] for c in read_cases(job_dir, header, rows)]
    for case_dir in job_dir.glob("*/*-*-*"):
        (case_dir / "results.json").unlink()
        shutil.rmtree(case_dir / "report")
        shutil.rmtree(case_dir / "output" / "report")
    shutil.rmtree(job_dir / "rank" / "report_files")
    cases = read_cases(job_dir, header, rows)
    assert [case_matrix(c) for c in cases] == [(m, "the MATRIX column of all_rank.csv") for m in llseg_matrices]
    n_test = len(process_index(str(root / TEST_INDEX)))
    assert all(len(final_test_predictions(c.folder)[1]) == n_test for c in cases if c.folder is not None)

    assert main(["report", str(job_dir)]) == 0
    page = Page((job_dir / "rank" / "report.html").read_text())
    assert [h for h in page.headings if h[0] == "h3"] == [("h3", t) for t in CASE_HEADINGS] * len(rows)
    assert len(page.images) == 3 * len(rows)  # matrix, steps, final predictions
    assert sum("not recorded by Ianvs" in note for note in page.notes) == 3 * len(rows)  # summary, class IoU, samples
    text = (job_dir / "rank" / "report.md").read_text()
    assert text.count("Source: the MATRIX column of all_rank.csv.") == len(rows)
    assert text.count(f"Final predictions of 3 of the {n_test} test images") == len(rows)


def test_report_errors_name_the_folder(bench: tuple[Path, JobResult], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = bench
    assert main(["report", str(root / "workspace")]) == 2
    err = capsys.readouterr().err
    assert f"{root / 'workspace'} has no rank/all_rank.csv" in err and f"benchmark folders {NAME}: pass one" in err
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert f"benchmark folder {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().err


def test_report_runs_no_code_from_a_crafted_model_file(bench: tuple[Path, JobResult], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An Ianvs workspace's last model file is read for its dataset name, never unpickled with code."""
    from tests.methods.test_checkpoint import evil_checkpoint

    monkeypatch.delenv("LLSEG_ALLOW_PICKLE", raising=False)
    root, _ = bench
    job_dir = shutil.copytree(_job_dir(root), tmp_path / NAME)
    marker = tmp_path / "pwned"
    models = sorted(job_dir.glob("*/*-*-*/output/train/*/seen_task/global.model"))
    assert models
    for case_dir in job_dir.glob("*/*-*-*"):  # an Ianvs case: the dataset name comes from the model file
        (case_dir / "results.json").unlink()
        shutil.rmtree(case_dir / "report")
    for model in models:
        evil_checkpoint(model, marker)
    assert main(["report", str(job_dir)]) == 0
    assert not marker.exists()
