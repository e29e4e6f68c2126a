"""The stage graph: build and check it, order it, and say which stages may start next.

Deliberately ignorant of the API types (as Tekton's `dag` package): it takes `(name,
depends_on)` pairs, so the operator, the validator and the tests can all feed it plainly. Edges
run from a dependency to its dependant, the direction in which work flows.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx

# Phases after which a dependant may start. A skipped stage counts as done, as in Tekton: its
# `when` said "not needed", which must not block the rest of the pipeline.
DONE_PHASES = frozenset({"Succeeded", "Skipped"})
NOT_STARTED_PHASES = frozenset({"Pending"})


@dataclass(frozen=True)
class FieldError:
    """A problem with one field of a manifest, addressed the way `kubectl` users read paths."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class Node:
    """A stage as the graph sees it; `path` locates it in the manifest for error messages."""

    name: str
    depends_on: Sequence[str] = ()
    path: str | None = None


class DagError(ValueError):
    """The nodes do not form a valid DAG; `errors` lists every problem, not just the first."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = list(errors)


@dataclass(frozen=True)
class Dag:
    """A validated stage graph. Build it with `build`."""

    graph: nx.DiGraph = field(repr=False)
    order: tuple[str, ...]  # declaration order, so results are stable and read like the spec

    def __contains__(self, name: object) -> bool:
        return name in self.graph

    def __len__(self) -> int:
        return len(self.order)

    def dependencies(self, name: str) -> list[str]:
        """Direct dependencies, in declaration order."""
        return self._in_order(self.graph.predecessors(name))

    def dependants(self, name: str) -> list[str]:
        """Stages that directly depend on `name`, in declaration order."""
        return self._in_order(self.graph.successors(name))

    def upstream(self, name: str) -> set[str]:
        """Every stage `name` depends on, directly or transitively."""
        return set(nx.ancestors(self.graph, name))

    def downstream(self, name: str) -> set[str]:
        """Every stage that depends on `name`, directly or transitively (e.g. to skip them)."""
        return set(nx.descendants(self.graph, name))

    def roots(self) -> list[str]:
        """Stages without dependencies: they may start at once."""
        return [n for n in self.order if self.graph.in_degree(n) == 0]

    def _in_order(self, names: Iterable[str]) -> list[str]:
        wanted = set(names)
        return [n for n in self.order if n in wanted]


def _node_path(node: Node, index: int, path: str) -> str:
    return node.path if node.path is not None else f"{path}[{index}]"


def validate(
    nodes: Sequence[Node],
    *,
    path: str = "spec.stages",
    deps_field: str = "dependsOn",
    external: Collection[str] = (),
) -> list[FieldError]:
    """Every structural problem of the graph, each with the field path that causes it.

    Checks duplicate names, self and unknown dependencies (`external` names are accepted as
    dependencies without being nodes, e.g. main stages for the `finally` graph), repeated
    dependencies and cycles. Errors come in a stable order: by position in the manifest,
    cycles last.
    """
    errors: list[FieldError] = []
    first_seen: dict[str, str] = {}
    known_externals = set(external)
    for i, node in enumerate(nodes):
        where = _node_path(node, i, path)
        if node.name in first_seen:
            errors.append(
                FieldError(
                    f"{where}.name",
                    f"duplicate stage name {node.name!r} (first used at {first_seen[node.name]})",
                )
            )
        else:
            first_seen[node.name] = where
    for i, node in enumerate(nodes):
        where = _node_path(node, i, path)
        seen_deps: set[str] = set()
        for j, dep in enumerate(node.depends_on):
            dep_path = f"{where}.{deps_field}[{j}]"
            if dep == node.name:
                errors.append(FieldError(dep_path, f"stage {dep!r} cannot depend on itself"))
            elif dep not in first_seen and dep not in known_externals:
                errors.append(FieldError(dep_path, f"unknown stage {dep!r}"))
            elif dep in seen_deps:
                errors.append(FieldError(dep_path, f"stage {dep!r} is listed twice"))
            seen_deps.add(dep)
    errors.extend(_cycle_errors(nodes, path, deps_field))
    return errors


def _cycle_errors(nodes: Sequence[Node], path: str, deps_field: str) -> list[FieldError]:
    """One error per strongly connected component, naming one cycle through it.

    The cycle is written the way people draw a DAG, in run order ("a → b": b depends on a, so
    a would run first), and starts at its alphabetically first stage, so the message is the same
    on every run. The error points at the dependsOn entry that closes the loop at that stage.
    """
    depends: nx.DiGraph = nx.DiGraph()  # edges stage → its dependency
    location: dict[str, tuple[int, Node]] = {}
    for i, node in enumerate(nodes):
        location.setdefault(node.name, (i, node))
        depends.add_node(node.name)
    for name, (_, node) in location.items():
        for dep in node.depends_on:
            if dep in location and dep != name:
                depends.add_edge(name, dep)
    errors: list[FieldError] = []
    components = [c for c in nx.strongly_connected_components(depends) if len(c) > 1]
    for component in sorted(components, key=min):
        start = min(component)
        cycle = _cycle_through(depends.subgraph(component), start)
        index, node = location[start]
        dep_index = list(node.depends_on).index(cycle[1])
        where = f"{_node_path(node, index, path)}.{deps_field}[{dep_index}]"
        in_run_order = list(reversed(cycle))
        errors.append(FieldError(where, f"dependency cycle: {' → '.join(in_run_order)}"))
    return errors


def _cycle_through(component: nx.DiGraph, start: str) -> list[str]:
    """A shortest cycle from `start` back to itself, as a closed list of names."""
    best: list[str] | None = None
    for successor in sorted(component.successors(start)):
        back = nx.shortest_path(component, successor, start)
        if best is None or len(back) + 1 < len(best):
            best = [start, *back]
    assert best is not None  # a node of a non-trivial SCC always has a successor in it
    return best


def build(
    nodes: Sequence[Node],
    *,
    path: str = "spec.stages",
    deps_field: str = "dependsOn",
    external: Collection[str] = (),
) -> Dag:
    """Build the graph, raising `DagError` with every problem if it is not a valid DAG.

    Dependencies on `external` names are accepted and left out of the graph: for the `finally`
    graph those are the main stages, which are all done before any finally stage starts.
    """
    errors = validate(nodes, path=path, deps_field=deps_field, external=external)
    if errors:
        raise DagError(errors)
    graph: nx.DiGraph = nx.DiGraph()
    graph.add_nodes_from(n.name for n in nodes)
    for node in nodes:
        graph.add_edges_from((dep, node.name) for dep in node.depends_on if dep in graph)
    return Dag(graph=graph, order=tuple(n.name for n in nodes))


def build_from_pairs(pairs: Iterable[tuple[str, Sequence[str]]]) -> Dag:
    """`build` for plain `(name, depends_on)` pairs, as tests and tools like to write them."""
    return build([Node(name, tuple(deps)) for name, deps in pairs])


def topological_levels(dag: Dag) -> list[list[str]]:
    """Stages grouped by depth: level 0 has no dependencies, level k depends on level k-1 at most.

    All stages of one level may run in parallel; the number of levels is the longest chain.
    """
    level: dict[str, int] = {}
    for name in nx.topological_sort(dag.graph):
        level[name] = 1 + max((level[d] for d in dag.graph.predecessors(name)), default=-1)
    levels: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for name in dag.order:
        levels[level[name]].append(name)
    return levels


def ready(dag: Dag, states: Mapping[str, str]) -> list[str]:
    """Stages that may start now: not started yet, and every dependency done.

    `states` maps stage names to phases (`StagePhase` values or plain strings); a stage missing
    from it has not started. Names that are not in the graph are ignored, so the whole status
    map of a run (finally stages included) can be passed as is. The result is in declaration
    order; prioritising among ready stages is the caller's decision.
    """
    result = []
    for name in dag.order:
        if states.get(name, "Pending") not in NOT_STARTED_PHASES:
            continue
        if all(states.get(dep) in DONE_PHASES for dep in dag.graph.predecessors(name)):
            result.append(name)
    return result


@dataclass(frozen=True)
class CriticalPath:
    """The longest chain of stages by duration: a lower bound on the run's wall-clock time."""

    seconds: float
    stages: list[str]


def critical_path(
    dag: Dag, durations: Mapping[str, float], *, default_seconds: float = 0.0
) -> CriticalPath:
    """The longest path through the graph, weighting each stage with its duration.

    For an ETA, pass the expected duration of unfinished stages (e.g. from earlier runs or
    their remaining progress) and 0 for finished ones; stages missing from `durations` weigh
    `default_seconds`. Parallelism limits are ignored, so this is an optimistic estimate.
    """
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for name in nx.topological_sort(dag.graph):
        deps = list(dag.graph.predecessors(name))
        before = max(deps, key=lambda d: finish[d], default=None)
        via[name] = before
        start = finish[before] if before is not None else 0.0
        finish[name] = start + float(durations.get(name, default_seconds))
    if not finish:
        return CriticalPath(0.0, [])
    end = max(dag.order, key=lambda n: finish[n])
    chain: list[str] = []
    current: str | None = end
    while current is not None:
        chain.append(current)
        current = via[current]
    return CriticalPath(finish[end], chain[::-1])


def to_dot(dag: Dag, states: Mapping[str, str] | None = None, *, name: str = "pipeline") -> str:
    """Graphviz DOT text, stages labelled with their phase when `states` is given."""
    lines = [f"digraph {_dot_id(name)} {{", "  rankdir=LR;", "  node [shape=box];"]
    for stage in dag.order:
        phase = (states or {}).get(stage)
        label = f"{stage}\\n{phase}" if phase else stage
        lines.append(f"  {_dot_id(stage)} [label={_dot_id(label)}];")
    lines.extend(f"  {_dot_id(a)} -> {_dot_id(b)};" for a, b in _ordered_edges(dag))
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(dag: Dag, states: Mapping[str, str] | None = None) -> str:
    """Mermaid flowchart text (renders in GitHub Markdown), with phases when `states` is given.

    Mermaid ids cannot contain '-', so nodes get positional ids and the stage name as label.
    """
    ids = {stage: f"s{i}" for i, stage in enumerate(dag.order)}
    lines = ["flowchart LR"]
    for stage in dag.order:
        phase = (states or {}).get(stage)
        label = f"{stage}<br/>{phase}" if phase else stage
        lines.append(f'  {ids[stage]}["{label}"]')
    lines.extend(f"  {ids[a]} --> {ids[b]}" for a, b in _ordered_edges(dag))
    return "\n".join(lines) + "\n"


def _ordered_edges(dag: Dag) -> list[tuple[str, str]]:
    position = {name: i for i, name in enumerate(dag.order)}
    return sorted(dag.graph.edges, key=lambda e: (position[e[1]], position[e[0]]))


def _dot_id(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'
