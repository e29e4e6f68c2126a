"""The stage graph: every structural error is reported with its field path."""

from __future__ import annotations

import gc

import pytest

from kubedag.api import PipelineSpec
from kubedag.core import stageorder
from kubedag.core.dag import (
    DagError,
    FieldError,
    Node,
    build,
    build_from_pairs,
    critical_path,
    ready,
    to_dot,
    to_mermaid,
    topological_levels,
    validate,
)

DIAMOND = [("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"])]


def nodes(pairs: list[tuple[str, list[str]]]) -> list[Node]:
    return [Node(name, tuple(deps)) for name, deps in pairs]


def test_valid_graph_has_no_errors() -> None:
    assert validate(nodes(DIAMOND)) == []


def test_every_error_is_reported_with_its_path() -> None:
    errors = validate(
        nodes([("a", ["a"]), ("b", ["ghost", "a", "a"]), ("b", []), ("c", ["d"]), ("d", ["c"])])
    )
    assert errors == [
        FieldError(
            "spec.stages[2].name", "duplicate stage name 'b' (first used at spec.stages[1])"
        ),
        FieldError("spec.stages[0].dependsOn[0]", "stage 'a' cannot depend on itself"),
        FieldError("spec.stages[1].dependsOn[0]", "unknown stage 'ghost'"),
        FieldError("spec.stages[1].dependsOn[2]", "stage 'a' is listed twice"),
        FieldError("spec.stages[3].dependsOn[0]", "dependency cycle: c → d → c"),
    ]


def test_cycle_message_shows_the_path_from_the_first_name() -> None:
    """In run order, as people draw it: c depends on b, so "b → c"."""
    errors = validate(nodes([("x", ["c"]), ("b", ["x"]), ("c", ["b"])]))
    assert [str(e) for e in errors] == [
        "spec.stages[1].dependsOn[0]: dependency cycle: b → c → x → b"
    ]


def test_each_cycle_is_reported() -> None:
    errors = validate(nodes([("a", ["b"]), ("b", ["a"]), ("c", ["d"]), ("d", ["c"]), ("e", [])]))
    assert [e.message for e in errors] == [
        "dependency cycle: a → b → a",
        "dependency cycle: c → d → c",
    ]


def test_custom_paths_and_external_dependencies() -> None:
    errors = validate(
        nodes([("report", ["aggregate", "nope"])]), path="spec.finally", external={"aggregate"}
    )
    assert errors == [FieldError("spec.finally[0].dependsOn[1]", "unknown stage 'nope'")]
    dag = build(nodes([("report", ["aggregate"])]), external={"aggregate"})
    assert dag.roots() == ["report"]


def test_build_raises_with_all_errors() -> None:
    with pytest.raises(DagError) as raised:
        build(nodes([("a", ["x"]), ("b", ["y"])]))
    assert len(raised.value.errors) == 2
    assert "spec.stages[0].dependsOn[0]: unknown stage 'x'" in str(raised.value)


def test_relations() -> None:
    dag = build_from_pairs(DIAMOND)
    assert dag.dependencies("d") == ["b", "c"]
    assert dag.dependants("a") == ["b", "c"]
    assert dag.upstream("d") == {"a", "b", "c"}
    assert dag.downstream("b") == {"d"}
    assert dag.roots() == ["a"]
    assert "a" in dag and "z" not in dag and len(dag) == 4


def test_topological_levels() -> None:
    dag = build_from_pairs([*DIAMOND, ("e", []), ("f", ["d", "e"])])
    assert topological_levels(dag) == [["a", "e"], ["b", "c"], ["d"], ["f"]]


def test_ready_waits_for_every_dependency() -> None:
    dag = build_from_pairs(DIAMOND)
    assert ready(dag, {}) == ["a"]
    assert ready(dag, {"a": "Running"}) == []
    assert ready(dag, {"a": "Succeeded"}) == ["b", "c"]
    assert ready(dag, {"a": "Succeeded", "b": "Succeeded", "c": "Running"}) == []
    # A skipped stage counts as done; a failed one does not.
    assert ready(dag, {"a": "Succeeded", "b": "Skipped", "c": "Succeeded"}) == ["d"]
    assert ready(dag, {"a": "Succeeded", "b": "Failed", "c": "Succeeded"}) == []
    # Names outside the graph (finally stages) are ignored.
    assert ready(dag, {"report": "Pending"}) == ["a"]


def test_critical_path() -> None:
    dag = build_from_pairs(DIAMOND)
    path = critical_path(dag, {"a": 1, "b": 5, "c": 2, "d": 1})
    assert path.seconds == 7
    assert path.stages == ["a", "b", "d"]
    assert critical_path(dag, {}, default_seconds=2).seconds == 6
    assert critical_path(build([]), {}).stages == []


def test_dot_and_mermaid_export() -> None:
    dag = build_from_pairs([("fetch-data", []), ("train", ["fetch-data"])])
    dot = to_dot(dag, {"fetch-data": "Succeeded"})
    assert '"fetch-data" [label="fetch-data\\nSucceeded"];' in dot
    assert '"fetch-data" -> "train";' in dot
    mermaid = to_mermaid(dag)
    assert mermaid.splitlines() == [
        "flowchart LR",
        '  s0["fetch-data"]',
        '  s1["train"]',
        "  s0 --> s1",
    ]


def test_a_specs_dag_order_is_computed_once_and_forgotten_with_the_spec() -> None:
    spec = PipelineSpec.model_validate({
        "stages": [{"name": "b", "image": "x", "dependsOn": ["a"]}, {"name": "a", "image": "x"}],
        "finally": [{"name": "z", "image": "x"}]})
    first = stageorder.pipeline_order(spec)
    assert [s.name for s in first[0]] == ["a", "b"] and [s.name for s in first[1]] == ["z"]
    assert stageorder.pipeline_order(spec) is first
    assert [s.name for s in stageorder.all_in_order(spec)] == ["a", "b", "z"]
    before = len(stageorder._pipeline_orders) - 1
    del spec
    gc.collect()
    assert len(stageorder._pipeline_orders) == before
