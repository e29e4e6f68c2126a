"""Plain text out of each supported document format, with only the standard library and pypdf.

Kept apart from the stages so each format's quirks are testable on their own and a new format is
one function plus one table entry.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path


@dataclass(frozen=True)
class Extracted:
    text: str
    pages: int = 1
    scanned_pages: int = 0  # PDF pages with no extractable text: images that need OCR


def _read_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8-sig")  # UnicodeDecodeError is a ValueError: bad input


def extract_txt(path: Path) -> Extracted:
    return Extracted(_read_text(path))


class _HtmlText(HTMLParser):
    """Collects visible text, keeping the word boundaries that the markup implies.

    A browser never renders two blocks, two table cells or two list items as one word, but in
    the source they are often written back to back (`<td>alpha</td><td>beta</td>`). So every
    element that is not inline text ends a line (blocks, list items, definition terms and
    descriptions, table rows) or, within a table row, a cell ends with a tab; inline elements
    (`<b>`, `<a>`, `<span>`) add nothing, so `one<b>two</b>` stays one word.
    """

    _SKIP = frozenset({"script", "style", "head", "template", "noscript"})
    _BLOCK = frozenset(
        {"address", "article", "aside", "blockquote", "br", "caption", "dd", "details", "dialog",
         "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2",
         "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "legend", "li", "main", "menu", "nav",
         "ol", "option", "p", "pre", "section", "summary", "table", "tbody", "tfoot", "thead",
         "title", "tr", "ul"}
    )
    _CELL = frozenset({"td", "th"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def _separate(self, tag: str) -> None:
        if tag in self._BLOCK:
            self.parts.append("\n")
        elif tag in self._CELL:
            self.parts.append("\t")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        else:
            self._separate(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        else:
            self._separate(tag)

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def extract_html(path: Path) -> Extracted:
    parser = _HtmlText()
    parser.feed(_read_text(path))
    parser.close()
    return Extracted("".join(parser.parts))


# Markdown syntax to strip, in order; each keeps the human-readable part. Line-start rules match
# spaces and tabs only ([ \t], not \s): \s would also eat the blank line before a heading or a
# list, gluing it to the previous paragraph.
_MARKDOWN_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^[ \t]*(```|~~~).*$", re.MULTILINE), ""),  # code fences (keep the code)
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images -> alt text
    (re.compile(r"\[([^\]]*)\]\([^)]*\)"), r"\1"),  # links -> link text
    (re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+", re.MULTILINE), ""),  # headings
    (re.compile(r"^[ \t]{0,3}>[ \t]?", re.MULTILINE), ""),  # block quotes
    (re.compile(r"^[ \t]*([-*+]|\d+[.)])[ \t]+", re.MULTILINE), ""),  # list markers
    (re.compile(r"^[ \t]*([-*_][ \t]*){3,}$", re.MULTILINE), ""),  # horizontal rules
    (re.compile(r"(\*\*|\*|~~|`)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # emphasis, inline code
    (re.compile(r"(?<!\w)(__|_)(?=\S)(.+?)(?<=\S)\1(?!\w)"), r"\2"),  # not inside snake_case
    (re.compile(r"<[^>]+>"), ""),  # inline HTML
)


def strip_markdown(text: str) -> str:
    for pattern, replacement in _MARKDOWN_RULES:
        text = pattern.sub(replacement, text)
    return text


def extract_markdown(path: Path) -> Extracted:
    return Extracted(strip_markdown(_read_text(path)))


def extract_pdf(path: Path) -> Extracted:
    from pypdf import PdfReader  # noqa: PLC0415 - the worker extra; only PDF stages need it

    reader = PdfReader(path)
    texts = [(page.extract_text() or "").strip() for page in reader.pages]
    return Extracted(
        "\n\n".join(t for t in texts if t),
        pages=len(texts),
        scanned_pages=sum(1 for t in texts if not t),
    )


EXTRACTORS: dict[str, Callable[[Path], Extracted]] = {
    "txt": extract_txt,
    "md": extract_markdown,
    "html": extract_html,
    "pdf": extract_pdf,
}
