"""Checkpoints load without running code (weights_only), legacy pickles only on explicit opt-in, and
writes are atomic (a failed write leaves the previous file)."""
from __future__ import annotations

import fractions
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from llseg.cli import main
from llseg.methods.checkpoint import ALLOW_PICKLE_ENV, load_weights_file, read_checkpoint, write_checkpoint
from tests.conftest import Rows
from tests.helpers import two_stage_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


class Payload:
    """Unpickling this object creates the folder ``marker``: the proof that a load ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return os.mkdir, (str(self.marker),)


def evil_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"format": "llseg-checkpoint/2", "architecture": "erfnet", "hyperparameters": Payload(marker)}, path)
    return path


@pytest.mark.parametrize("command", ["eval", "predict", "export-backbone"])
def test_a_crafted_checkpoint_runs_no_code(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)
    marker = tmp_path / "pwned"
    evil = evil_checkpoint(tmp_path / "evil.pt", marker)
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "index.txt").write_text("a.png a.png\n")
    extra = {"eval": ["--index", str(tmp_path / "index.txt")], "predict": ["--image", str(tmp_path / "a.png"),
             "--out", str(tmp_path / "out")], "export-backbone": ["--out", str(tmp_path / "b.pth")]}[command]
    assert main([command, "--checkpoint", str(evil), *extra]) == 2
    err = capsys.readouterr().err
    assert f"{evil} holds Python objects besides tensors" in err and "posix.mkdir" in err
    assert f"{ALLOW_PICKLE_ENV}=1" in err
    assert not marker.exists()


def test_legacy_pickles_load_only_on_opt_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "legacy.pt"
    torch.save({"ratio": fractions.Fraction(1, 3), "w": torch.ones(2)}, path)
    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)
    with pytest.raises(ValueError, match="fractions.Fraction"):
        load_weights_file(path)
    monkeypatch.setenv(ALLOW_PICKLE_ENV, "1")
    assert load_weights_file(path)["ratio"] == fractions.Fraction(1, 3)


def test_damaged_files_are_named(tmp_path: Path) -> None:
    text, truncated = tmp_path / "notes.pt", tmp_path / "cut.pt"
    text.write_text("not a checkpoint")
    torch.save({"w": torch.ones(1000)}, tmp_path / "whole.pt")
    truncated.write_bytes((tmp_path / "whole.pt").read_bytes()[:500])
    for path in (text, truncated):
        with pytest.raises(ValueError, match=f"{path} is not a readable checkpoint"):
            load_weights_file(path)


def test_llseg_checkpoints_load_safely_and_writes_are_atomic(make_rows: Callable[..., Rows], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)
    path, _ = two_stage_checkpoint(make_rows, tmp_path / "stage2.pt")
    before = path.read_bytes()
    checkpoint = read_checkpoint(path)  # weights_only: llseg's own files need no opt-in
    assert checkpoint["groups"] == [[0, 10], [13]]

    def crash(obj: Any, handle: Any) -> None:
        handle.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        write_checkpoint(path, checkpoint)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
