"""Format-specific extraction and the text transforms of the document stages."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubedag.worker.errors import PermanentError
from kubedag.worker.processors.documents import chunk_text, normalize_text
from kubedag.worker.processors.extractors import extract_html, extract_pdf, strip_markdown
from tests.unit.worker.pdf_sample import write_pdf


def test_markdown_keeps_words_and_drops_syntax() -> None:
    text = "## Title\n> quoted **bold** and _it_ in snake_case_name\n1. [link](http://x) `code`"
    assert strip_markdown(text) == "Title\nquoted bold and it in snake_case_name\nlink code"


def test_html_skips_scripts_and_separates_blocks(tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    page.write_text("<p>one<b>two</b></p><script>x()</script><div>three &amp; four</div>")
    assert extract_html(page).text.split() == ["onetwo", "three", "&", "four"]


def test_pdf_pages_without_text_count_as_scanned(tmp_path: Path) -> None:
    pdf = tmp_path / "d.pdf"
    write_pdf(pdf, (None, "Hello (world)", None))
    result = extract_pdf(pdf)
    assert (result.text, result.pages, result.scanned_pages) == ("Hello (world)", 3, 2)


def test_normalize_applies_nfkc_and_tidies_whitespace() -> None:
    ligature_and_full_width = "\ufb01ne\u00a0\uff57\uff4f\uff52\uff4b"  # "ﬁne", nbsp, "work"
    text = f"  {ligature_and_full_width}\t\tdone \r\n\n\n\nnext "
    assert normalize_text(text) == "fine work done\n\nnext"


@given(
    st.text(min_size=1, max_size=300),
    st.integers(min_value=1, max_value=50),
    st.integers(min_value=0, max_value=49),
)
def test_chunks_cover_the_text_with_the_overlap(text: str, size: int, overlap: int) -> None:
    if overlap >= size:
        with pytest.raises(PermanentError):
            chunk_text(text, size, overlap)
        return
    chunks = chunk_text(text, size, overlap)
    step = size - overlap
    assert all(len(c) <= size for c in chunks)
    assert "".join(c[: step] for c in chunks[:-1]) + chunks[-1] == text
    assert len(chunks) == max(1, -(-(len(text) - overlap) // step))
