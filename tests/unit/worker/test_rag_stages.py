"""The RAG template's stages, run in order on the sample corpus: the index they leave answers
a question about X with the chunk about X."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubedag.worker.errors import PermanentError
from kubedag.worker.processors import corpus, rag
from kubedag.worker.processors.text_analysis import sentences
from kubedag.worker.processors.vector_index import FlatIndex, query
from tests.unit.worker.template_support import corpus_workspace, run_stages, stage_context

STAGES = (("ingest", corpus.ingest), ("chunk", rag.chunk), ("embed", rag.embed),
          ("store", rag.store))
PARAMS = {"chunkSize": 300}
# The corpus's sections (worked out by hand): acme.md 3, globex.txt 3, people.html 2.
CHUNKS = {"acme.md": 3, "globex.txt": 3, "people.html": 2}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workspace = corpus_workspace(tmp_path_factory.mktemp("rag"))
    outputs = run_stages(workspace, STAGES, PARAMS)
    assert outputs["ingest"] == {"accepted": 3, "rejected": 0, "failed": 0, "documents": 3,
                                 "characters": outputs["ingest"]["characters"]}
    assert outputs["chunk"] == {"documents": 3, "chunks": 8}
    assert outputs["embed"] == {"documents": 3, "vectors": 8, "dims": 256,
                                "embedder": "hashing"}
    assert outputs["store"] == {"documents": 3, "vectors": 8, "dims": 256, "index": "index"}
    return workspace


def test_chunks_are_whole_sentences_one_section_each(workspace: Path) -> None:
    for doc, count in CHUNKS.items():
        chunks = json.loads((workspace / "chunks" / f"{doc}.json").read_text())["chunks"]
        text = json.loads((workspace / "normalized" / f"{doc}.json").read_text())["text"]
        assert len(chunks) == count, doc
        assert all(len(c) <= PARAMS["chunkSize"] for c in chunks)
        assert " ".join(chunks) == " ".join(sentences(text))  # in order, nothing cut or lost
    acme = json.loads((workspace / "chunks" / "acme.md.json").read_text())["chunks"]
    assert acme[1].startswith("Warehouse robots Acme builds") and "lidar" in acme[1]


@pytest.mark.parametrize(
    ("question", "doc", "words"),
    [
        ("which battery chemistry do the cells use?", "globex.txt", "lithium iron phosphate"),
        ("how do the robots navigate the aisles?", "acme.md", "lidar sensors"),
        ("solar panels on the warehouse roof", "people.html", "solar farm"),
        ("who founded IBM?", "people.html", "Charles Flint"),
    ],
)
def test_the_nearest_chunk_is_the_one_about_the_question(
    workspace: Path, question: str, doc: str, words: str
) -> None:
    best, runner_up, *_ = query(workspace / "index", question, k=3)
    assert (best["doc"], words in best["text"]) == (doc, True)
    assert best["score"] > runner_up["score"]


def test_the_index_holds_every_chunk_in_document_order(workspace: Path) -> None:
    index = FlatIndex.load(workspace / "index")
    assert [item["id"] for item in index.items] == [
        f"{doc}#{n}" for doc, count in CHUNKS.items() for n in range(count)
    ]


def test_the_query_stage_reports_the_best_hits(workspace: Path) -> None:
    outputs = rag.query(stage_context(workspace, {"query": "lidar robots", "k": 2}))
    assert outputs["best"] == "acme.md#1"
    assert [hit["id"] for hit in outputs["hits"]] == ["acme.md#1", outputs["hits"][1]["id"]]
    saved = json.loads((workspace / "query.json").read_text())
    assert saved["query"] == "lidar robots" and "lidar" in saved["hits"][0]["text"]
    with pytest.raises(PermanentError, match="query"):
        rag.query(stage_context(workspace, {}))


def test_fanned_out_chunk_and_embed_build_the_same_index(workspace: Path, tmp_path: Path) -> None:
    other = corpus_workspace(tmp_path)
    corpus.ingest(stage_context(other))
    for doc in CHUNKS:  # one pod per document
        rag.chunk(stage_context(other, PARAMS, items=[doc]))
        rag.embed(stage_context(other, PARAMS, items=[doc]))
    rag.store(stage_context(other, PARAMS))
    for name in ("vectors.f32", "index.json"):
        assert (other / "index" / name).read_bytes() == (workspace / "index" / name).read_bytes()


def test_sentence_chunks_pack_sentences_and_carry_the_overlap() -> None:
    text = "One two. Three four.\n\nFive six seven. Eight."
    assert rag.sentence_chunks(text, 20) == ["One two. Three four.", "Five six seven.",
                                             "Eight."]
    assert rag.sentence_chunks(text, 100) == ["One two. Three four. Five six seven. Eight."]
    assert rag.sentence_chunks(text, 30, overlap=1) == [
        "One two. Three four.", "Three four. Five six seven.", "Five six seven. Eight."
    ]
    # A sentence longer than a chunk is cut into windows; nothing is lost.
    assert rag.sentence_chunks("abcdefghij.", 4) == ["abcd", "efgh", "ij."]
    with pytest.raises(PermanentError):
        rag.sentence_chunks(text, 0)
