"""Property-based tests of the DAG core on random graphs."""

from __future__ import annotations

import itertools
import re

from hypothesis import assume, given
from hypothesis import strategies as st

from kubedag.core.dag import Node, build, ready, topological_levels, validate

PHASES = ["Pending", "Running", "Retrying", "Succeeded", "Failed", "Skipped", "Cancelled"]


@st.composite
def random_dags(draw: st.DrawFn) -> list[Node]:
    """A DAG: stage i may only depend on stages before it, so there is never a cycle."""
    count = draw(st.integers(min_value=1, max_value=25))
    names = [f"s{i}" for i in range(count)]
    result = []
    for i, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
        result.append(Node(name, tuple(deps)))
    return draw(st.permutations(result))


@given(random_dags())
def test_random_dags_are_valid(dag_nodes: list[Node]) -> None:
    assert validate(dag_nodes) == []


@given(random_dags())
def test_levels_respect_every_edge(dag_nodes: list[Node]) -> None:
    levels = topological_levels(build(dag_nodes))
    level_of = {name: i for i, level in enumerate(levels) for name in level}
    assert sorted(level_of) == sorted(n.name for n in dag_nodes)
    for node in dag_nodes:
        for dep in node.depends_on:
            assert level_of[dep] < level_of[node.name]
        # Each stage sits right after its deepest dependency: levels are as shallow as can be.
        assert level_of[node.name] == 1 + max((level_of[d] for d in node.depends_on), default=-1)


@given(random_dags(), st.data())
def test_a_back_edge_is_reported_as_a_cycle_with_a_valid_path(
    dag_nodes: list[Node], data: st.DataObject
) -> None:
    dag = build(dag_nodes)
    with_ancestors = [n for n in dag_nodes if dag.upstream(n.name)]
    assume(with_ancestors)
    target = data.draw(st.sampled_from(with_ancestors))
    ancestor = data.draw(st.sampled_from(sorted(dag.upstream(target.name))))
    # ancestor now depends on one of its descendants: a cycle.
    mutated = [
        Node(n.name, (*n.depends_on, target.name)) if n.name == ancestor else n for n in dag_nodes
    ]
    errors = validate(mutated)
    cycles = [e for e in errors if e.message.startswith("dependency cycle: ")]
    assert len(cycles) == 1
    path = cycles[0].message.removeprefix("dependency cycle: ").split(" → ")
    assert path[0] == path[-1]
    assert len(set(path[:-1])) == len(path) - 1
    deps = {n.name: set(n.depends_on) for n in mutated}
    for dependency, stage in itertools.pairwise(path):  # run order: each runs before the next
        assert dependency in deps[stage]
    index = [n.name for n in mutated].index(path[0])
    assert re.fullmatch(rf"spec\.stages\[{index}\]\.dependsOn\[\d+\]", cycles[0].path)


@given(random_dags(), st.data())
def test_ready_never_returns_a_stage_with_an_unfinished_dependency(
    dag_nodes: list[Node], data: st.DataObject
) -> None:
    dag = build(dag_nodes)
    states = {
        n.name: data.draw(st.sampled_from(PHASES)) for n in dag_nodes if data.draw(st.booleans())
    }
    for name in ready(dag, states):
        assert states.get(name, "Pending") == "Pending"
        assert all(states.get(d) in ("Succeeded", "Skipped") for d in dag.dependencies(name))


@given(random_dags())
def test_running_ready_stages_to_completion_finishes_every_stage(dag_nodes: list[Node]) -> None:
    dag = build(dag_nodes)
    states: dict[str, str] = {}
    while batch := ready(dag, states):
        states.update(dict.fromkeys(batch, "Succeeded"))
    assert len(states) == len(dag_nodes)
