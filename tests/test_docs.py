"""Every document the code, the YAML files and the docs cite is in the repository."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for pattern in ("llseg/**/*.py", "tests/**/*.py", "benchmarks/*.py", "benchmarks/*.md", "docs/*.md",
                             "examples/**/*.md", "examples/**/*.yaml", "testenv/*.yaml", "testalgorithms/*.yaml",
                             "*.md", "*.yaml", "quickstart.py")
           for p in ROOT.glob(pattern)]
CITED = re.compile(r"(?<![\w./-])((?:docs|benchmarks)/[\w./-]+\.md)\b")  # repository paths
LINKED = re.compile(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)")  # Markdown links, relative to the file
SECTION = re.compile(r"(docs/(?:methods|ianvs-sedna)\.md) §(\d+(?:\.\d+)?)")


def test_there_are_sources_to_check() -> None:
    assert len(SOURCES) > 100 and ROOT / "README.md" in SOURCES


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_cited_documents_exist(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    missing = [m for m in CITED.findall(text) if not (ROOT / m).is_file()]
    if path.suffix == ".md":
        missing += [m for m in LINKED.findall(text) if not (path.parent / m).is_file()]
    assert not missing, missing


def test_cited_sections_exist() -> None:
    headings: dict[str, set[str]] = {}
    for doc in ("docs/methods.md", "docs/ianvs-sedna.md"):
        found = re.findall(r"^#+ (\d+(?:\.\d+)?)[. ]", (ROOT / doc).read_text(encoding="utf-8"), flags=re.M)
        headings[doc] = set(found)
    cited = {(doc, section) for path in SOURCES for doc, section in SECTION.findall(path.read_text(encoding="utf-8"))}
    assert len(cited) > 20
    assert not [c for c in cited if c[1] not in headings[c[0]]]
