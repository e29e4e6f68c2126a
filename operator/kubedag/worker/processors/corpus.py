"""The `ingest` stage of the RAG and knowledge-graph templates, and how later stages read its
result.

Ingest is the document pipeline's validate → extract → normalize in one stage (the same
functions, the same workspace files: ``manifest.json``, ``extracted/<doc>.json``,
``normalized/<doc>.json``), for templates whose subject is what comes after the text is
clean. The document-processing template runs the three as separate stages instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kubedag.worker.context import Context
from kubedag.worker.processors import documents

NORMALIZED = documents.NORMALIZED


def ingest(context: Context) -> dict[str, Any]:
    """Validate, extract and normalize the documents under ``params.inputDir`` (default
    ``input``, relative to the workspace)."""
    validated = documents.validate(context)
    extracted = documents.extract(context)
    normalized = documents.normalize(context)
    return {
        "accepted": validated["accepted"],
        "rejected": validated["rejected"],
        "failed": extracted["failed"],
        "documents": normalized["documents"],
        "characters": normalized["characters"],
    }


def normalized_documents(context: Context, verb: str) -> Iterator[tuple[str, str]]:
    """(document path, normalized text) of the documents this pod handles (its fan-out batch,
    or all), skipping those whose extraction failed; reports progress as it goes."""
    for doc in documents.each_document(context, documents.selected_documents(context), verb):
        source = documents.doc_file(context, NORMALIZED, doc["path"])
        if source.exists():
            yield doc["path"], documents.read_json(source)["text"]
