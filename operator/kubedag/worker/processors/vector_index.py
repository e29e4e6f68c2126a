"""A flat, exact cosine-similarity vector index on the run's workspace, in two files anyone can
read back without kubedag.

A flat index compares the query with every vector: exact, no training, no dependency, and fast
enough for the tens of thousands of chunks a template run makes (a query over 10,000 vectors of
256 dimensions takes well under a second in pure Python). Swap in FAISS, hnswlib or a vector
database when the corpus outgrows that; the files below are easy to load into any of them.

Format, in the index folder (``index/`` by default)::

    vectors.f32    a 16-byte header, then the vectors
                   header: struct "<4sHHII" = magic b"KDVX", version 1, reserved 0,
                           count (rows), dims (columns)
                   body:   count * dims float32, little-endian, row-major; every row has
                           length 1 (or is all zeros for a text without content words),
                           so the cosine of two rows is their dot product
    index.json     {"format": "kubedag-flat-cosine", "version": 1, "metric": "cosine",
                    "count": N, "dims": D, "vectors": "vectors.f32",
                    "embedder": {...the embedder's spec, to embed queries the same way...},
                    "items": [{"id": "guide.md#0", "doc": "guide.md", "chunk": 0,
                               "text": "..."}, ...]}   # row i of vectors.f32 is items[i]

Reading it elsewhere, e.g. with numpy: ``np.fromfile(path, "<f4", offset=16).reshape(N, D)``.
"""

from __future__ import annotations

import base64
import heapq
import json
import struct
import sys
from array import array
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

from kubedag.worker.errors import PermanentError
from kubedag.worker.processors.embedding import Vector, cosine, embedder_from_spec

FORMAT = "kubedag-flat-cosine"
VERSION = 1
MAGIC = b"KDVX"
HEADER = struct.Struct("<4sHHII")
VECTORS_FILE = "vectors.f32"
METADATA_FILE = "index.json"


class Item(TypedDict):
    """What one vector stands for: a chunk of a document, with its text to show in a hit."""

    id: str
    doc: str
    chunk: int
    text: str


class Hit(TypedDict):
    id: str
    doc: str
    chunk: int
    score: float
    text: str


def _little_endian(values: array[float]) -> array[float]:
    if sys.byteorder == "big":
        values.byteswap()
    return values


def vectors_to_bytes(vectors: Sequence[Vector]) -> bytes:
    """Rows of float32, little-endian, one after another (the body of ``vectors.f32``)."""
    body = array("f")
    for vector in vectors:
        body.extend(vector)
    return _little_endian(body).tobytes()


def vectors_from_bytes(raw: bytes, dims: int) -> list[Vector]:
    values = array("f")
    values.frombytes(raw)
    flat = _little_endian(values).tolist()
    return [flat[row : row + dims] for row in range(0, len(flat), dims)]


class Embeddings(TypedDict):
    """One document's vectors between the embed and store stages (``embeddings/<doc>.json``):
    the texts they embed, the embedder's spec, and the vectors as base64 float32 rows."""

    path: str
    embedder: dict[str, Any]
    dims: int
    texts: list[str]
    vectors: str


def encode_embeddings(
    path: str, texts: Sequence[str], vectors: Sequence[Vector], embedder: Mapping[str, Any]
) -> Embeddings:
    dims = len(vectors[0]) if vectors else 0
    return Embeddings(path=path, embedder=dict(embedder), dims=dims, texts=list(texts),
                      vectors=base64.b64encode(vectors_to_bytes(vectors)).decode())


def decode_vectors(embeddings: Mapping[str, Any]) -> list[Vector]:
    return vectors_from_bytes(base64.b64decode(embeddings["vectors"]), embeddings["dims"])


def write_index(
    folder: Path, vectors: Sequence[Vector], items: Sequence[Item], embedder: Mapping[str, Any]
) -> Path:
    """Write the index files into ``folder`` (replacing an older index atomically, file by file:
    the metadata last, so a reader never sees metadata for vectors not yet written)."""
    if len(vectors) != len(items):
        raise ValueError(f"{len(vectors)} vectors for {len(items)} items")
    dims = len(vectors[0]) if vectors else int(embedder.get("dims", 0))
    if any(len(v) != dims for v in vectors):
        raise ValueError("vectors of different lengths cannot share an index")
    folder.mkdir(parents=True, exist_ok=True)
    data = HEADER.pack(MAGIC, VERSION, 0, len(vectors), dims) + vectors_to_bytes(vectors)
    _replace(folder / VECTORS_FILE, data)
    metadata = {
        "format": FORMAT, "version": VERSION, "metric": "cosine", "count": len(vectors),
        "dims": dims, "vectors": VECTORS_FILE, "embedder": dict(embedder), "items": list(items),
    }
    _replace(folder / METADATA_FILE, json.dumps(metadata, ensure_ascii=False, indent=1).encode())
    return folder


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


class FlatIndex:
    """An index loaded into memory: ``search`` by vector, ``query`` by text."""

    def __init__(self, metadata: Mapping[str, Any], vectors: array[float]) -> None:
        self.metadata = metadata
        self.items: list[Item] = list(metadata["items"])
        self.dims: int = metadata["dims"]
        self._vectors = vectors

    @classmethod
    def load(cls, folder: Path) -> FlatIndex:
        try:
            metadata = json.loads((folder / METADATA_FILE).read_text())
            raw = (folder / str(metadata.get("vectors", VECTORS_FILE))).read_bytes()
        except FileNotFoundError as error:
            raise PermanentError(f"no vector index in {folder}: did the store stage run?") \
                from error
        if metadata.get("format") != FORMAT or metadata.get("version") != VERSION:
            raise PermanentError(f"{folder} holds no {FORMAT} index version {VERSION}")
        magic, version, _reserved, count, dims = HEADER.unpack_from(raw)
        if (magic, version) != (MAGIC, VERSION) or (count, dims) != (
            metadata["count"], metadata["dims"]
        ) or len(raw) != HEADER.size + 4 * count * dims:
            raise PermanentError(f"{folder / VECTORS_FILE} does not match {METADATA_FILE}")
        vectors = array("f")
        vectors.frombytes(raw[HEADER.size :])
        return cls(metadata, _little_endian(vectors))

    def __len__(self) -> int:
        return len(self.items)

    def vector(self, row: int) -> Vector:
        return list(self._vectors[row * self.dims : (row + 1) * self.dims])

    def search(self, query: Sequence[float], k: int = 5) -> list[Hit]:
        """The ``k`` items most similar to ``query``, best first; equal scores keep index order
        so the answer is the same on every run."""
        if len(query) != self.dims:
            raise PermanentError(f"query has {len(query)} dimensions, the index {self.dims}")
        scored = ((cosine(self.vector(row), query), row) for row in range(len(self.items)))
        best = heapq.nsmallest(k, scored, key=lambda pair: (-pair[0], pair[1]))
        return [Hit(id=self.items[row]["id"], doc=self.items[row]["doc"],
                    chunk=self.items[row]["chunk"], score=round(score, 6),
                    text=self.items[row]["text"]) for score, row in best]

    def query(self, text: str, k: int = 5) -> list[Hit]:
        """Embed ``text`` as the index's vectors were embedded, then ``search``."""
        embedder = embedder_from_spec(self.metadata["embedder"])
        return self.search(embedder.embed([text])[0], k)


def query(folder: Path | str, text: str, k: int = 5) -> list[Hit]:
    """The ``k`` chunks nearest to ``text`` in the index at ``folder`` (e.g. ``<workspace>/index``).

    >>> for hit in query("/workspace/index", "how do I start a cluster?", k=3):
    ...     print(hit["score"], hit["id"], hit["text"][:60])
    """
    return FlatIndex.load(Path(folder)).query(text, k)
