"""The document pipeline's stages: validate → extract → normalize → chunk → aggregate.

Stages hand each other files through the run's shared workspace and keep their outputs to small
counts, because outputs travel in a 4 KiB termination message while documents do not fit. Every
per-document file is named after the document, so a fan-out stage (``context.items`` = document
paths) can split the work across pods without two pods writing the same file.

Workspace layout (all under ``context.workspace``)::

    manifest.json            validate: accepted and rejected documents
    extracted/<doc>.json     extract: raw text, pages, scanned pages (or the extraction error)
    normalized/<doc>.json    normalize: NFKC text with tidy whitespace
    chunks/<doc>.json        chunk: fixed-size overlapping chunks
    summary.json             aggregate: the totals
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from kubedag.worker.context import Context
from kubedag.worker.errors import PermanentError
from kubedag.worker.processors.extractors import EXTRACTORS

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
EXTRACTED, NORMALIZED, CHUNKS = "extracted", "normalized", "chunks"

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_CHUNK_SIZE = 1000  # characters
DEFAULT_CHUNK_OVERLAP = 100

_EXTENSIONS = {
    ".txt": "txt", ".text": "txt", ".md": "md", ".markdown": "md", ".html": "html",
    ".htm": "html", ".pdf": "pdf",
}
_PDF_MAGIC = b"%PDF-"

Outputs = dict[str, Any]


# --- shared helpers (also used by the template processors) ---------------------------------------


def int_param(context: Context, name: str, default: int, minimum: int) -> int:
    value = context.params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PermanentError(f"param {name} must be an integer >= {minimum}, got {value!r}")
    return value


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1))
    tmp.replace(path)  # a retried attempt never sees half a file


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as error:
        raise PermanentError(f"{path} is missing: did the previous stage run?") from error


def doc_file(context: Context, folder: str, doc: str) -> Path:
    return context.workspace / folder / f"{doc}.json"


def read_manifest(context: Context) -> Mapping[str, Any]:
    manifest: Mapping[str, Any] = read_json(context.workspace / MANIFEST)
    return manifest


def selected_documents(context: Context) -> list[Mapping[str, Any]]:
    """The accepted documents this pod handles: its fan-out batch, or all of them."""
    accepted = {doc["path"]: doc for doc in read_manifest(context)["accepted"]}
    if not context.items:
        return list(accepted.values())
    unknown = [item for item in context.items if item not in accepted]
    if unknown:
        raise PermanentError(f"fan-out items are not accepted documents: {unknown[:5]}")
    return [accepted[item] for item in context.items]


def each_document(
    context: Context, docs: list[Mapping[str, Any]], verb: str
) -> Iterator[Mapping[str, Any]]:
    for number, doc in enumerate(docs):
        context.report_progress(number / len(docs), f"{verb} {doc['path']}")
        yield doc


# --- validate ------------------------------------------------------------------------------------


def _classify(path: Path, max_bytes: int) -> tuple[str | None, str]:
    """(type, "") for an acceptable document, else (None, why not)."""
    size = path.stat().st_size
    if size == 0:
        return None, "empty file"
    if size > max_bytes:
        return None, f"{size} bytes is over maxBytes ({max_bytes})"
    data = path.read_bytes()
    if data.startswith(_PDF_MAGIC):
        return "pdf", ""  # the signature wins over a misleading extension
    kind = _EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        return None, f"unsupported type {path.suffix or '(no extension)'}"
    if kind == "pdf":
        return None, "has a .pdf extension but no PDF signature"
    if b"\x00" in data:
        return None, "binary content in a text file"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "text is not UTF-8"
    return kind, ""


def validate(context: Context) -> Outputs:
    """Accept the documents the later stages can read; list them in the manifest."""
    input_dir = context.workspace / str(context.params.get("inputDir", "input"))
    if not input_dir.is_dir():
        raise PermanentError(f"input directory {input_dir} does not exist")
    max_bytes = int_param(context, "maxBytes", DEFAULT_MAX_BYTES, minimum=1)
    files = sorted(
        p for p in input_dir.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(input_dir).parts)
    )
    accepted, rejected = [], []
    for number, path in enumerate(files):
        context.report_progress(number / max(1, len(files)), f"validating {path.name}")
        relative = path.relative_to(input_dir).as_posix()
        kind, reason = _classify(path, max_bytes)
        if kind is None:
            rejected.append({"path": relative, "reason": reason})
        else:
            accepted.append({"path": relative, "type": kind, "bytes": path.stat().st_size})
    write_json(
        context.workspace / MANIFEST,
        {"inputDir": str(input_dir), "accepted": accepted, "rejected": rejected},
    )
    return {
        "accepted": len(accepted),
        "rejected": len(rejected),
        "bytes": sum(doc["bytes"] for doc in accepted),
        "manifest": MANIFEST,
    }


# --- extract -------------------------------------------------------------------------------------


def extract(context: Context) -> Outputs:
    """Plain text per document. A document that cannot be read is recorded, not fatal."""
    input_dir = Path(read_manifest(context)["inputDir"])
    docs = selected_documents(context)
    pages = scanned = failed = 0
    for doc in each_document(context, docs, "extracting"):
        record: dict[str, Any] = {"path": doc["path"], "type": doc["type"]}
        try:
            result = EXTRACTORS[doc["type"]](input_dir / doc["path"])
        except Exception as error:  # one corrupt file must not sink the batch
            context.logger.warning("cannot extract %s: %s", doc["path"], error)
            record["error"] = f"{type(error).__name__}: {error}"[:500]
            failed += 1
        else:
            record.update(text=result.text, pages=result.pages, scannedPages=result.scanned_pages)
            pages += result.pages
            scanned += result.scanned_pages
        write_json(doc_file(context, EXTRACTED, doc["path"]), record)
    return {"documents": len(docs) - failed, "failed": failed, "pages": pages,
            "scannedPages": scanned}


# --- normalize -----------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPACES = re.compile(r"[^\S\n]+")  # whitespace other than newlines
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFKC (ligatures, full-width forms, non-breaking spaces), one space between words, at most
    one blank line between paragraphs, no leading or trailing space on any line."""
    text = unicodedata.normalize("NFKC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _SPACES.sub(" ", _CONTROL.sub(" ", text))
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def normalize(context: Context) -> Outputs:
    docs = selected_documents(context)
    done = characters = 0
    for doc in each_document(context, docs, "normalizing"):
        record = read_json(doc_file(context, EXTRACTED, doc["path"]))
        if "error" in record:
            continue
        text = normalize_text(record["text"])
        write_json(
            doc_file(context, NORMALIZED, doc["path"]),
            {"path": doc["path"], "type": doc["type"], "text": text},
        )
        done += 1
        characters += len(text)
    return {"documents": done, "characters": characters}


# --- chunk ---------------------------------------------------------------------------------------


def chunk_text(text: str, size: int, overlap: int) -> list[str]:
    """Fixed windows of ``size`` characters, each starting ``size - overlap`` after the last; the
    last window ends at the text's end, so no chunk is a mere repeat of the previous overlap."""
    if not 0 <= overlap < size:
        raise PermanentError(f"chunkOverlap must be in [0, chunkSize), got {overlap} for {size}")
    if not text:
        return []
    step = size - overlap
    chunks = [text[:size]]
    start = step
    while start + overlap < len(text):
        chunks.append(text[start : start + size])
        start += step
    return chunks


def chunk(context: Context) -> Outputs:
    size = int_param(context, "chunkSize", DEFAULT_CHUNK_SIZE, minimum=1)
    overlap = int_param(context, "chunkOverlap", DEFAULT_CHUNK_OVERLAP, minimum=0)
    docs = selected_documents(context)
    done = total = 0
    for doc in each_document(context, docs, "chunking"):
        source = doc_file(context, NORMALIZED, doc["path"])
        if not source.exists():  # extraction failed; aggregate counts it
            continue
        chunks = chunk_text(read_json(source)["text"], size, overlap)
        write_json(doc_file(context, CHUNKS, doc["path"]), {"path": doc["path"],
                                                              "chunks": chunks})
        done += 1
        total += len(chunks)
    return {"documents": done, "chunks": total}


# --- aggregate -----------------------------------------------------------------------------------


def aggregate(context: Context) -> Outputs:
    """Totals over all accepted documents (never a fan-out batch: it is the join)."""
    manifest = read_manifest(context)
    types: Counter[str] = Counter()
    documents = words = chunks = pages = scanned = failed = 0
    for doc in manifest["accepted"]:
        extracted = read_json(doc_file(context, EXTRACTED, doc["path"]))
        if "error" in extracted:
            failed += 1
            continue
        text = read_json(doc_file(context, NORMALIZED, doc["path"]))["text"]
        documents += 1
        types[doc["type"]] += 1
        words += len(text.split())
        pages += extracted["pages"]
        scanned += extracted["scannedPages"]
        chunks += len(read_json(doc_file(context, CHUNKS, doc["path"]))["chunks"])
    summary = {
        "documents": documents,
        "words": words,
        "chunks": chunks,
        "pages": pages,
        "scannedPages": scanned,
        "types": dict(sorted(types.items())),
        "rejected": len(manifest["rejected"]),
        "failed": failed,
    }
    write_json(context.workspace / SUMMARY, summary)
    return {**summary, "summary": SUMMARY}
