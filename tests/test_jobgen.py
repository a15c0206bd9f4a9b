"""`llseg make-jobs`: the shipped per-split jobs are exactly what the command writes, and every one validates."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from llseg.data.splits import PRESETS, preset_dataset
from llseg.jobgen import FAMILIES, SPLITS_DIR, generate, stale, write_jobs
from llseg.methods.config import resolve_config
from llseg.runner.config import load_job
from llseg.runner.grid import combine
from llseg.runner.job import resolve_job

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_files_equal_the_generated_ones() -> None:
    assert stale(ROOT) == []  # on failure: run `llseg make-jobs` and commit examples/*/lifelong_learning_bench/splits


def test_every_voc_isprs_ade20k_and_cityscapes_domain_split_has_a_job() -> None:
    jobs = {rel.split("/")[-2] for rel in generate(ROOT) if rel.endswith("/benchmarkingjob.yaml")}
    templates = {f.template for f in FAMILIES}
    wanted = {name for name, spec in PRESETS.items() if preset_dataset(spec) in ("voc", "isprs", "ade20k")}
    wanted |= {name for name in PRESETS if name.startswith("cityscapes-domain-")}
    assert jobs | templates == wanted and not jobs & templates
    assert len([n for n in wanted if n.startswith("voc-")]) == 10 and "voc-5-3-disjoint" in jobs


def test_split_override_follows_the_authors_script_for_that_split() -> None:
    """PLOP's 1-1 script sets the POD logits factor to 0.001; its 11-1 script (and so the 11-5 template) 0.0001."""
    files = generate(ROOT)

    def factor(split: str) -> float:
        rel = next(r for r in files if f"/{split}/testalgorithms/" in r and "_plop_" in r)
        hps = yaml.safe_load(files[rel])["algorithm"]["modules"][0]["hyperparameters"]
        return next(h["pod_logits_factor"]["values"][0] for h in hps if "pod_logits_factor" in h)

    assert factor("cityscapes-domain-1-1") == 0.001 and factor("cityscapes-domain-11-1") == 0.0001


def test_write_jobs_rewrites_edits_and_removes_strays(tmp_path: Path) -> None:
    for family in FAMILIES:
        shutil.copytree(ROOT / family.folder, tmp_path / family.folder)
    edited = tmp_path / "examples/voc/lifelong_learning_bench/splits/voc-19-1/benchmarkingjob.yaml"
    edited.write_text("benchmarkingjob: {}\n")
    stray = tmp_path / f"examples/isprs/lifelong_learning_bench/{SPLITS_DIR}/isprs-9-9/benchmarkingjob.yaml"
    stray.parent.mkdir(parents=True)
    stray.write_text("x: 1\n")
    assert sorted(stale(tmp_path)) == sorted([edited.relative_to(tmp_path).as_posix(), stray.relative_to(tmp_path).as_posix()])
    write_jobs(tmp_path)
    assert stale(tmp_path) == [] and not stray.exists() and edited.read_text().startswith("# GENERATED")


@pytest.mark.parametrize("family", FAMILIES, ids=[f.tag for f in FAMILIES])
def test_every_generated_job_validates(family, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each job loads and resolves as `llseg bench` does (placeholder index files), its rounds are the split's
    steps, and every algorithm's hyperparameters resolve for its split and dataset as the estimator resolves them."""
    for folder in ("testenv", "testalgorithms", family.folder):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    for split in family.splits:
        for name in ("train_index.txt", "test_index.txt"):
            (tmp_path / "data" / split).mkdir(parents=True, exist_ok=True)
            (tmp_path / "data" / split / name).write_text("")
        job = load_job(f"{family.folder}/{SPLITS_DIR}/{split}/benchmarkingjob.yaml")
        resolve_job(job)
        assert job.testenv.incremental_rounds == PRESETS[split].num_steps
        assert split in job.name and job.algorithms
        for algorithm in job.algorithms:
            for combo in combine([list(m.variants) for m in algorithm.modules]):
                hps = dict(combo[0])
                assert hps["split"] == split and hps["dataset"].startswith(preset_dataset(PRESETS[split]))
                config = resolve_config(hps)
                assert config.split == split


def test_cli_check(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from llseg.cli import main

    assert main(["make-jobs", "--check", "--root", str(ROOT)]) == 0
    assert "0 generated job file(s) out of date" in capsys.readouterr().out
    for family in FAMILIES:
        shutil.copytree(ROOT / family.folder, tmp_path / family.folder)
    (tmp_path / FAMILIES[0].folder / SPLITS_DIR / "voc-15-5" / "benchmarkingjob.yaml").unlink()
    assert main(["make-jobs", "--check", "--root", str(tmp_path)]) == 1
    assert "out of date: examples/voc/lifelong_learning_bench/splits/voc-15-5/benchmarkingjob.yaml" in capsys.readouterr().out
