"""Text embeddings for the template processors: a deterministic hashing embedder by default, a
real sentence-embedding model as an opt-in extra.

The hashing embedder needs nothing but the standard library and gives the same vector for the
same text on every machine and Python version (blake2b, not the salted ``hash``), so an index
built in one pod can be queried in another and tests can state nearest neighbours. It captures
word overlap, not meaning: "car" and "automobile" are unrelated to it.

A stage asks for a real model with the params ``embedder: model`` (and optionally ``model:
<name>``). The worker image does not ship one: install ``fastembed`` (preferred, ONNX, no
torch) or ``sentence-transformers`` into an image of your own. Without either the stage fails
as misconfigured, naming what to install.

Every embedder describes itself with a ``spec`` (a small JSON dict) that the vector index
records, so a query is always embedded the way the index was.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any, Protocol

from kubedag.worker.errors import PermanentError, UsageError
from kubedag.worker.processors.text_analysis import content_words

DEFAULT_DIMS = 256
MAX_DIMS = 65536
HASHING = "hashing"
MODEL = "model"
DEFAULT_MODELS = {
    "fastembed": "BAAI/bge-small-en-v1.5",
    "sentence_transformers": "sentence-transformers/all-MiniLM-L6-v2",
}

Vector = list[float]


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors of one fixed length."""

    @property
    def spec(self) -> dict[str, Any]:
        """How to make this embedder again (see ``embedder_from_spec``)."""
        ...

    def embed(self, texts: Sequence[str]) -> list[Vector]: ...


def normalized(vector: Sequence[float]) -> Vector:
    """``vector`` scaled to length 1, so a dot product is the cosine; a zero vector (a text with
    no content words) stays zero and is as far from everything as can be."""
    length = math.sqrt(math.fsum(x * x for x in vector))
    return [x / length for x in vector] if length else [0.0] * len(vector)


class HashingEmbedder:
    """Feature hashing of word unigrams and bigrams into ``dims`` signed buckets.

    Each feature (a stemmed content word, or two consecutive ones) is hashed with blake2b: the
    hash picks the bucket and its sign. The signs make collisions cancel out on average instead
    of piling up, so the dot product of two vectors estimates the overlap of their features.
    Counts are damped (1 + log count) so one repeated word does not drown the rest.
    """

    def __init__(self, dims: int = DEFAULT_DIMS, *, bigrams: bool = True) -> None:
        if not 1 <= dims <= MAX_DIMS:
            raise PermanentError(f"dims must be within [1, {MAX_DIMS}], got {dims}")
        self.dims = dims
        self.bigrams = bigrams

    @property
    def spec(self) -> dict[str, Any]:
        return {"kind": HASHING, "dims": self.dims, "bigrams": self.bigrams}

    def features(self, text: str) -> Counter[str]:
        tokens = content_words(text)
        found = Counter(tokens)
        if self.bigrams:
            found.update(f"{a} {b}" for a, b in pairwise(tokens))
        return found

    def embed_one(self, text: str) -> Vector:
        vector = [0.0] * self.dims
        for feature, count in self.features(text).items():
            digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(),
                                    "little")
            sign = 1.0 if digest >> 63 else -1.0
            vector[digest % self.dims] += sign * (1.0 + math.log(count))
        return normalized(vector)

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        return [self.embed_one(text) for text in texts]


class ModelEmbedder:
    """A sentence-embedding model from ``fastembed`` or ``sentence-transformers``, whichever the
    image has (``backend`` picks one). Imported by name, so neither is a dependency."""

    def __init__(self, model: str | None = None, backend: str | None = None) -> None:
        self.backend = backend or _available_backend()
        if self.backend not in DEFAULT_MODELS:
            raise UsageError(f"unknown embedding backend {self.backend!r}: use one of "
                             f"{sorted(DEFAULT_MODELS)}")
        self.model = model or DEFAULT_MODELS[self.backend]
        module = _import_backend(self.backend)
        if self.backend == "fastembed":
            self._model = module.TextEmbedding(model_name=self.model)
        else:
            self._model = module.SentenceTransformer(self.model)

    @property
    def spec(self) -> dict[str, Any]:
        return {"kind": MODEL, "backend": self.backend, "model": self.model}

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        if self.backend == "fastembed":
            raw = list(self._model.embed(list(texts)))
        else:
            raw = list(self._model.encode(list(texts)))
        return [normalized([float(x) for x in row]) for row in raw]


def _import_backend(backend: str) -> Any:
    try:
        return importlib.import_module(backend)
    except ImportError as error:
        raise UsageError(
            f"embedder 'model' needs the {backend.replace('_', '-')} package in the worker "
            "image (pip install fastembed, or sentence-transformers); or use the default "
            "'hashing' embedder"
        ) from error


def _available_backend() -> str:
    for backend in DEFAULT_MODELS:
        if importlib.util.find_spec(backend) is not None:
            return backend
    raise UsageError(
        "embedder 'model' needs fastembed or sentence-transformers in the worker image "
        "(neither is installed); or use the default 'hashing' embedder"
    )


def embedder_from_spec(spec: Mapping[str, Any]) -> Embedder:
    """The embedder a spec describes: what an index records, or a stage's params."""
    kind = spec.get("kind", HASHING)
    if kind == HASHING:
        dims = spec.get("dims", DEFAULT_DIMS)
        if isinstance(dims, bool) or not isinstance(dims, int):
            raise PermanentError(f"dims must be an integer, got {dims!r}")
        return HashingEmbedder(dims, bigrams=bool(spec.get("bigrams", True)))
    if kind == MODEL:
        model, backend = spec.get("model"), spec.get("backend")
        return ModelEmbedder(str(model) if model else None, str(backend) if backend else None)
    raise PermanentError(f"unknown embedder {kind!r}: use {HASHING!r} or {MODEL!r}")


def embedder_from_params(params: Mapping[str, Any]) -> Embedder:
    """The embedder a stage's params ask for: ``embedder`` (hashing | model), ``dims``,
    ``bigrams``, ``model``, ``backend``."""
    return embedder_from_spec({
        "kind": params.get("embedder", HASHING),
        "dims": params.get("dims", DEFAULT_DIMS),
        "bigrams": params.get("bigrams", True),
        "model": params.get("model"),
        "backend": params.get("backend"),
    })


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """The cosine of two L2-normalised vectors (their dot product)."""
    return math.fsum(x * y for x, y in zip(a, b, strict=True))
