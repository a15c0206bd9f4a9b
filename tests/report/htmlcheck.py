"""Parse a report page with ``html.parser``: headings, embedded pictures, references to other files."""
from __future__ import annotations

from html.parser import HTMLParser

VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})


class Page(HTMLParser):
    """Collects ``(tag, text)`` of h1-h3, ``<img>`` sources, notes, and every link-like attribute."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.headings: list[tuple[str, str]] = []
        self.images: list[str] = []
        self.notes: list[str] = []
        self.links: list[str] = []
        self.open: list[str] = []
        self._capture: str | None = None
        self._text = ""
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag not in VOID:
            self.open.append(tag)
        self.links += [v or "" for k, v in attrs if k in ("href", "src") and tag != "img"]
        if tag in ("h1", "h2", "h3") or (tag == "p" and values.get("class") == "note"):
            self._capture, self._text = tag if tag != "p" else "note", ""

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()
        if self._capture == "note" and tag == "p":
            self.notes.append(self._text)
            self._capture = None
        elif self._capture == tag:
            self.headings.append((tag, self._text))
            self._capture = None

    def handle_data(self, data: str) -> None:
        if self._capture:
            self._text += data
