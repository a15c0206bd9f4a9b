"""Report material at bench time: sample choice, sizes, and a job whose estimator is not llseg's."""
from __future__ import annotations

import json
import os
from pathlib import Path

from llseg.report.capture import SAMPLE_COUNT, display_size, sample_rows
from llseg.runner.dataset import pick_samples
from llseg.runner.job import run_job
from tests.report.htmlcheck import Page
from tests.runner.conftest import Repo


def test_sample_rows_are_evenly_spaced_and_fixed() -> None:
    assert sample_rows(500) == [0, 250, 499]
    assert sample_rows(10) == [0, 4, 9]
    assert sample_rows(2) == [0, 1] and sample_rows(4, count=1) == [0]


def test_display_size_keeps_the_aspect_ratio() -> None:
    assert display_size(1024, 2048) == (256, 512)
    assert display_size(32, 64) == (32, 64)


def test_pick_samples_parses_rows_like_the_paradigm(repo: Repo) -> None:
    samples = pick_samples("data/test_index.txt", SAMPLE_COUNT)
    assert [os.path.basename(x[0]) for x in samples.x] == ["c1_t0.png", "c2_t0.png", "c3_t1.png"]
    assert samples.x.shape == (3, 2) and os.path.isabs(samples.y[0])


def test_job_with_a_foreign_estimator_reports_what_is_missing(repo: Repo) -> None:
    result = run_job(repo.standard())
    assert not result.failed
    keep = Path(result.cases[0].case_dir)
    report = json.loads((keep / "results.json").read_text())
    assert report["class_iou"] is None and report["dataset"] is None
    manifest = json.loads((keep / "report" / "report.json").read_text())
    assert manifest["rounds"] == [1, 2, 3] and [len(s["rounds"]) for s in manifest["samples"]] == [3, 3, 3]
    assert [note.split(":")[0] for note in manifest["notes"]] == [
        "input images not stored", "ground truths not stored", "per-round predictions not stored", "per-class IoU not computed",
    ]
    # Each round's model predicted the samples into its own folder; the final test predictions stay in eval/3.
    assert sorted(os.listdir(keep / "output" / "report" / "3" / "pred")) == ["c1_t0.png.txt", "c2_t0.png.txt", "c3_t1.png.txt"]
    assert (keep / "output" / "report" / "1" / "pred" / "c3_t1.png.txt").read_text() == "none"
    assert (keep / "output" / "report" / "3" / "pred" / "c3_t1.png.txt").read_text() == "c3"
    assert {str(Path(p).parent) for p in report["test_predictions"]} == {str((keep / "output" / "eval" / "3" / "pred").resolve())}

    page = Page(Path(result.report_files[0]).read_text())
    assert len(page.images) == 2 * 2  # matrix and steps per case: no class IoU, no sample images
    assert "IoU per class: not computed at bench time: the test predictions are not llseg prediction records " \
           "(see report/report.json)" in page.notes
    assert any(note.startswith("per-round predictions not stored: ") for note in page.notes)
