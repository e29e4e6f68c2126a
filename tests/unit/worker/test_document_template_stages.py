"""The document-processing template's stages, run in order on the sample corpus: ingest, parse
and normalize are the document pipeline's; extract, embed and build_kg add entities,
keyphrases, document vectors and a graph that links documents to what they mention and to
each other."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

from kubedag.worker.errors import PermanentError
from kubedag.worker.processors import documents, enrichment
from tests.unit.worker.template_support import corpus_workspace, run_stages, stage_context

STAGES = (
    ("ingest", documents.validate), ("parse", documents.extract),
    ("normalize", documents.normalize), ("extract", enrichment.extract),
    ("embed", enrichment.embed), ("build_kg", enrichment.build_kg),
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, Any]]]:
    workspace = corpus_workspace(tmp_path_factory.mktemp("documents"))
    return workspace, run_stages(workspace, STAGES)


def test_outputs(run: tuple[Path, dict[str, dict[str, Any]]]) -> None:
    _workspace, outputs = run
    assert outputs["ingest"]["accepted"] == 3
    assert outputs["extract"]["documents"] == 3
    assert outputs["extract"]["keyphrases"] == 30  # ten per document
    assert outputs["embed"] == {"documents": 3, "dims": 256, "embedder": "hashing"}
    build = outputs["build_kg"]
    # the knowledge graph's 14 nodes and 12 edges, 3 document nodes, their mentions edges
    # (one per entity a document names: acme.md 5, globex.txt 5, people.html 6) and one
    # similar_to edge
    assert (build["nodes"], build["edges"]) == (14 + 3, 12 + 16 + 1)
    assert (build["documents"], build["entities"], build["statements"],
            build["conflicts"], build["similar"], build["components"]) == (3, 11, 12, 2, 1, 1)


def test_the_graph_links_documents_to_entities_and_similar_documents(
    run: tuple[Path, dict[str, dict[str, Any]]],
) -> None:
    workspace, _outputs = run
    graph = nx.read_graphml(workspace / "kg" / "graph.graphml", force_multigraph=True)
    acme_doc = graph.get_edge_data("document:acme.md", "acme-robotics-inc")["mentions"]
    # "Acme Robotics" x4, "Acme" x3 in acme.md: one entity, seven mentions
    assert acme_doc["support"] == 7
    assert set(graph.successors("document:people.html")) == {
        "acme-robotics-inc", "ada-lovelace", "armonk", "charles-flint", "grace-hopper",
        "international-business-machines",
    }
    # acme.md and globex.txt share the deal, the batteries and the robots; people.html does not
    # reach the threshold with either (cosines 0.12 and 0.05 against 0.15)
    similar = [(u, v) for u, v, k in graph.edges(keys=True) if k == "similar_to"]
    assert similar == [("document:acme.md", "document:globex.txt")]
    assert graph.has_edge("grace-hopper", "acme-robotics-inc", key="works_at")
    assert "lithium iron phosphate chemistry" in graph.nodes["document:globex.txt"]["keyphrases"]


def test_keyphrases_and_entities_are_kept_per_document(
    run: tuple[Path, dict[str, dict[str, Any]]],
) -> None:
    workspace, _outputs = run
    annotations = json.loads((workspace / "annotations" / "globex.txt.json").read_text())
    assert annotations["keyphrases"][0] == {"phrase": "lithium iron phosphate chemistry",
                                            "score": 15.0}
    assert {m["text"] for m in annotations["mentions"]} == {
        "Globex Corporation", "Oslo", "Grace Hopper", "Globex", "Acme Robotics", "Initech"
    }


def test_a_lower_threshold_links_every_document(tmp_path: Path) -> None:
    workspace = corpus_workspace(tmp_path)
    run_stages(workspace, STAGES[:-1])
    outputs = enrichment.build_kg(stage_context(workspace, {"similarityThreshold": 0.01}))
    assert outputs["similar"] == 3
    with pytest.raises(PermanentError, match="similarityThreshold"):
        enrichment.build_kg(stage_context(workspace, {"similarityThreshold": 2}))
