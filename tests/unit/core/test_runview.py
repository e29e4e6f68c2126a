"""The people's view of a run: DAG order, attempts, wait vs run time, fan-out, exit codes."""

from __future__ import annotations

from datetime import timedelta

import pytest

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
from kubedag.core import reasons
from kubedag.core.runview import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_SUCCEEDED,
    EXIT_TIMED_OUT,
    RunResult,
    format_seconds,
    phase_glyph,
)
from tests.unit.core.factories import T0, at, facts, pipeline, pod, run_to_end, stage

# Declared out of DAG order on purpose: the view must sort it.
SPEC = pipeline(
    stage("report", "train"),
    stage("train", "prep", retry={"limit": 2}),
    stage("prep"),
    finally_=[stage("notify")],
)


def condition(reason: str, message: str = "") -> list[Condition]:
    return [Condition(type=CONDITION_SUCCEEDED, status=ConditionStatus.FALSE, reason=reason,
                      message=message, last_transition_time=T0)]


def test_stages_come_in_dag_order_with_finally_last_and_flagged() -> None:
    result = RunResult.from_status("r", "ns", PipelineRunStatus(), SPEC, now=T0)
    assert list(result.stages) == ["prep", "train", "report", "notify"]
    assert [s.is_finally for s in result.stages.values()] == [False, False, False, True]
    assert all(s.phase == StagePhase.PENDING and s.attempts == 0
               for s in result.stages.values())


def test_attempts_limits_wait_and_run_time_come_from_checkpoints() -> None:
    status = PipelineRunStatus(
        phase=RunPhase.RUNNING, start_time=at(0),
        stages={
            "prep": StageCheckpoint(phase=StagePhase.SUCCEEDED, attempts=1, start_time=at(1),
                                    finish_time=at(5), outputs={"rows": 3}),
            # Ready at 5 (prep finished), started at 9: waited 4 s for a slot.
            "train": StageCheckpoint(phase=StagePhase.RETRYING, attempts=2, start_time=at(9),
                                     message="exit code 1"),
        })
    result = RunResult.from_status("r", "ns", status, SPEC, now=at(30))
    prep, train = result.stages["prep"], result.stages["train"]
    assert (prep.wait_seconds, prep.run_seconds) == (1.0, 4.0)
    assert (train.wait_seconds, train.run_seconds) == (4.0, 21.0)
    assert (train.attempts, train.max_attempts) == (2, 3)
    assert (prep.attempts, prep.max_attempts) == (1, 1)
    assert result.outputs("prep") == {"rows": 3}
    assert train.message == "exit code 1"
    assert result.duration_seconds == 30.0
    assert not result.finished


def test_outputs_of_an_unknown_stage_names_the_known_ones() -> None:
    result = RunResult.from_status("r", "ns", PipelineRunStatus(), SPEC, now=T0)
    with pytest.raises(KeyError, match=r"no stage 'nope'.*prep, train, report, notify"):
        result.outputs("nope")


def test_finally_stages_become_ready_when_every_main_stage_is_done() -> None:
    status = PipelineRunStatus(phase=RunPhase.RUNNING, start_time=at(0), stages={
        "prep": StageCheckpoint(phase=StagePhase.SUCCEEDED, start_time=at(0), finish_time=at(2)),
        "train": StageCheckpoint(phase=StagePhase.SUCCEEDED, start_time=at(2),
                                 finish_time=at(7)),
        "report": StageCheckpoint(phase=StagePhase.FAILED, start_time=at(7), finish_time=at(8)),
        "notify": StageCheckpoint(phase=StagePhase.RUNNING, start_time=at(10)),
    })
    result = RunResult.from_status("r", "ns", status, SPEC, now=at(11))
    assert result.stages["notify"].wait_seconds == 2.0
    assert result.stages["notify"].run_seconds == 1.0


def test_fan_out_counts_and_reused_stages_have_no_wait() -> None:
    status = PipelineRunStatus(phase=RunPhase.RUNNING, start_time=at(100), stages={
        # Reused from an earlier run: its times are that run's, so no wait is computed.
        "prep": StageCheckpoint(phase=StagePhase.SUCCEEDED, start_time=at(0), finish_time=at(2),
                                reason=reasons.STAGE_REUSED),
        "train": StageCheckpoint(phase=StagePhase.RUNNING, start_time=at(101), attempts=1,
                                 fan_out=FanOutStatus(succeeded=3, failed=1, total=10)),
    })
    result = RunResult.from_status("r", "ns", status, SPEC, now=at(105))
    assert result.stages["prep"].wait_seconds is None
    assert result.stages["prep"].run_seconds == 2.0
    train = result.stages["train"]
    assert (train.fanout_done, train.fanout_total) == (3, 10)
    assert result.stages["report"].fanout_total is None


def test_without_a_spec_the_snapshot_in_the_status_orders_the_stages() -> None:
    status = PipelineRunStatus(pipeline_spec=SPEC)
    assert list(RunResult.from_status("r", None, status, now=T0).stages) == [
        "prep", "train", "report", "notify"]


def test_without_any_spec_stages_come_by_start_time() -> None:
    status = PipelineRunStatus(stages={
        "late": StageCheckpoint(phase=StagePhase.RUNNING, start_time=at(5)),
        "early": StageCheckpoint(phase=StagePhase.SUCCEEDED, start_time=at(1),
                                 finish_time=at(2)),
        "never": StageCheckpoint(phase=StagePhase.SKIPPED),
    })
    assert list(RunResult.from_status("r", None, status, now=at(9)).stages) == [
        "early", "late", "never"]


@pytest.mark.parametrize(("phase", "reason", "code"), [
    (RunPhase.SUCCEEDED, reasons.SUCCEEDED, EXIT_SUCCEEDED),
    (RunPhase.FAILED, reasons.STAGE_FAILED, EXIT_FAILED),
    (RunPhase.FAILED, reasons.INVALID_PIPELINE, EXIT_FAILED),
    (RunPhase.FAILED, reasons.RUN_TIMEOUT, EXIT_TIMED_OUT),
    (RunPhase.CANCELLED, reasons.CANCELLED, EXIT_CANCELLED),
    (RunPhase.RUNNING, reasons.RUNNING, EXIT_TIMED_OUT),
    (RunPhase.PAUSED, reasons.PAUSED, EXIT_TIMED_OUT),
])
def test_exit_codes(phase: RunPhase, reason: str, code: int) -> None:
    status = PipelineRunStatus(phase=phase, conditions=condition(reason, "why"))
    result = RunResult.from_status("r", "ns", status, SPEC, now=T0)
    assert result.exit_code == code
    assert result.message == "why" and result.reason == reason


def test_exit_codes_are_the_documented_numbers() -> None:
    assert (EXIT_SUCCEEDED, EXIT_FAILED, EXIT_CANCELLED, EXIT_TIMED_OUT) == (0, 1, 2, 3)


def test_a_run_driven_by_decide_reads_back_with_outputs_and_duration() -> None:
    spec = pipeline(stage("a"), stage("b", "a"), finally_=[stage("fin")])
    plan = run_to_end(facts(spec), T0)
    result = RunResult.from_status("run", "ns", plan.status, spec)
    assert result.phase == RunPhase.SUCCEEDED and result.exit_code == 0
    assert list(result.stages) == ["a", "b", "fin"]
    assert result.outputs("b") == {"stage": "b"}
    assert all(s.attempts == 1 and s.run_seconds is not None for s in result.stages.values())
    assert result.duration_seconds is not None and result.duration_seconds > 0


def test_a_failed_stage_driven_by_decide_fails_the_run_with_exit_code_1() -> None:
    spec = pipeline(stage("a"), stage("b", "a"))
    plan = run_to_end(facts(spec), T0, outcomes={"a": pod("a", phase="Failed", exit_code=3)})
    result = RunResult.from_status("run", "ns", plan.status, spec)
    assert result.exit_code == EXIT_FAILED
    assert (result.stages["a"].attempts, result.stages["a"].max_attempts) == (1, 1)
    assert result.stages["a"].phase == StagePhase.FAILED
    assert result.stages["b"].phase == StagePhase.SKIPPED
    assert result.message is not None and "a" in result.message


def test_to_dict_is_plain_camel_case_data_with_the_exit_code() -> None:
    status = PipelineRunStatus(phase=RunPhase.SUCCEEDED, start_time=at(0), completion_time=at(3),
                               stages={"prep": StageCheckpoint(
                                   phase=StagePhase.SUCCEEDED, start_time=at(0),
                                   finish_time=at(1), outputs={"some_key": 1})})
    data = RunResult.from_status("r", "ns", status, SPEC).to_dict()
    assert data["phase"] == "Succeeded" and type(data["phase"]) is str
    assert data["exitCode"] == 0 and data["durationSeconds"] == 3.0
    prep = data["stages"]["prep"]
    assert prep["maxAttempts"] == 1 and prep["isFinally"] is False
    assert prep["outputs"] == {"some_key": 1}


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (0.42, "0.4s"), (12.4, "12s"), (185, "3m05s"), (3720, "1h02m")])
def test_format_seconds(seconds: float | None, text: str) -> None:
    assert format_seconds(seconds) == text


def test_every_phase_has_its_own_glyph() -> None:
    glyphs = [phase_glyph(p) for p in [*StagePhase, *RunPhase]]
    assert "?" not in glyphs
    assert len({phase_glyph(p) for p in StagePhase}) == len(StagePhase)


def test_durations_are_never_negative_across_clock_skew() -> None:
    status = PipelineRunStatus(phase=RunPhase.RUNNING, start_time=at(10), stages={
        "prep": StageCheckpoint(phase=StagePhase.RUNNING, start_time=at(9))})
    result = RunResult.from_status("r", "ns", status, SPEC, now=at(8) - timedelta(seconds=1))
    assert result.stages["prep"].wait_seconds == 0.0
    assert result.stages["prep"].run_seconds == 0.0
