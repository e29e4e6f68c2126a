"""The knowledge-graph template's stages: ingest → extract_entities → extract_relations →
deduplicate → resolve_conflicts → build_graph; and the pure functions behind them, which the
document template's ``build_kg`` reuses.

Workspace layout (under ``context.workspace``), after ``corpus.ingest``'s files::

    kg/mentions/<doc>.json    extract_entities: sentences, entity mentions, stated aliases
    kg/relations/<doc>.json   extract_relations: (subject, predicate, object) per sentence
    kg/entities.json          deduplicate: one entity per real-world thing, with its aliases
    kg/statements.json        deduplicate: relations between entity ids, identical ones merged
    kg/resolved.json          resolve_conflicts: the statements kept, and the conflicts
    kg/graph.graphml          build_graph: the graph, for Gephi, yEd, networkx, Neo4j ...
    kg/graph.json             build_graph: the same graph as networkx node-link JSON

**Deduplication** puts mentions that name one thing into one entity: equal names up to case,
punctuation, a leading `the`, titles and corporate suffixes (`Globex Corporation` = `Globex`);
aliases the text states (`International Business Machines (IBM)`); an acronym of exactly one
longer name (`IBM`); a lone surname of exactly one person (`Lovelace` → `Ada Lovelace`) or the
first word of exactly one organization (`Acme` → `Acme Robotics Inc`). Ambiguous short forms
stay apart. The longest name becomes the entity's name; an entity's type is voted from titles,
corporate suffixes and the roles it plays (the subject of `works_at` is a person ...).

**Conflicts** are resolved deterministically. Some relations allow one object per subject (a
person ``works_at`` one employer, an organization is ``located_in`` one place, ``part_of`` one
parent), some one subject per object (a company is ``acquired`` by one buyer, has one
``ceo_of``), and some never hold both ways (``acquired``, ``part_of``). Of conflicting
statements the one kept has the most support (sentences stating it), then the most documents,
then the latest evidence (documents in path order, sentences in reading order: a later text is
taken to correct an earlier one, "now works at"), then the alphabetically first names.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from kubedag.worker.context import Context
from kubedag.worker.processors.corpus import normalized_documents
from kubedag.worker.processors.documents import doc_file, read_json, read_manifest, write_json
from kubedag.worker.processors.text_analysis import (
    TITLES,
    Mention,
    Relation,
    aliases,
    mentions,
    relations,
    sentences,
    words,
)

if TYPE_CHECKING:
    import networkx as nx

KG = "kg"
MENTIONS, RELATIONS = f"{KG}/mentions", f"{KG}/relations"
ENTITIES_FILE, STATEMENTS_FILE = f"{KG}/entities.json", f"{KG}/statements.json"
RESOLVED_FILE = f"{KG}/resolved.json"
GRAPHML_FILE, GRAPH_JSON_FILE = f"{KG}/graph.graphml", f"{KG}/graph.json"
MAX_EVIDENCE = 3

PERSON, ORGANIZATION, LOCATION, ENTITY, CONCEPT = (
    "person", "organization", "location", "entity", "concept"
)
_TYPE_PRIORITY = (PERSON, ORGANIZATION, LOCATION, ENTITY)  # breaks ties between votes
_SURFACE_VOTE = 2  # a title or a corporate suffix says more than one role played
_CORPORATE_SUFFIXES = frozenset(
    {"inc", "corp", "corporation", "ltd", "limited", "llc", "co", "gmbh", "plc", "ag", "sa",
     "company"}
)
_ACRONYM_SKIPS = frozenset({"of", "and", "&", "the", "for", "de"})
# (subject type, object type) a predicate implies; None: it says nothing.
_ROLE_TYPES: dict[str, tuple[str | None, str | None]] = {
    "works_at": (PERSON, ORGANIZATION),
    "founded": (PERSON, ORGANIZATION),
    "acquired": (ORGANIZATION, ORGANIZATION),
    "part_of": (ORGANIZATION, ORGANIZATION),
    "located_in": (None, LOCATION),
    "is_a": (None, None),
}
_PERSON_ROLE = (PERSON, ORGANIZATION)  # ceo_of, founder_of, head_of ...
# Conflict rules: one object per subject, one subject per object, never both ways.
ONE_OBJECT_PER_SUBJECT = frozenset({"works_at", "located_in", "part_of"})
ONE_SUBJECT_PER_OBJECT = frozenset({"acquired", "ceo_of"})
ONE_WAY = frozenset({"acquired", "part_of"})

Outputs = dict[str, Any]


class DocumentFacts(TypedDict):
    """What extraction found in one document."""

    path: str
    sentences: list[str]
    mentions: list[Mention]
    aliases: list[list[str]]  # [name, alias]
    relations: list[Relation]


class Entity(TypedDict):
    id: str
    name: str
    type: str
    aliases: list[str]  # the other names it goes by in the text
    mentions: int
    documents: list[str]


class Evidence(TypedDict):
    doc: str
    sentence: int
    text: str


class Statement(TypedDict):
    """A relation between two entities (or an entity and a concept), merged over all the
    sentences that state it. ``last`` is (document number, sentence) of its latest evidence."""

    subject: str
    predicate: str
    object: str
    object_kind: str
    support: int
    documents: list[str]
    evidence: list[Evidence]
    last: list[int]


class Conflict(TypedDict):
    rule: str
    kept: str
    dropped: Statement


# --- extraction ----------------------------------------------------------------------------------


def find_facts(path: str, text: str, *, with_relations: bool = True) -> DocumentFacts:
    """Sentences, entity mentions, stated aliases and (optionally) relations of one document."""
    sentence_list = sentences(text)
    found = mentions(sentence_list)
    facts = DocumentFacts(path=path, sentences=sentence_list, mentions=found, aliases=[],
                          relations=[])
    for number, sentence in enumerate(sentence_list):
        in_sentence = [m for m in found if m["sentence"] == number]
        facts["aliases"] += [[name, alias] for name, alias in aliases(sentence, in_sentence)]
    if with_relations:
        facts["relations"] = find_relations(facts)
    return facts


def find_relations(facts: DocumentFacts) -> list[Relation]:
    by_sentence: dict[int, list[Mention]] = defaultdict(list)
    for mention in facts["mentions"]:
        by_sentence[mention["sentence"]].append(mention)
    found: list[Relation] = []
    for number, sentence in enumerate(facts["sentences"]):
        if by_sentence[number]:
            found += relations(number, sentence, by_sentence[number])
    return found


# --- deduplication -------------------------------------------------------------------------------


def entity_key(name: str) -> str:
    """The form under which two names are the same name: lowercase words without punctuation,
    a leading `the`, titles or trailing corporate suffixes (`The Globex Corp.` → `globex`)."""
    tokens = [w.rstrip(".").removesuffix("'s") for w in words(name)]
    while len(tokens) > 1 and tokens[0] in {"the", *TITLES}:
        tokens = tokens[1:]
    while len(tokens) > 1 and tokens[-1] in _CORPORATE_SUFFIXES:
        tokens = tokens[:-1]
    return " ".join(tokens)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.casefold()).strip("-") or "entity"


class _UnionFind:
    def __init__(self, keys: Iterable[str]) -> None:
        self.parent = {key: key for key in keys}

    def find(self, key: str) -> str:
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def union(self, a: str, b: str) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)  # deterministic roots


def _role_types(predicate: str) -> tuple[str | None, str | None]:
    if predicate in _ROLE_TYPES:
        return _ROLE_TYPES[predicate]
    return _PERSON_ROLE if predicate.endswith("_of") else (None, None)


def _type_votes(facts: Sequence[DocumentFacts]) -> dict[str, Counter[str]]:
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for doc in facts:
        for mention in doc["mentions"]:
            if mention["type"] != ENTITY:
                votes[entity_key(mention["text"])][mention["type"]] += _SURFACE_VOTE
        for relation in doc["relations"]:
            subject_type, object_type = _role_types(relation["predicate"])
            if subject_type:
                votes[entity_key(relation["subject"])][subject_type] += 1
            if object_type and relation["object_kind"] == ENTITY:
                votes[entity_key(relation["object"])][object_type] += 1
    return votes


def _elected(votes: Counter[str]) -> str:
    if not votes:
        return ENTITY
    return max(_TYPE_PRIORITY, key=lambda kind: (votes[kind], -_TYPE_PRIORITY.index(kind)))


def _merge_short_forms(
    groups: _UnionFind, surfaces: Mapping[str, Counter[str]], votes: Mapping[str, Counter[str]]
) -> None:
    """Acronyms, lone surnames and first words join the one longer name they can stand for."""
    long_keys = sorted(key for key in surfaces if " " in key)
    for key in sorted(key for key in surfaces if " " not in key):
        if any(s.isupper() and len(s) > 1 for s in surfaces[key]):
            candidates = [
                long for long in long_keys
                if "".join(w[0] for w in long.split() if w not in _ACRONYM_SKIPS) == key
            ]
        else:
            candidates = [
                long for long in long_keys
                if (long.split()[-1] == key and _elected(votes.get(long, Counter())) == PERSON)
                or (long.split()[0] == key
                    and _elected(votes.get(long, Counter())) == ORGANIZATION)
            ]
        roots = {groups.find(c) for c in candidates}
        if len(roots) == 1:
            groups.union(key, roots.pop())


def deduplicate_entities(facts: Sequence[DocumentFacts]) -> tuple[list[Entity], dict[str, str]]:
    """The entities all documents mention, and the entity id of every surface name."""
    surfaces: dict[str, Counter[str]] = defaultdict(Counter)  # key → surface name → mentions
    documents: dict[str, set[str]] = defaultdict(set)
    for doc in facts:
        for mention in doc["mentions"]:
            key = entity_key(mention["text"])
            surfaces[key][mention["text"]] += 1
            documents[key].add(doc["path"])
    groups = _UnionFind(surfaces)
    for doc in facts:
        for name, alias in doc["aliases"]:
            groups.union(entity_key(name), entity_key(alias))
    votes = _type_votes(facts)
    _merge_short_forms(groups, surfaces, votes)

    clusters: dict[str, list[str]] = defaultdict(list)
    for key in surfaces:
        clusters[groups.find(key)].append(key)
    entities: list[Entity] = []
    for keys in clusters.values():
        names: Counter[str] = sum((surfaces[k] for k in keys), Counter())
        name = min(names, key=lambda n: (-len(n), -names[n], n))
        cluster_votes: Counter[str] = sum((votes.get(k, Counter()) for k in keys), Counter())
        entities.append(Entity(
            id="", name=name, type=_elected(cluster_votes),
            aliases=sorted(n for n in names if n != name), mentions=sum(names.values()),
            documents=sorted(set().union(*(documents[k] for k in keys))),
        ))
    entities.sort(key=lambda e: (e["name"].casefold(), e["name"]))
    used: Counter[str] = Counter()
    surface_ids: dict[str, str] = {}
    for entity in entities:
        base = slug(entity["name"])
        used[base] += 1
        entity["id"] = base if used[base] == 1 else f"{base}-{used[base]}"
        for surface in (entity["name"], *entity["aliases"]):
            surface_ids[surface] = entity["id"]
    return entities, surface_ids


def _node_id(name: str, kind: str, surface_ids: Mapping[str, str]) -> str:
    return surface_ids[name] if kind == ENTITY else f"{CONCEPT}:{slug(name)}"


def merge_statements(
    facts: Sequence[DocumentFacts], surface_ids: Mapping[str, str]
) -> list[Statement]:
    """Relations rewritten to entity ids; the same statement from many sentences becomes one,
    with its support counted. A relation of an entity with itself (after merging) is dropped."""
    merged: dict[tuple[str, str, str], Statement] = {}
    order = {doc["path"]: number for number, doc in enumerate(facts)}
    for doc in facts:
        for relation in doc["relations"]:
            subject = surface_ids[relation["subject"]]
            target = _node_id(relation["object"], relation["object_kind"], surface_ids)
            if subject == target:
                continue
            key = (subject, relation["predicate"], target)
            position = [order[doc["path"]], relation["sentence"]]
            statement = merged.setdefault(key, Statement(
                subject=subject, predicate=relation["predicate"], object=target,
                object_kind=relation["object_kind"], support=0, documents=[], evidence=[],
                last=position,
            ))
            statement["support"] += 1
            if doc["path"] not in statement["documents"]:
                statement["documents"].append(doc["path"])
            if len(statement["evidence"]) < MAX_EVIDENCE:
                statement["evidence"].append(Evidence(
                    doc=doc["path"], sentence=relation["sentence"],
                    text=doc["sentences"][relation["sentence"]][:300],
                ))
            statement["last"] = max(statement["last"], position)
    return sorted(merged.values(), key=_statement_key)


def _statement_key(statement: Statement) -> tuple[str, str, str]:
    return statement["subject"], statement["predicate"], statement["object"]


def describe(statement: Statement) -> str:
    return f"{statement['subject']} {statement['predicate']} {statement['object']}"


def _strength(statement: Statement) -> tuple[int, int, int, int, str, str]:
    """Sorts the statement to keep first (see the module docstring)."""
    return (-statement["support"], -len(statement["documents"]), -statement["last"][0],
            -statement["last"][1], statement["subject"], statement["object"])


def resolve_statements(statements: Sequence[Statement]) -> tuple[list[Statement], list[Conflict]]:
    """The statements that survive the conflict rules, and one record per statement dropped."""
    kept = list(statements)
    conflicts: list[Conflict] = []

    def settle(rule: str, groups: Mapping[Any, list[Statement]]) -> None:
        for group in groups.values():
            if len(group) < 2:
                continue
            winner, *losers = sorted(group, key=_strength)
            for loser in losers:
                kept.remove(loser)
                conflicts.append(Conflict(rule=rule, kept=describe(winner), dropped=loser))

    one_way: dict[tuple[str, str, str], list[Statement]] = defaultdict(list)
    for s in kept:
        if s["predicate"] in ONE_WAY:
            pair = sorted((s["subject"], s["object"]))
            one_way[(s["predicate"], pair[0], pair[1])].append(s)
    settle("holds one way only", one_way)
    by_subject: dict[tuple[str, str], list[Statement]] = defaultdict(list)
    for s in kept:
        if s["predicate"] in ONE_OBJECT_PER_SUBJECT:
            by_subject[(s["predicate"], s["subject"])].append(s)
    settle("one object per subject", by_subject)
    by_object: dict[tuple[str, str], list[Statement]] = defaultdict(list)
    for s in kept:
        if s["predicate"] in ONE_SUBJECT_PER_OBJECT:
            by_object[(s["predicate"], s["object"])].append(s)
    settle("one subject per object", by_object)
    conflicts.sort(key=lambda c: (c["rule"], _statement_key(c["dropped"])))
    return sorted(kept, key=_statement_key), conflicts


# --- the graph -----------------------------------------------------------------------------------


def make_graph(entities: Sequence[Entity], statements: Sequence[Statement]) -> nx.MultiDiGraph:
    """A directed multigraph: entity and concept nodes, one edge per statement keyed by its
    predicate. Attribute values are strings and numbers only, as GraphML requires."""
    import networkx as nx  # noqa: PLC0415 - only the graph stages need it (~20 MiB)

    graph = nx.MultiDiGraph()
    for entity in entities:
        graph.add_node(entity["id"], label=entity["name"], type=entity["type"],
                       aliases="; ".join(entity["aliases"]), mentions=entity["mentions"],
                       documents="; ".join(entity["documents"]))
    for statement in statements:
        if statement["object_kind"] == CONCEPT and statement["object"] not in graph:
            graph.add_node(statement["object"], type=CONCEPT,
                           label=statement["object"].removeprefix(f"{CONCEPT}:").replace("-", " "),
                           aliases="", mentions=0, documents="")
        graph.add_edge(statement["subject"], statement["object"], key=statement["predicate"],
                       predicate=statement["predicate"], support=statement["support"],
                       documents="; ".join(statement["documents"]),
                       evidence=statement["evidence"][0]["text"] if statement["evidence"] else "")
    return graph


def write_graph(graph: nx.MultiDiGraph, workspace: Path) -> None:
    """GraphML and node-link JSON, each written to a temporary name first."""
    import networkx as nx  # noqa: PLC0415 - see make_graph

    graphml = workspace / GRAPHML_FILE
    graphml.parent.mkdir(parents=True, exist_ok=True)
    tmp = graphml.with_name(graphml.name + ".tmp")
    nx.write_graphml(graph, tmp)
    tmp.replace(graphml)
    write_json(workspace / GRAPH_JSON_FILE, nx.node_link_data(graph, edges="edges"))


def graph_outputs(graph: nx.MultiDiGraph) -> Outputs:
    import networkx as nx  # noqa: PLC0415 - see make_graph

    return {
        "nodes": graph.number_of_nodes(),
        "edges": graph.number_of_edges(),
        "components": nx.number_weakly_connected_components(graph) if len(graph) else 0,
        "graphml": GRAPHML_FILE,
        "json": GRAPH_JSON_FILE,
    }


# --- the stages ----------------------------------------------------------------------------------


def _all_facts(context: Context) -> list[DocumentFacts]:
    """Every document's facts, in manifest (path) order: the join of the per-document stages."""
    found = []
    for doc in read_manifest(context)["accepted"]:
        source = doc_file(context, MENTIONS, doc["path"])
        if not source.exists():  # extraction failed
            continue
        facts: DocumentFacts = read_json(source)
        facts["relations"] = read_json(doc_file(context, RELATIONS, doc["path"]))["relations"]
        found.append(facts)
    return found


def extract_entities(context: Context) -> Outputs:
    """Sentences, entity mentions and stated aliases of each document (may fan out)."""
    done = found = stated = 0
    for path, text in normalized_documents(context, "finding entities in"):
        facts = find_facts(path, text, with_relations=False)
        write_json(doc_file(context, MENTIONS, path), facts)
        done += 1
        found += len(facts["mentions"])
        stated += len(facts["aliases"])
    return {"documents": done, "mentions": found, "aliases": stated}


def extract_relations(context: Context) -> Outputs:
    """Relations between the mentions of each sentence (may fan out)."""
    done = found = 0
    for path, _text in normalized_documents(context, "finding relations in"):
        facts: DocumentFacts = read_json(doc_file(context, MENTIONS, path))
        found_here = find_relations(facts)
        write_json(doc_file(context, RELATIONS, path), {"path": path, "relations": found_here})
        done += 1
        found += len(found_here)
    return {"documents": done, "relations": found}


def deduplicate(context: Context) -> Outputs:
    """Entities from mentions (merging names, aliases and short forms), statements from
    relations (merging repeats)."""
    facts = _all_facts(context)
    entities, surface_ids = deduplicate_entities(facts)
    statements = merge_statements(facts, surface_ids)
    write_json(context.workspace / ENTITIES_FILE, {"entities": entities, "ids": surface_ids})
    write_json(context.workspace / STATEMENTS_FILE, {"statements": statements})
    mentions_seen = sum(len(doc["mentions"]) for doc in facts)
    return {"entities": len(entities), "mentions": mentions_seen,
            "names": len(surface_ids), "merged": len(surface_ids) - len(entities),
            "statements": len(statements)}


def resolve_conflicts(context: Context) -> Outputs:
    statements: list[Statement] = read_json(context.workspace / STATEMENTS_FILE)["statements"]
    kept, conflicts = resolve_statements(statements)
    write_json(context.workspace / RESOLVED_FILE, {"statements": kept, "conflicts": conflicts})
    return {"statements": len(kept), "conflicts": len(conflicts)}


def build_graph(context: Context) -> Outputs:
    """The resolved statements as a graph, written as GraphML and node-link JSON."""
    entities: list[Entity] = read_json(context.workspace / ENTITIES_FILE)["entities"]
    statements: list[Statement] = read_json(context.workspace / RESOLVED_FILE)["statements"]
    graph = make_graph(entities, statements)
    write_graph(graph, context.workspace)
    return graph_outputs(graph)
