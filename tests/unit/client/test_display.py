"""The run tree and the transition lines of `watch`, from RunResults (no terminal, no API)."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from kubedag.api import (
    CONDITION_SUCCEEDED,
    Condition,
    ConditionStatus,
    FanOutStatus,
    PipelineRunStatus,
    RunPhase,
    StageCheckpoint,
    StagePhase,
)
from kubedag.client.display import (
    LineDisplay,
    LiveDisplay,
    NotebookDisplay,
    choose_display,
    run_table,
    transitions,
    tree_rows,
)
from kubedag.client.logs import LogLine, pod_order, stage_notes, termination_notes
from kubedag.core.observe import PodSummary
from kubedag.core.runview import RunResult
from tests.unit.core.factories import T0, at, pipeline, stage

SPEC = pipeline(stage("prep"), stage("train", "prep", retry={"limit": 2},
                                     fanOut={"items": [1, 2, 3, 4]}),
                finally_=[stage("notify"), stage("clean")])


def view(phase: RunPhase = RunPhase.RUNNING, now: float = 20,
         **stages: StageCheckpoint) -> RunResult:
    status = PipelineRunStatus(phase=phase, start_time=at(0), stages=stages)
    if phase.finished:
        status.completion_time = at(now)
        status.conditions = [Condition(
            type=CONDITION_SUCCEEDED, status=ConditionStatus.FALSE, reason="StageFailed",
            message="Stage train failed", last_transition_time=at(now))]
    return RunResult.from_status("docs", "ns", status, SPEC, now=at(now))


def test_the_tree_has_the_run_at_the_root_and_finally_stages_in_their_own_branch() -> None:
    result = view(
        prep=StageCheckpoint(phase=StagePhase.SUCCEEDED, attempts=1, start_time=at(1),
                             finish_time=at(3)),
        train=StageCheckpoint(phase=StagePhase.RETRYING, attempts=2, start_time=at(5),
                              reason="ExitCode", message="exit code 1",
                              fan_out=FanOutStatus(succeeded=3, failed=1, total=4)))
    rows = [row.cells() for row in tree_rows(result)]
    assert rows == [
        ("◐ docs", "Running", "", "", "", "20s", ""),
        ("├─ ✔ prep", "Succeeded", "1/1", "", "1.0s", "2.0s", ""),
        ("├─ ↻ train", "Retrying", "2/3", "3/4", "2.0s", "15s", "ExitCode: exit code 1"),
        ("└─ finally", "", "", "", "", "", ""),
        ("   ├─ ○ notify", "Pending", "", "", "-", "-", ""),
        ("   └─ ○ clean", "Pending", "", "", "-", "-", ""),
    ]


def test_the_table_renders_every_stage_and_column() -> None:
    out = io.StringIO()
    Console(file=out, width=150).print(run_table(view()))
    text = out.getvalue()
    for word in ("STAGE", "ATTEMPT", "FAN-OUT", "WAIT", "RUN", "docs", "prep", "notify"):
        assert word in text


def test_long_messages_are_one_clipped_line() -> None:
    result = view(prep=StageCheckpoint(phase=StagePhase.FAILED, reason="ExitCode",
                                       message="line one\nline two " + "x" * 200))
    message = tree_rows(result)[1].message
    assert "\n" not in message and len(message) == 80 and message.endswith("…")


def test_transitions_name_each_change_once_and_the_run_end_last() -> None:
    first = view(prep=StageCheckpoint(phase=StagePhase.RUNNING, attempts=1, start_time=at(1)))
    assert transitions(None, first, T0) == ["12:00:00 run docs Running",
                                            "12:00:00 ◐ prep Running"]
    assert transitions(first, first, T0) == []
    retrying = view(
        prep=StageCheckpoint(phase=StagePhase.SUCCEEDED, attempts=1, start_time=at(1),
                             finish_time=at(4)),
        train=StageCheckpoint(phase=StagePhase.RETRYING, attempts=1, start_time=at(5),
                              reason="ExitCode", message="exit code 1"))
    assert transitions(first, retrying, T0) == [
        "12:00:00 ✔ prep Succeeded in 3.0s",
        "12:00:00 ↻ train Retrying (attempt 1/3): ExitCode: exit code 1",
    ]
    second_attempt = view(train=StageCheckpoint(
        phase=StagePhase.RETRYING, attempts=2, start_time=at(5), reason="ExitCode"),
        prep=StageCheckpoint(phase=StagePhase.SUCCEEDED, attempts=1, start_time=at(1),
                             finish_time=at(4)))
    assert transitions(retrying, second_attempt, T0) == [
        "12:00:00 ↻ train Retrying (attempt 2/3): ExitCode"]
    failed = view(RunPhase.FAILED, now=30,
                  prep=StageCheckpoint(phase=StagePhase.SUCCEEDED, attempts=1,
                                       start_time=at(1), finish_time=at(4)),
                  train=StageCheckpoint(phase=StagePhase.FAILED, attempts=3, start_time=at(5),
                                        finish_time=at(30), reason="ExitCode"))
    lines = transitions(second_attempt, failed, T0)
    assert lines == ["12:00:00 ✘ train Failed (attempt 3/3) in 25s: ExitCode",
                     "12:00:00 run docs Failed after 30s: Stage train failed"]


def test_without_a_terminal_the_display_is_lines() -> None:
    out = io.StringIO()
    display = choose_display(None, out)
    assert isinstance(display, LineDisplay)
    display.update(view())
    display.update(view())
    display.close()
    assert out.getvalue().count("run docs Running") == 1


def summary(name: str, attempt: int, index: int | None, **fields: Any) -> PodSummary:
    return PodSummary(name=name, job="j", stage="train", attempt=attempt, phase="Succeeded",
                      index=index, **fields)


def test_log_prefixes_and_pod_order() -> None:
    pods = [summary("p3", 2, 0), summary("p2", 1, 1), summary("p1", 1, 0)]
    assert [p.name for p in sorted(pods, key=pod_order)] == ["p1", "p2", "p3"]
    assert str(LogLine("train", 3, 1, "hello")) == "[train:3] hello"
    assert str(LogLine("prep", None, 1, "hi")) == "[prep:0] hi"
    assert LogLine("train", 0, 2, "x").prefix == "[train:0 attempt 2]"


def test_termination_notes_show_the_workers_error_or_outputs() -> None:
    failed = summary("p", 1, None, exit_code=65, terminated_reason="Error",
                     termination_message='{"error": "bad input: row 3"}')
    assert [str(n) for n in termination_notes(failed)] == [
        "[train:0] exited 65 (Error): bad input: row 3"]
    ok = summary("p", 1, 2, exit_code=0, termination_message='{"outputs": {"n": 1}}')
    assert [str(n) for n in termination_notes(ok)] == ['[train:2] exited 0, outputs: {"n": 1}']
    assert termination_notes(summary("p", 1, None)) == []


def test_stage_notes_for_missing_pods() -> None:
    result = view(
        prep=StageCheckpoint(phase=StagePhase.SUCCEEDED, attempts=1, start_time=at(1),
                             finish_time=at(3), outputs={"rows": 2}),
        train=StageCheckpoint(phase=StagePhase.SKIPPED, reason="WhenFalse",
                              message="when was false"))
    assert [str(n) for n in stage_notes(result.stages["prep"], 0)] == [
        "[prep:0] pod is gone (its Job was deleted); stage Succeeded",
        '[prep:0] outputs: {"rows": 2}']
    assert [str(n) for n in stage_notes(result.stages["train"], 0)] == [
        "[train:0] skipped (WhenFalse: when was false), no pod"]
    assert stage_notes(result.stages["prep"], 1) == []
    assert stage_notes(result.stages["notify"], 0) == []


def test_the_live_display_redraws_the_tree() -> None:
    out = io.StringIO()
    display = choose_display(True, out)
    assert isinstance(display, LiveDisplay)
    display.update(view(prep=StageCheckpoint(phase=StagePhase.RUNNING, attempts=1,
                                             start_time=at(1))))
    display.close()
    text = out.getvalue()
    assert "prep" in text and "notify" in text and "ATTEMPT" in text


def test_notebook_bars_count_finished_stages_and_fan_out_items() -> None:
    display = NotebookDisplay()
    display.update(view(
        prep=StageCheckpoint(phase=StagePhase.SUCCEEDED, attempts=1, start_time=at(1),
                             finish_time=at(2)),
        train=StageCheckpoint(phase=StagePhase.RUNNING, attempts=1, start_time=at(3),
                              fan_out=FanOutStatus(succeeded=3, total=4))))
    bars = display.bars
    assert (bars[""].n, bars[""].total) == (1, 4)
    assert (bars["prep"].n, bars["prep"].total) == (1, 1)
    assert (bars["train"].n, bars["train"].total) == (3, 4)
    assert (bars["notify"].n, bars["notify"].total) == (0, 1)
    display.close()


def test_a_stage_waiting_for_a_node_says_so_in_the_first_view_and_in_the_tree() -> None:
    waiting = StageCheckpoint(phase=StagePhase.PENDING, attempts=1, start_time=at(1),
                              job="docs-prep-1", reason="Unschedulable",
                              message="0/3 nodes are available: 3 Insufficient nvidia.com/gpu")
    result = view(prep=waiting)
    lines = transitions(None, result, at(20))
    assert any("○ prep Pending: Unschedulable: 0/3 nodes are available" in line
               for line in lines), lines
    row = next(row for row in tree_rows(result) if "prep" in row.label)
    assert row.cells()[-1].startswith("Unschedulable: 0/3 nodes are available")
