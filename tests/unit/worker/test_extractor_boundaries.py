"""The extractors keep the boundaries the markup implies: HTML table cells and definition lists
used to run together (`<td>alpha</td><td>beta</td>` → `alphabeta`, issue 12), and a Markdown
heading or list swallowed the blank line before it, joining the previous paragraph."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubedag.worker.processors.documents import normalize_text
from kubedag.worker.processors.extractors import extract_html, strip_markdown


def _text(tmp_path: Path, html: str) -> str:
    """The normalized text, blank lines dropped (a block ends a paragraph: its own business)."""
    page = tmp_path / "page.html"
    page.write_text(html)
    lines = normalize_text(extract_html(page).text).split("\n")
    return "\n".join(line for line in lines if line)


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<table><tr><td>alpha</td><td>beta</td></tr></table>", "alpha beta"),
        ("<table><tr><th>name</th><th>age</th></tr><tr><td>Ana</td><td>41</td></tr></table>",
         "name age\nAna 41"),
        ("<dl><dt>alpha</dt><dd>first</dd><dt>beta</dt><dd>second</dd></dl>",
         "alpha\nfirst\nbeta\nsecond"),
        ("<ul><li>one</li><li>two</li></ul>", "one\ntwo"),
        ("<select><option>red</option><option>green</option></select>", "red\ngreen"),
        ("<figure><img src=x><figcaption>chart</figcaption></figure><nav>home</nav>",
         "chart\nhome"),
        ("<details><summary>more</summary>hidden</details>", "more\nhidden"),
    ],
)
def test_blocks_cells_and_items_never_glue_words(tmp_path: Path, html: str,
                                                 expected: str) -> None:
    assert _text(tmp_path, html) == expected


def test_inline_markup_keeps_a_word_whole(tmp_path: Path) -> None:
    html = "<p>un<b>break</b><i>able</i> <a href=x>link</a><span>ed</span></p>"
    assert _text(tmp_path, html) == "unbreakable linked"


def test_cells_in_a_row_stay_on_one_line(tmp_path: Path) -> None:
    html = "<table><tr><td>a</td><td>b</td><td>c</td></tr><tr><td>d</td></tr></table>"
    assert _text(tmp_path, html).split("\n") == ["a b c", "d"]


def test_markdown_headings_and_lists_keep_the_paragraph_break_before_them() -> None:
    text = "Intro.\n\n## Title\n\nText.\n\n- one\n- two\n\n1. first\n\n> quoted\n\n---\nend"
    expected = "Intro.\n\nTitle\n\nText.\n\none\ntwo\n\nfirst\n\nquoted\n\n\nend"
    assert strip_markdown(text) == expected
