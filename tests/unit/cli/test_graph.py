"""`kubedag graph`: finally stages after the main DAG, and phases as fill colours."""

from __future__ import annotations

from kubedag.api import StagePhase
from kubedag.cli.graph import PHASE_COLOURS, pipeline_dag, render_graph
from tests.unit.core.factories import pipeline, stage

SPEC = pipeline(stage("a"), stage("b", "a"), stage("c", "a"),
                finally_=[stage("notify"), stage("clean", "notify")])


def test_finally_stages_follow_the_last_main_stages() -> None:
    dag = pipeline_dag(SPEC)
    assert dag.dependencies("notify") == ["b", "c"]
    assert dag.dependencies("clean") == ["notify"]  # after another finally stage only


def test_dot_of_a_file_has_every_edge_and_no_colours() -> None:
    dot = render_graph(SPEC, "dot", name="p")
    assert dot.startswith('digraph "p" {') and dot.endswith("}\n")
    for edge in ('"a" -> "b"', '"a" -> "c"', '"b" -> "notify"', '"c" -> "notify"',
                 '"notify" -> "clean"'):
        assert edge in dot
    assert "fillcolor" not in dot


def test_dot_of_a_run_colours_and_labels_each_stage_by_phase() -> None:
    phases = {"a": StagePhase.SUCCEEDED, "b": StagePhase.FAILED, "c": StagePhase.SKIPPED,
              "notify": StagePhase.RUNNING, "clean": StagePhase.PENDING}
    dot = render_graph(SPEC, "dot", name="run-1", phases=phases)
    assert f'"b" [style=filled, fillcolor="{PHASE_COLOURS[StagePhase.FAILED]}"];' in dot
    assert '"a" [label="a\\nSucceeded"];' in dot
    assert dot.rstrip().endswith("}") and dot.count("}") == 1


def test_mermaid_of_a_run_styles_nodes_by_their_ids() -> None:
    mermaid = render_graph(SPEC, "mermaid", phases={"b": StagePhase.FAILED})
    lines = mermaid.splitlines()
    assert lines[0] == "flowchart LR"
    assert '  s1["b<br/>Failed"]' in lines
    assert f"  style s1 fill:{PHASE_COLOURS[StagePhase.FAILED]}" in lines
    assert "  s3 --> s4" in lines  # notify --> clean


def test_every_stage_phase_has_a_colour() -> None:
    assert set(PHASE_COLOURS) == set(StagePhase)
