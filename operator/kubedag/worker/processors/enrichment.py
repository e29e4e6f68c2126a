"""The document-processing template's last stages: extract → embed → build_kg, after the
document pipeline's validate (ingest), extract (parse) and normalize.

Workspace layout (under ``context.workspace``), after ``documents``' files::

    annotations/<doc>.json   extract: sentences, entity mentions, aliases, relations, keyphrases
    embeddings/<doc>.json    embed: one vector for the whole document (``vector_index.Embeddings``)
    kg/entities.json         build_kg: the deduplicated entities (as ``knowledge_graph``)
    kg/resolved.json         build_kg: the statements kept, and the conflicts
    kg/graph.graphml, .json  build_kg: entities, concepts and documents in one graph

``extract`` and ``embed`` work per document and may fan out over document paths; ``build_kg``
is the join. The graph is the knowledge graph's (entities linked by the relations the text
states) plus a node per document, linked to the entities it ``mentions`` (``support`` = how
often) and to the documents it is ``similar_to`` (cosine of the two documents' embeddings at
or above ``similarityThreshold``, default 0.15; the edge's ``score``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from kubedag.worker.context import Context
from kubedag.worker.errors import PermanentError
from kubedag.worker.processors.corpus import normalized_documents
from kubedag.worker.processors.documents import (
    doc_file,
    int_param,
    read_json,
    read_manifest,
    write_json,
)
from kubedag.worker.processors.embedding import cosine, embedder_from_params
from kubedag.worker.processors.knowledge_graph import (
    ENTITIES_FILE,
    RESOLVED_FILE,
    DocumentFacts,
    deduplicate_entities,
    find_facts,
    graph_outputs,
    make_graph,
    merge_statements,
    resolve_statements,
    write_graph,
)
from kubedag.worker.processors.rag import EMBEDDINGS, write_embeddings
from kubedag.worker.processors.text_analysis import keyphrases
from kubedag.worker.processors.vector_index import decode_vectors

ANNOTATIONS = "annotations"
DOCUMENT = "document"
DEFAULT_KEYPHRASES = 10
DEFAULT_SIMILARITY = 0.15

Outputs = dict[str, Any]


def extract(context: Context) -> Outputs:
    """Entities, aliases, relations and the top ``keyphrases`` (default 10) of each document."""
    top = int_param(context, "keyphrases", DEFAULT_KEYPHRASES, minimum=0)
    done = entities = relations = phrases = 0
    for path, text in normalized_documents(context, "annotating"):
        facts = find_facts(path, text)
        found = keyphrases(text, top)
        write_json(doc_file(context, ANNOTATIONS, path), {**facts, "keyphrases": found})
        done += 1
        entities += len({m["text"] for m in facts["mentions"]})
        relations += len(facts["relations"])
        phrases += len(found)
    return {"documents": done, "entities": entities, "relations": relations,
            "keyphrases": phrases}


def embed(context: Context) -> Outputs:
    """One vector per document (its normalized text); params as ``rag.embed``."""
    embedder = embedder_from_params(context.params)
    done = dims = 0
    for path, text in normalized_documents(context, "embedding"):
        dims = write_embeddings(context, path, [text], embedder)
        done += 1
    return {"documents": done, "dims": dims, "embedder": embedder.spec["kind"]}


def _threshold(context: Context) -> float:
    value = context.params.get("similarityThreshold", DEFAULT_SIMILARITY)
    if isinstance(value, bool) or not isinstance(value, int | float) or not -1 <= value <= 1:
        raise PermanentError(f"param similarityThreshold must be within [-1, 1], got {value!r}")
    return float(value)


def build_kg(context: Context) -> Outputs:
    """The knowledge graph of all documents, with document nodes (see the module docstring)."""
    threshold = _threshold(context)
    facts: list[DocumentFacts] = []
    phrases: dict[str, list[str]] = {}
    vectors: dict[str, list[float]] = {}
    for doc in read_manifest(context)["accepted"]:
        source = doc_file(context, ANNOTATIONS, doc["path"])
        if not source.exists():  # extraction failed
            continue
        annotations = read_json(source)
        phrases[doc["path"]] = [k["phrase"] for k in annotations.pop("keyphrases")]
        facts.append(annotations)
        embedded = doc_file(context, EMBEDDINGS, doc["path"])
        if embedded.exists():
            vectors[doc["path"]] = decode_vectors(read_json(embedded))[0]
    entities, surface_ids = deduplicate_entities(facts)
    statements, conflicts = resolve_statements(merge_statements(facts, surface_ids))
    write_json(context.workspace / ENTITIES_FILE, {"entities": entities, "ids": surface_ids})
    write_json(context.workspace / RESOLVED_FILE, {"statements": statements,
                                                    "conflicts": conflicts})
    graph = make_graph(entities, statements)
    for doc in facts:
        node = f"{DOCUMENT}:{doc['path']}"
        graph.add_node(node, label=doc["path"], type=DOCUMENT,
                       aliases="", mentions=0, documents=doc["path"],
                       keyphrases="; ".join(phrases[doc["path"]]))
        counts = Counter(surface_ids[m["text"]] for m in doc["mentions"])
        for entity, count in sorted(counts.items()):
            graph.add_edge(node, entity, key="mentions", predicate="mentions", support=count,
                           documents=doc["path"], evidence="")
    similar = 0
    paths = sorted(vectors)
    for number, first in enumerate(paths):
        for second in paths[number + 1 :]:
            score = cosine(vectors[first], vectors[second])
            if score >= threshold:
                graph.add_edge(f"{DOCUMENT}:{first}", f"{DOCUMENT}:{second}", key="similar_to",
                               predicate="similar_to", support=1, score=round(score, 6),
                               documents=f"{first}; {second}", evidence="")
                similar += 1
    write_graph(graph, context.workspace)
    return {**graph_outputs(graph), "documents": len(facts), "entities": len(entities),
            "statements": len(statements), "conflicts": len(conflicts), "similar": similar}
