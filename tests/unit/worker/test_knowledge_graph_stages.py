"""The knowledge-graph template's stages, run in order on the sample corpus, and the rules of
deduplication and conflict resolution on their own."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

from kubedag import contract
from kubedag.worker.processors import corpus
from kubedag.worker.processors import knowledge_graph as kg
from kubedag.worker.processors.text_analysis import Mention, Relation
from tests.unit.worker.support import run_worker
from tests.unit.worker.template_support import corpus_workspace, run_stages

STAGES = (
    ("ingest", corpus.ingest), ("extract_entities", kg.extract_entities),
    ("extract_relations", kg.extract_relations), ("deduplicate", kg.deduplicate),
    ("resolve_conflicts", kg.resolve_conflicts), ("build_graph", kg.build_graph),
)
# What the corpus states, worked out by hand from examples/templates/corpus.
ENTITIES = {
    "Acme Robotics Inc": ("organization", ["Acme", "Acme Robotics"]),
    "Ada Lovelace": ("person", ["Lovelace"]),
    "Armonk": ("location", []),
    "Berlin": ("location", []),
    "Charles Babbage": ("person", []),
    "Charles Flint": ("person", []),
    "Globex Corporation": ("organization", ["Globex"]),
    "Grace Hopper": ("person", []),
    "Initech": ("organization", []),
    "International Business Machines": ("organization", ["IBM"]),
    "Oslo": ("location", []),
}
KEPT = {
    ("acme-robotics-inc", "acquired", "globex-corporation"),  # said twice
    ("acme-robotics-inc", "is_a", "concept:robotics-company"),
    ("acme-robotics-inc", "located_in", "berlin"),
    ("ada-lovelace", "ceo_of", "acme-robotics-inc"),
    ("ada-lovelace", "founded", "acme-robotics-inc"),  # "Lovelace founded Acme Robotics"
    ("charles-babbage", "works_at", "acme-robotics-inc"),
    ("charles-flint", "founded", "international-business-machines"),  # "... (IBM) was founded by"
    ("globex-corporation", "is_a", "concept:battery-manufacturer"),
    ("globex-corporation", "located_in", "oslo"),
    ("grace-hopper", "works_at", "acme-robotics-inc"),  # people.html "now works at", later
    ("international-business-machines", "is_a", "concept:technology-company"),
    ("international-business-machines", "located_in", "armonk"),
}
DROPPED = {
    ("one object per subject", "grace-hopper works_at globex-corporation"),
    ("one subject per object", "initech acquired globex-corporation"),  # a rumour, said once
}


def _triple(statement: dict[str, Any]) -> tuple[str, str, str]:
    return statement["subject"], statement["predicate"], statement["object"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, Any]]]:
    workspace = corpus_workspace(tmp_path_factory.mktemp("kg"))
    return workspace, run_stages(workspace, STAGES)


def test_stage_outputs_count_what_was_found(run: tuple[Path, dict[str, dict[str, Any]]]) -> None:
    _workspace, outputs = run
    assert outputs["extract_entities"]["documents"] == 3
    assert outputs["extract_entities"]["aliases"] == 2  # (IBM), also known as Globex
    assert outputs["deduplicate"] == {
        "entities": 11, "mentions": outputs["extract_entities"]["mentions"], "names": 16,
        "merged": 5, "statements": 14,
    }
    assert outputs["resolve_conflicts"] == {"statements": 12, "conflicts": 2}
    assert outputs["build_graph"] == {
        # 11 entities and 3 concepts; in 3 parts: Acme with Globex and their people and
        # places, IBM with its founder and place, and Initech (its one statement was dropped).
        "nodes": 11 + 3, "edges": 12, "components": 3,
        "graphml": "kg/graph.graphml", "json": "kg/graph.json",
    }


def test_deduplication_merges_aliases_and_short_forms(
    run: tuple[Path, dict[str, dict[str, Any]]],
) -> None:
    workspace, _outputs = run
    entities = json.loads((workspace / "kg" / "entities.json").read_text())["entities"]
    assert {e["name"]: (e["type"], e["aliases"]) for e in entities} == ENTITIES
    acme = next(e for e in entities if e["name"] == "Acme Robotics Inc")
    assert acme["documents"] == ["acme.md", "globex.txt", "people.html"]


def test_conflicts_are_resolved_by_support_then_recency(
    run: tuple[Path, dict[str, dict[str, Any]]],
) -> None:
    workspace, _outputs = run
    resolved = json.loads((workspace / "kg" / "resolved.json").read_text())
    assert {_triple(s) for s in resolved["statements"]} == KEPT
    assert {(c["rule"], kg.describe(c["dropped"])) for c in resolved["conflicts"]} == DROPPED
    acquired = next(s for s in resolved["statements"] if s["predicate"] == "acquired")
    assert (acquired["support"], acquired["documents"]) == (2, ["acme.md", "globex.txt"])


def test_graphml_and_json_hold_the_same_graph(
    run: tuple[Path, dict[str, dict[str, Any]]],
) -> None:
    workspace, _outputs = run
    graph = nx.read_graphml(workspace / "kg" / "graph.graphml", force_multigraph=True)
    assert isinstance(graph, nx.MultiDiGraph)
    edges = {(u, d["predicate"], v) for u, v, d in graph.edges(data=True)}
    assert edges == KEPT
    assert graph.has_edge("grace-hopper", "acme-robotics-inc", key="works_at")
    assert not graph.has_edge("grace-hopper", "globex-corporation")
    assert graph.nodes["ada-lovelace"]["type"] == "person"
    assert graph.nodes["ada-lovelace"]["aliases"] == "Lovelace"
    assert graph.nodes["concept:robotics-company"]["label"] == "robotics company"
    data = json.loads((workspace / "kg" / "graph.json").read_text())
    from_json = nx.node_link_graph(data, edges="edges")
    assert {(u, d["predicate"], v) for u, v, d in from_json.edges(data=True)} == KEPT
    assert set(from_json.nodes) == set(graph.nodes)


def test_the_stages_run_as_real_worker_processes(tmp_path: Path) -> None:
    """The same stages through `kubedag-worker run`: importable by reference, outputs that fit."""
    workspace = corpus_workspace(tmp_path)
    for name, processor in STAGES:
        reference = f"{processor.__module__}:{processor.__name__}"
        result = run_worker(workspace, reference, KUBEDAG_STAGE=name)
        assert result.code == contract.EXIT_OK, f"{name}: {result.stderr}"
    assert result.message["outputs"]["edges"] == len(KEPT)


# --- the rules on their own ----------------------------------------------------------------------


def _facts(path: str, names: list[str],
           relations: Sequence[tuple[str, str, str, int]] = ()) -> kg.DocumentFacts:
    mentions = [Mention(sentence=0, start=0, end=len(n), text=n, type="entity") for n in names]
    found = [Relation(subject=s, predicate=p, object=o, object_kind="entity", sentence=n)
             for s, p, o, n in relations]
    return kg.DocumentFacts(path=path, sentences=["s"] * 10, mentions=mentions, aliases=[],
                            relations=found)


def test_an_ambiguous_short_form_stays_apart() -> None:
    facts = [_facts("a", ["Ada Smith", "Bob Smith", "Smith", "Lovelace", "Ada Lovelace"],
                    [("Ada Smith", "works_at", "Acme", 0), ("Bob Smith", "works_at", "Acme", 1),
                     ("Ada Lovelace", "works_at", "Acme", 2)])]
    facts[0]["mentions"].append(Mention(sentence=0, start=0, end=4, text="Acme", type="entity"))
    entities, ids = kg.deduplicate_entities(facts)
    assert ids["Smith"] == "smith"  # two Smiths: which one is meant is unknown
    assert ids["Lovelace"] == ids["Ada Lovelace"] == "ada-lovelace"
    assert {e["id"] for e in entities} == {"acme", "ada-lovelace", "ada-smith", "bob-smith",
                                           "smith"}


def test_names_equal_up_to_case_titles_and_suffixes_are_one() -> None:
    assert {kg.entity_key(n) for n in ("The Globex Corp.", "GLOBEX", "globex", "Globex Inc")} \
        == {"globex"}
    assert kg.entity_key("Dr. Ada Lovelace") == "ada lovelace"


def _statement(subject: str, predicate: str, obj: str, support: int = 1,
               documents: tuple[str, ...] = ("a",), last: tuple[int, int] = (0, 0),
               ) -> kg.Statement:
    return kg.Statement(subject=subject, predicate=predicate, object=obj, object_kind="entity",
                        support=support, documents=list(documents), evidence=[],
                        last=list(last))


@pytest.mark.parametrize(
    ("statements", "kept"),
    [
        # more support wins, whatever came last
        ([_statement("ada", "works_at", "acme", support=2), _statement("ada", "works_at", "globex",
                                                                       last=(1, 0))],
         "ada works_at acme"),
        # then more documents
        ([_statement("ada", "works_at", "acme", support=2, documents=("a", "b")),
          _statement("ada", "works_at", "globex", support=2, last=(1, 0))],
         "ada works_at acme"),
        # then the later statement
        ([_statement("ada", "works_at", "acme", last=(0, 5)),
          _statement("ada", "works_at", "globex", last=(1, 0))], "ada works_at globex"),
        # then the alphabetically first
        ([_statement("ada", "works_at", "globex"), _statement("ada", "works_at", "acme")],
         "ada works_at acme"),
        # one subject per object; one way only
        ([_statement("acme", "acquired", "globex"),
          _statement("initech", "acquired", "globex", last=(0, 1))], "initech acquired globex"),
        ([_statement("acme", "acquired", "globex", support=3),
          _statement("globex", "acquired", "acme")], "acme acquired globex"),
    ],
)
def test_conflict_rules(statements: list[kg.Statement], kept: str) -> None:
    survivors, conflicts = kg.resolve_statements(statements)
    assert [kg.describe(s) for s in survivors] == [kept]
    assert [c["kept"] for c in conflicts] == [kept]


def test_statements_without_conflict_all_survive() -> None:
    statements = [_statement("ada", "founded", "acme"), _statement("bob", "founded", "acme"),
                  _statement("ada", "works_at", "acme"), _statement("bob", "works_at", "acme")]
    survivors, conflicts = kg.resolve_statements(statements)
    assert len(survivors) == 4 and conflicts == []
