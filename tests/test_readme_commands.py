"""The command sequences of README.md and the example READMEs run as written (at tiny sizes) and
prepare exactly the folders and splits that the shipped synthetic jobs read."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from llseg.cli import main
from llseg.data.manifest import Manifest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "examples").glob("*/*/README.md"))]
# The synthetic jobs (run on a CPU from `llseg synth` data): job file -> the README that documents it.
JOBS = {
    ROOT / "benchmarkingjob.yaml": ROOT / "README.md",
    ROOT / "examples/voc/lifelong_learning_bench/benchmarkingjob_synthetic-objects.yaml":
        ROOT / "examples/voc/lifelong_learning_bench/README.md",
    ROOT / "examples/isprs/lifelong_learning_bench/benchmarkingjob_synthetic-aerial.yaml":
        ROOT / "examples/isprs/lifelong_learning_bench/README.md",
}
# Tiny sizes through documented options (the commands are otherwise run as written; a repeated option's last
# value wins). The aerial tiles hold one 96 px patch each (--patch-size 96 as written), 12 train tiles a domain.
TINY_SYNTH = {
    "city": ["--size", "32x64", "--images-per-city", "3"],  # the domain split needs 3 per city
    "objects": ["--size", "32x32"],
    "aerial": ["--size", "96x96"],
    "ade20k": ["--size", "16x16"],
}
TINY_TRAIN = ["--set", "epochs=1", "--set", "input_size=32x64", "--set", "batch_size=4"]
TINY_PRETRAIN = {"objects": ["--size", "32x32", "--images", "8", "--epochs", "1"], "aerial": ["--epochs", "1"]}
PLACEHOLDERS = {"path/to/image_or_folder": "data/synthetic-city/leftImg8bit/val/frankfurt", "512x1024": "32x64"}
# Not run here: minutes of training (bench; its data and job files are checked below), a workspace that
# only bench writes (report), settings from a Sedna pod (sedna), repository files (make-jobs, tested in
# tests/test_jobgen.py), elided arguments (`...`) and real datasets (/path/to, /data/, <your ...>).
NOT_RUN = ("bench", "report", "sedna", "make-jobs")


def bash_lines(path: Path) -> list[str]:
    """The command lines of the ```bash blocks of ``path``: continuations joined, comments and
    ``[optional]`` parts removed."""
    blocks = re.findall(r"^```bash\n(.*?)^```", path.read_text(), flags=re.S | re.M)
    text = "\n".join(blocks).replace("\\\n", " ")
    lines = (re.sub(r"\[[^]]*\]", "", line.split(" #", 1)[0]).strip() for line in text.splitlines())
    return [line for line in lines if line]


def llseg_commands(path: Path) -> list[list[str]]:
    return [shlex.split(line)[1:] for line in bash_lines(path) if line.startswith("llseg ")]


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def runnable(argv: list[str]) -> list[str] | None:
    """``argv`` as run by the test (tiny sizes, placeholders filled), or None when it is not run here."""
    if argv[0] in NOT_RUN or "..." in argv or any(a.startswith(("/path/to", "/data/", "<")) for a in argv):
        return None
    argv = [PLACEHOLDERS.get(a, a) for a in argv]
    if argv[0] == "synth":
        argv += TINY_SYNTH[option(argv, "--kind") or "city"]
    if argv[0] == "train" and "--print-config" not in argv:
        argv += TINY_TRAIN
    if argv[0] == "pretrain":
        argv += TINY_PRETRAIN[str(option(argv, "--kind"))]
    return argv


def job_data(job: Path) -> tuple[Path, set[str]]:
    """(folder of the testenv's train_index, the ``split`` hyperparameters of the job's algorithms)."""
    folder, splits, _ = job_inputs(job)
    return folder, splits


def job_inputs(job: Path) -> tuple[Path, set[str], set[str]]:
    """:func:`job_data` and the ``backbone_weights`` files that the job's algorithms load."""
    spec = yaml.safe_load(job.read_text())["benchmarkingjob"]
    testenv = yaml.safe_load((ROOT / spec["testenv"]).read_text())["testenv"]
    train_index = Path(testenv["dataset"]["train_index"])
    assert Path(testenv["dataset"]["test_index"]).parent == train_index.parent, job
    splits, backbones = set(), set()
    for algorithm in spec["test_object"]["algorithms"]:
        modules = yaml.safe_load((ROOT / algorithm["url"]).read_text())["algorithm"]["modules"]
        for hp in (h for m in modules for h in m.get("hyperparameters", [])):
            splits.update(hp.get("split", {}).get("values", []))
            backbones.update(v["backbone_weights"] for v in hp.get("model_kwargs", {}).get("values", [])
                             if "backbone_weights" in v)
    return train_index.parent, splits, backbones


@pytest.mark.parametrize("job", list(JOBS), ids=lambda p: p.name)
def test_readmes_prepare_what_each_synthetic_job_reads(job: Path) -> None:
    folder, splits, backbones = job_inputs(job)
    for doc in dict.fromkeys((ROOT / "README.md", JOBS[job])):
        commands = llseg_commands(doc)
        pretrained = {option(c, "--out") for c in commands if c[0] == "pretrain"}
        assert backbones <= pretrained, f"{doc.name}: no `llseg pretrain --out` writes {sorted(backbones - pretrained)}"
        prepares = [c for c in commands if c[0] == "prepare" and option(c, "--out") == str(folder)]
        assert prepares, f"{doc.name} has no `llseg prepare ... --out {folder}` (what {job.name} reads)"
        for prepare in prepares:
            assert splits <= {option(prepare, "--split")}, (doc, prepare, splits)
            root = option(prepare, "--root")
            synths = [c for c in commands[: commands.index(prepare)] if c[0] == "synth" and option(c, "--out") == root]
            assert synths, f"{doc.name}: nothing writes {root} before `llseg prepare --root {root}`"
        job_rel = str(job.relative_to(ROOT))
        if doc != ROOT / "README.md":
            assert any(c[:3] == ["bench", "-f", job_rel] for c in commands), f"{doc.name} does not run `llseg bench -f {job_rel}`"


def test_every_job_file_a_readme_names_exists() -> None:
    for doc in DOCS:
        for line in bash_lines(doc):
            for path in re.findall(r"-f (\S+\.yaml)", line):
                assert (ROOT / path).is_file(), f"{doc.relative_to(ROOT)}: {path} does not exist"


def test_readme_command_sequences_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    """Run every llseg command of the READMEs in order (each distinct command once), from an empty
    folder standing for the repository root; then the prepared folders hold what the jobs read."""
    monkeypatch.chdir(tmp_path)
    done: list[list[str]] = []
    for doc in DOCS:
        for argv in map(runnable, llseg_commands(doc)):
            if argv is None or argv in done:
                continue
            assert main(argv) == 0, f"{doc.relative_to(ROOT)}: `llseg {shlex.join(argv)}` failed"
            done.append(argv)
    ran = {a[0] for a in done}
    assert {"synth", "prepare", "pretrain", "train", "eval", "predict", "export-backbone", "export"} <= ran, ran
    assert list((tmp_path / "predictions").iterdir()), "llseg predict wrote nothing"
    for job in JOBS:
        folder, splits = job_data(job)
        for name in ("train_index.txt", "test_index.txt"):
            assert (tmp_path / folder / name).is_file(), f"{job.name} reads {folder / name}, which no README command writes"
        for backbone in job_inputs(job)[2]:
            assert (tmp_path / backbone).is_file(), f"{job.name} loads {backbone}, which no README command writes"
        manifest = Manifest.load(tmp_path / folder)
        assert splits <= {manifest.spec}, (job.name, manifest.spec, splits)
