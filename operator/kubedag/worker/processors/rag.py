"""The RAG template's stages: ingest → chunk → embed → store, and a `query` stage to ask the index.

Workspace layout (under ``context.workspace``), after ``corpus.ingest``'s files::

    chunks/<doc>.json       chunk: sentence-aligned chunks of the normalized text
    embeddings/<doc>.json   embed: one vector per chunk (see ``vector_index.Embeddings``)
    index/                  store: the flat cosine index (format in ``vector_index``)
    query.json              query: the hits of the last query, with their texts

``chunk`` and ``embed`` work per document, so they may fan out over document paths
(``context.items``); ``store`` is the join and always reads every document.

From Python, on the run's workspace::

    from kubedag.worker.processors.vector_index import query
    query("/path/to/workspace/index", "how do I start a cluster?", k=3)
"""

from __future__ import annotations

from typing import Any

from kubedag.worker.context import Context
from kubedag.worker.errors import PermanentError
from kubedag.worker.processors import documents
from kubedag.worker.processors.corpus import normalized_documents
from kubedag.worker.processors.documents import (
    CHUNKS,
    doc_file,
    int_param,
    read_json,
    read_manifest,
    write_json,
)
from kubedag.worker.processors.embedding import Embedder, embedder_from_params
from kubedag.worker.processors.text_analysis import paragraphs, sentences
from kubedag.worker.processors.vector_index import (
    FlatIndex,
    Item,
    decode_vectors,
    encode_embeddings,
    write_index,
)

__all__ = ["chunk", "embed", "query", "sentence_chunks", "store"]

EMBEDDINGS = "embeddings"
DEFAULT_INDEX_DIR = "index"
QUERY_RESULT = "query.json"
DEFAULT_CHUNK_SIZE = 500  # characters: a few sentences, one topic
MAX_HITS_IN_OUTPUTS = 10  # outputs travel in a 4 KiB termination message

Outputs = dict[str, Any]


# --- chunk ---------------------------------------------------------------------------------------


def sentence_chunks(text: str, size: int, overlap: int = 0) -> list[str]:
    """Whole sentences packed into chunks of at most ``size`` characters.

    A chunk never cuts a sentence (one longer than ``size`` is cut into windows on its own), so
    each chunk reads as text. A new paragraph starts a new chunk once the current one is half
    full: a paragraph is usually a topic, and a chunk about one topic retrieves better. The
    last ``overlap`` sentences of a chunk start the next one as well, as far as they fit.
    """
    if size < 1 or overlap < 0:
        raise PermanentError(f"chunkSize must be >= 1 and overlapSentences >= 0, got {size}, "
                             f"{overlap}")
    chunks: list[str] = []
    current: list[str] = []

    def length(parts: list[str]) -> int:
        return sum(map(len, parts)) + max(0, len(parts) - 1)

    def flush() -> list[str]:
        chunks.append(" ".join(current))
        carried = current[len(current) - overlap :] if overlap else []
        while carried and length(carried) > size // 2:
            carried = carried[1:]
        return carried

    for paragraph in paragraphs(text):
        new_paragraph = True
        for sentence in sentences(paragraph):
            for piece in documents.chunk_text(sentence, size, 0) if len(sentence) > size \
                    else [sentence]:
                full = length([*current, piece]) > size
                topic_change = new_paragraph and length(current) >= size // 2
                if current and (full or topic_change):
                    current = flush()
                    if length([*current, piece]) > size:
                        current = []
                current.append(piece)
                new_paragraph = False
    if current:
        flush()
    return chunks


def chunk(context: Context) -> Outputs:
    """Sentence-aligned chunks of each normalized document (``chunkSize`` characters, default
    500; ``overlapSentences``, default 0)."""
    size = int_param(context, "chunkSize", DEFAULT_CHUNK_SIZE, minimum=1)
    overlap = int_param(context, "overlapSentences", 0, minimum=0)
    done = total = 0
    for path, text in normalized_documents(context, "chunking"):
        pieces = sentence_chunks(text, size, overlap)
        write_json(doc_file(context, CHUNKS, path), {"path": path, "chunks": pieces})
        done += 1
        total += len(pieces)
    return {"documents": done, "chunks": total}


# --- embed ---------------------------------------------------------------------------------------


def write_embeddings(context: Context, path: str, texts: list[str], embedder: Embedder) -> int:
    """Embed ``texts`` of document ``path`` into ``embeddings/<doc>.json``; the dimensions."""
    record = encode_embeddings(path, texts, embedder.embed(texts), embedder.spec)
    write_json(doc_file(context, EMBEDDINGS, path), record)
    return record["dims"]


def embed(context: Context) -> Outputs:
    """One vector per chunk. Params: ``embedder`` (``hashing``, the default, or ``model``),
    ``dims`` (hashing, default 256), ``model`` / ``backend`` (model; see ``embedding``)."""
    embedder = embedder_from_params(context.params)
    done = vectors = dims = 0
    for path, _text in normalized_documents(context, "embedding"):
        texts = read_json(doc_file(context, CHUNKS, path))["chunks"]
        dims = write_embeddings(context, path, texts, embedder) or dims
        done += 1
        vectors += len(texts)
    return {"documents": done, "vectors": vectors, "dims": dims, "embedder": embedder.spec["kind"]}


# --- store ---------------------------------------------------------------------------------------


def store(context: Context) -> Outputs:
    """Every document's vectors in one flat cosine index (``indexDir``, default ``index``)."""
    vectors: list[list[float]] = []
    items: list[Item] = []
    spec: dict[str, Any] | None = None
    documents_done = 0
    for doc in read_manifest(context)["accepted"]:
        source = doc_file(context, EMBEDDINGS, doc["path"])
        if not source.exists():  # extraction failed: nothing to index
            continue
        record = read_json(source)
        if spec is not None and record["embedder"] != spec:
            raise PermanentError(f"{doc['path']} was embedded with {record['embedder']}, "
                                 f"the others with {spec}: one index needs one embedder")
        spec = record["embedder"]
        for number, (text, vector) in enumerate(
            zip(record["texts"], decode_vectors(record), strict=True)
        ):
            items.append(Item(id=f"{doc['path']}#{number}", doc=doc["path"], chunk=number,
                              text=text))
            vectors.append(vector)
        documents_done += 1
    folder_name = str(context.params.get("indexDir", DEFAULT_INDEX_DIR))
    write_index(context.workspace / folder_name, vectors, items,
                spec or embedder_from_params(context.params).spec)
    return {"documents": documents_done, "vectors": len(vectors),
            "dims": len(vectors[0]) if vectors else 0, "index": folder_name}


# --- query ---------------------------------------------------------------------------------------


def query(context: Context) -> Outputs:
    """The ``k`` (default 3) chunks nearest to ``params.query``: ids and scores in the outputs,
    the full hits with their texts in ``query.json``."""
    text = context.params.get("query")
    if not isinstance(text, str) or not text.strip():
        raise PermanentError("param query must be a non-empty string")
    k = int_param(context, "k", 3, minimum=1)
    index = FlatIndex.load(context.workspace / str(context.params.get("indexDir",
                                                                      DEFAULT_INDEX_DIR)))
    hits = index.query(text, k)
    write_json(context.workspace / QUERY_RESULT, {"query": text, "hits": hits})
    return {
        "hits": [{"id": hit["id"], "score": hit["score"]} for hit in hits[:MAX_HITS_IN_OUTPUTS]],
        "best": hits[0]["id"] if hits else None,
        "result": QUERY_RESULT,
    }
