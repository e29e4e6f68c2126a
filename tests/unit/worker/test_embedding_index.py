"""The hashing embedder and the flat cosine index: deterministic vectors, the documented file
format, exact nearest neighbours; and the seam for a real embedding model."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubedag.worker.errors import PermanentError, UsageError
from kubedag.worker.processors.embedding import (
    HashingEmbedder,
    ModelEmbedder,
    cosine,
    embedder_from_params,
    embedder_from_spec,
)
from kubedag.worker.processors.vector_index import FlatIndex, Item, query, write_index
from tests.unit.worker.support import REPO

TEXTS = (
    "Lithium iron phosphate battery cells survive thousands of charge cycles.",
    "Warehouse robots navigate the aisles with lidar sensors and depth cameras.",
    "Solar panels on the roof produce electricity during the day.",
)


def _items(texts: tuple[str, ...]) -> list[Item]:
    return [Item(id=f"doc#{n}", doc="doc", chunk=n, text=t) for n, t in enumerate(texts)]


def test_hashing_vectors_are_unit_length_and_of_the_asked_size() -> None:
    for dims in (8, 256, 1024):
        (vector,) = HashingEmbedder(dims).embed([TEXTS[0]])
        assert len(vector) == dims
        assert math.isclose(math.fsum(x * x for x in vector), 1.0)
    assert HashingEmbedder(16).embed(["the of and"]) == [[0.0] * 16]  # no content words


def test_hashing_vectors_do_not_depend_on_the_interpreter_s_hash_seed() -> None:
    script = ("import json; from kubedag.worker.processors.embedding import HashingEmbedder; "
              f"print(json.dumps(HashingEmbedder(64).embed([{TEXTS[1]!r}])[0]))")
    runs = {
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       check=True, cwd=REPO, env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin",
                                                  "PYTHONPATH": str(REPO / "operator")}).stdout
        for seed in ("1", "2")
    }
    assert len(runs) == 1
    assert json.loads(runs.pop()) == pytest.approx(HashingEmbedder(64).embed([TEXTS[1]])[0])


def test_similarity_follows_shared_words_and_word_order() -> None:
    embedder = HashingEmbedder()
    robots, same_words, other_order, unrelated = embedder.embed([
        "warehouse robots navigate aisles", "Warehouse robots navigate the aisles!",
        "aisles navigate robots warehouse", "solar panels produce electricity",
    ])
    assert cosine(robots, same_words) == pytest.approx(1.0)
    assert 0.3 < cosine(robots, other_order) < 0.9  # unigrams shared, bigrams not
    assert abs(cosine(robots, unrelated)) < 0.2
    assert HashingEmbedder(bigrams=False).embed_one("a b c d") == HashingEmbedder(
        bigrams=False).embed_one("d c b a")


def test_embedder_params_and_specs() -> None:
    embedder = embedder_from_params({"dims": 32, "bigrams": False})
    assert embedder.spec == {"kind": "hashing", "dims": 32, "bigrams": False}
    assert embedder_from_spec(embedder.spec).embed(["x"]) == embedder.embed(["x"])
    for bad in ({"embedder": "bert"}, {"dims": 0}, {"dims": "many"}):
        with pytest.raises(PermanentError):
            embedder_from_params(bad)


def test_index_files_follow_the_documented_format(tmp_path: Path) -> None:
    vectors = HashingEmbedder(16).embed(TEXTS)
    write_index(tmp_path, vectors, _items(TEXTS), HashingEmbedder(16).spec)
    raw = (tmp_path / "vectors.f32").read_bytes()
    assert struct.unpack_from("<4sHHII", raw) == (b"KDVX", 1, 0, 3, 16)
    assert len(raw) == 16 + 3 * 16 * 4
    second_row = struct.unpack_from("<16f", raw, 16 + 16 * 4)
    assert list(second_row) == pytest.approx(vectors[1], abs=1e-7)
    metadata = json.loads((tmp_path / "index.json").read_text())
    assert {k: metadata[k] for k in ("format", "version", "metric", "count", "dims")} == {
        "format": "kubedag-flat-cosine", "version": 1, "metric": "cosine", "count": 3, "dims": 16
    }
    assert [item["text"] for item in metadata["items"]] == list(TEXTS)


def test_a_query_finds_the_text_about_it_first(tmp_path: Path) -> None:
    embedder = HashingEmbedder()
    write_index(tmp_path, embedder.embed(TEXTS), _items(TEXTS), embedder.spec)
    best = query(tmp_path, "how many charge cycles do battery cells last", k=3)[0]
    assert best["chunk"] == 0
    assert query(tmp_path, "robots with lidar", k=1)[0]["text"] == TEXTS[1]
    assert query(tmp_path, "solar electricity", k=1)[0]["id"] == "doc#2"
    hits = query(tmp_path, "robots with lidar", k=10)
    assert len(hits) == 3 and [h["score"] for h in hits] == sorted(
        (h["score"] for h in hits), reverse=True)


def test_equal_scores_keep_index_order(tmp_path: Path) -> None:
    same = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]
    write_index(tmp_path, same, _items(("a", "b", "c")), {"kind": "hashing", "dims": 2})
    assert [h["id"] for h in FlatIndex.load(tmp_path).search([1.0, 0.0], k=3)] == [
        "doc#0", "doc#2", "doc#1"
    ]


def test_a_damaged_or_missing_index_is_a_permanent_error(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="no vector index"):
        FlatIndex.load(tmp_path)
    write_index(tmp_path, HashingEmbedder(4).embed(TEXTS), _items(TEXTS), {"kind": "hashing",
                                                                           "dims": 4})
    vectors = tmp_path / "vectors.f32"
    vectors.write_bytes(vectors.read_bytes()[:-4])
    with pytest.raises(PermanentError, match="does not match"):
        FlatIndex.load(tmp_path)


# --- the model seam ------------------------------------------------------------------------------


@pytest.fixture
def fake_fastembed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A stand-in for the fastembed package (not installed here): 3-d vectors from letters."""
    loaded: list[str] = []

    class TextEmbedding:
        def __init__(self, model_name: str) -> None:
            loaded.append(model_name)

        def embed(self, texts: list[str]) -> Iterator[list[float]]:
            for text in texts:
                yield [text.count("a") + 0.0, text.count("b") + 0.0, text.count("c") + 0.0]

    module = types.ModuleType("fastembed")
    module.__dict__["TextEmbedding"] = TextEmbedding
    monkeypatch.setitem(sys.modules, "fastembed", module)
    yield loaded


def test_a_model_embedder_is_used_through_the_same_index(
    tmp_path: Path, fake_fastembed: list[str]
) -> None:
    embedder = embedder_from_params({"embedder": "model", "backend": "fastembed"})
    assert embedder.spec == {"kind": "model", "backend": "fastembed",
                             "model": "BAAI/bge-small-en-v1.5"}
    vectors = embedder.embed(["aaa", "bbb", "ccc"])
    assert vectors == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    write_index(tmp_path, vectors, _items(("aaa", "bbb", "ccc")), embedder.spec)
    assert query(tmp_path, "bb", k=1)[0]["text"] == "bbb"  # the query used the model too
    assert fake_fastembed == ["BAAI/bge-small-en-v1.5"] * 2


def test_a_model_embedder_without_its_package_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails
    with pytest.raises(UsageError, match="sentence-transformers package"):
        ModelEmbedder(backend="sentence_transformers")
    with pytest.raises(UsageError, match="unknown embedding backend"):
        ModelEmbedder(backend="word2vec")
