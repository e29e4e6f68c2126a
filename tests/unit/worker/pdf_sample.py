"""Writes small real PDFs with pypdf alone: text pages in Helvetica and blank ("scanned") pages.

``examples/documents/report.pdf`` was made with ``write_pdf(path, SAMPLE_PAGES)``; tests also
use it to build PDFs with known page contents.
"""

from __future__ import annotations

from pathlib import Path

from pypdf import PdfWriter
from pypdf.generic import ContentStream, DictionaryObject, NameObject

# One entry per page; None is a page without text, as a scanned image would be to pypdf.
SAMPLE_PAGES: tuple[str | None, ...] = (
    "Quarterly report. Revenue grew in every region.",
    None,
)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def write_pdf(path: Path, pages: tuple[str | None, ...]) -> None:
    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    font_ref = writer._add_object(font)
    for text in pages:
        page = writer.add_blank_page(width=612, height=792)
        if text is None:
            continue
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font_ref})}
        )
        content = ContentStream(None, writer)
        content.set_data(f"BT /F1 12 Tf 72 720 Td ({_escape(text)}) Tj ET".encode())
        page.replace_contents(content)
    writer.add_metadata({"/Producer": "kubedag tests"})
    with path.open("wb") as stream:
        writer.write(stream)


if __name__ == "__main__":
    write_pdf(Path("examples/documents/report.pdf"), SAMPLE_PAGES)
