"""A small document model and its two renderings: self-contained HTML and Markdown with PNG files.

HTML embeds every picture as a base64 PNG and carries its own CSS (no external file, script or
stylesheet). Markdown references the same pictures as ``<files>/<name>.png`` next to it.
"""
from __future__ import annotations

import base64
import html
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from llseg.atomic import write_text

FILES_DIR = "report_files"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

_CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { border-bottom: 2px solid #444; } h2 { border-bottom: 1px solid #aaa; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; display: block; overflow-x: auto; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.6em; text-align: left; white-space: nowrap; }
th { background: #eee; } tr:nth-child(even) td { background: #f8f8f8; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
.note { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.4em 0.8em; }
""".strip()


@dataclass(frozen=True)
class Text:
    """A paragraph of plain text."""

    text: str


@dataclass(frozen=True)
class Note:
    """A paragraph saying what is missing from the report and why."""

    text: str


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Picture:
    """A PNG; ``name`` is its file name in the Markdown folder (without ``.png``)."""

    name: str
    png: bytes
    alt: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"picture name {self.name!r} must be letters, digits, '._-'")


Block = Text | Note | Table | Picture


@dataclass
class Section:
    """A heading (level 2 or 3) and its blocks."""

    title: str
    level: int
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    intro: list[Block]
    sections: list[Section]

    def pictures(self) -> list[Picture]:
        blocks = [*self.intro, *(b for s in self.sections for b in s.blocks)]
        return [b for b in blocks if isinstance(b, Picture)]


def _html_block(block: Block) -> str:
    if isinstance(block, Text):
        return f"<p>{html.escape(block.text)}</p>"
    if isinstance(block, Note):
        return f'<p class="note">{html.escape(block.text)}</p>'
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    data = base64.b64encode(block.png).decode("ascii")
    return f'<img alt="{html.escape(block.alt)}" src="data:image/png;base64,{data}">'


def render_html(doc: Document) -> str:
    """The whole report as one HTML page."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(doc.title)}</title>",
        f"<style>\n{_CSS}\n</style></head><body>",
        f"<h1>{html.escape(doc.title)}</h1>",
        *map(_html_block, doc.intro),
    ]
    for section in doc.sections:
        parts.append(f"<h{section.level}>{html.escape(section.title)}</h{section.level}>")
        parts += map(_html_block, section.blocks)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_block(block: Block) -> str:
    if isinstance(block, Text):
        return block.text
    if isinstance(block, Note):
        return f"> **Not available:** {block.text}"
    if isinstance(block, Table):
        lines = ["| " + " | ".join(map(_md_cell, block.header)) + " |", "|" + "---|" * len(block.header)]
        lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows]
        return "\n".join(lines)
    return f"![{block.alt}]({FILES_DIR}/{block.name}.png)"


def render_markdown(doc: Document) -> str:
    """The report as Markdown; pictures are referenced in ``report_files/``."""
    parts = [f"# {doc.title}", *map(_md_block, doc.intro)]
    for section in doc.sections:
        parts.append(f"{'#' * section.level} {section.title}")
        parts += map(_md_block, section.blocks)
    return "\n\n".join(parts) + "\n"


def write_document(doc: Document, folder: Path, stem: str = "report") -> tuple[Path, Path]:
    """Write ``<stem>.html``, ``<stem>.md`` and ``report_files/*.png`` (replacing an older report)."""
    names = [p.name for p in doc.pictures()]
    if len(set(names)) != len(names):
        raise ValueError(f"picture names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
    folder.mkdir(parents=True, exist_ok=True)
    files = folder / FILES_DIR
    if files.exists():
        shutil.rmtree(files)
    files.mkdir()
    for picture in doc.pictures():
        (files / f"{picture.name}.png").write_bytes(picture.png)
    html_path, md_path = folder / f"{stem}.html", folder / f"{stem}.md"
    write_text(html_path, render_html(doc))
    write_text(md_path, render_markdown(doc))
    return html_path, md_path
