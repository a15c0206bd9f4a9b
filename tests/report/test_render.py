"""The document model renders to self-contained HTML and to Markdown with PNG files."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest

from llseg.report.render import Document, Note, Picture, Section, Table, Text, render_markdown, write_document
from tests.report.htmlcheck import Page

PNG = b"\x89PNG\r\n\x1a\nfake"


def _doc() -> Document:
    return Document(
        "Report <1>",
        [Text("a & b")],
        [
            Section("Leaderboard", 2, [Table(["rank", "algorithm"], [["1", "x|y"]])]),
            Section("Case", 3, [Picture("case-1_matrix", PNG, "matrix"), Note("no matrix")]),
        ],
    )


def test_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    html_path, _ = write_document(_doc(), tmp_path)
    page = Page(html_path.read_text())
    assert page.headings == [("h1", "Report <1>"), ("h2", "Leaderboard"), ("h3", "Case")]
    assert page.images == ["data:image/png;base64," + base64.b64encode(PNG).decode()]
    assert page.links == [] and page.notes == ["no matrix"] and page.open == []
    assert "a &amp; b" in html_path.read_text()
    assert (tmp_path / "report_files" / "case-1_matrix.png").read_bytes() == PNG


def test_markdown_references_the_written_pictures(tmp_path: Path) -> None:
    _, md_path = write_document(_doc(), tmp_path)
    text = md_path.read_text()
    assert "![matrix](report_files/case-1_matrix.png)" in text
    assert "| 1 | x\\|y |" in text and "> **Not available:** no matrix" in text
    assert text == render_markdown(_doc())


def test_rewrite_replaces_old_pictures_and_rejects_bad_names(tmp_path: Path) -> None:
    write_document(_doc(), tmp_path)
    write_document(Document("t", [], []), tmp_path)
    assert list((tmp_path / "report_files").iterdir()) == []
    with pytest.raises(ValueError, match="repeat"):
        write_document(Document("t", [Picture("a", PNG, ""), Picture("a", PNG, "")], []), tmp_path)
    with pytest.raises(ValueError, match="letters, digits"):
        Picture("../a", PNG, "")
