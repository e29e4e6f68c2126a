"""decide(facts, now) -> Plan, table-driven: facts in, plan out, no API server."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubedag.api import (
    CONDITION_SUCCEEDED,
    ConditionStatus,
    PipelineRunStatus,
    RunPhase,
    StageCheckpoint,
    StagePhase,
    find_condition,
    to_k8s,
)
from kubedag.core import reasons
from kubedag.core.decide import MAX_CREATES_PER_PASS, decide
from kubedag.core.expressions import compile_expression
from kubedag.core.naming import job_name
from tests.unit.core.factories import (
    RUN,
    T0,
    at,
    created_jobs,
    facts,
    job,
    phases,
    pipeline,
    pod,
    reasons_of,
    run_to_end,
    stage,
    started,
    step,
)

S, F, R, P = StagePhase.SUCCEEDED, StagePhase.FAILED, StagePhase.RUNNING, StagePhase.PENDING
SKIP, RETRY, CANC = StagePhase.SKIPPED, StagePhase.RETRYING, StagePhase.CANCELLED

DIAMOND = pipeline(stage("a"), stage("b", "a"), stage("c", "a"), stage("d", "b", "c"))


def condition(plan: Any, type_: str = CONDITION_SUCCEEDED) -> Any:
    return find_condition(plan.status.conditions, type_)


def checkpoint(plan: Any, name: str) -> StageCheckpoint:
    return (plan.status.stages or {})[name]


# --- first pass and dependencies -----------------------------------------------------------------


def test_first_pass_starts_only_root_stages_and_records_run_started() -> None:
    plan = decide(facts(DIAMOND), T0)
    assert started(plan) == ["a"]
    assert plan.create_jobs[0]["metadata"]["name"] == job_name(RUN, "a", 1)
    assert phases(plan) == {"a": R}
    cp = checkpoint(plan, "a")
    assert (cp.attempts, cp.job, cp.start_time) == (1, "run-a-1", T0)
    assert reasons_of(plan) == [reasons.RUN_STARTED, reasons.STAGE_STARTED]
    assert plan.status.phase == RunPhase.RUNNING
    assert plan.status.start_time == T0
    assert plan.status.pipeline_spec == DIAMOND
    cond = condition(plan)
    assert (cond.status, cond.reason) == (ConditionStatus.UNKNOWN, reasons.RUNNING)
    assert plan.status.progress is not None
    assert (plan.status.progress.completed, plan.status.progress.total) == (0, 4)
    assert plan.status.eta is None  # nothing finished yet: no basis for an estimate
    assert plan.requeue_after is None
    assert not plan.delete_jobs and not plan.dry_run and not plan.delete_run


def test_several_roots_all_start() -> None:
    plan = decide(facts(pipeline(stage("x"), stage("y"), stage("z", "x"))), T0)
    assert started(plan) == ["x", "y"]


def test_running_stage_with_no_outcome_changes_nothing() -> None:
    f0 = facts(DIAMOND)
    plan = decide(f0, T0)
    f1 = step(f0, plan, now=at(5), pods=[pod("a", phase="Running", progress=0.25)])
    plan = decide(f1, at(5))
    assert plan.create_jobs == []
    assert checkpoint(plan, "a").progress == 0.25
    assert phases(plan) == {"a": R}
    assert reasons.RUN_STARTED not in reasons_of(plan)


def test_a_gpu_stages_measured_usage_reaches_its_checkpoint() -> None:
    f0 = facts(DIAMOND)
    plan = decide(f0, T0)
    usage = {"cpuSeconds": 4.0, "peakRssBytes": 2**30, "gpuDevices": 1,
             "gpuMemoryPeakBytes": 9 * 2**30, "gpuUtilizationMean": 0.8,
             "gpuUtilizationPeak": 1.0}
    f1 = step(f0, plan, now=at(30), pods=[pod("a", outputs={}, usage=usage, finished=at(20))])
    cp = checkpoint(decide(f1, at(30)), "a")
    assert cp.usage is not None
    assert to_k8s(cp.usage) == usage


def test_success_records_outputs_and_starts_dependants_in_the_same_pass() -> None:
    f0 = facts(DIAMOND)
    plan = decide(f0, T0)
    f1 = step(f0, plan, now=at(30),
              pods=[pod("a", outputs={"pages": 3}, usage={"cpuSeconds": 1.5},
                        finished=at(20))])
    plan = decide(f1, at(30))
    cp = checkpoint(plan, "a")
    assert cp.phase == S
    assert cp.outputs == {"pages": 3}
    assert cp.finish_time == at(20)  # the pod's own finish time, not the reconcile time
    assert cp.usage is not None and cp.usage.cpu_seconds == 1.5
    assert cp.exit_code is None and cp.progress is None  # implied by Succeeded
    assert started(plan) == ["b", "c"]
    assert phases(plan) == {"a": S, "b": R, "c": R}
    # The dependants see the upstream outputs.
    env = {e["name"]: e.get("value") for e in
           plan.create_jobs[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env["KUBEDAG_INPUTS"]) == {"a": {"pages": 3}}
    assert reasons.STAGE_SUCCEEDED in reasons_of(plan)
    assert reasons.STAGE_STARTED in reasons_of(plan)


def test_join_waits_for_every_dependency() -> None:
    f = facts(DIAMOND)
    plan = decide(f, T0)
    f = step(f, plan, now=at(10), pods=[pod("a")])
    plan = decide(f, at(10))
    f = step(f, plan, now=at(20), pods=[pod("b")])
    plan = decide(f, at(20))
    assert started(plan) == []  # c still running
    assert "d" not in phases(plan)
    f = step(f, plan, now=at(30), pods=[pod("c")])
    plan = decide(f, at(30))
    assert started(plan) == ["d"]


def test_a_whole_run_succeeds_with_progress_100() -> None:
    plan = run_to_end(facts(DIAMOND), T0)
    assert plan.status.phase == RunPhase.SUCCEEDED
    assert set(phases(plan).values()) == {S}
    cond = condition(plan)
    assert (cond.status, cond.reason) == (ConditionStatus.TRUE, reasons.SUCCEEDED)
    assert plan.status.progress is not None and plan.status.progress.percent == 100
    assert plan.status.completion_time is not None
    assert plan.status.eta is None
    assert reasons.SUCCEEDED in reasons_of(plan)


def test_progress_and_eta_once_one_stage_finished() -> None:
    f = facts(pipeline(stage("a"), stage("b", "a"), stage("c", "b"), stage("d")))
    plan = decide(f, T0)
    assert plan.status.eta is None
    f = step(f, plan, now=at(100), pods=[pod("a", finished=at(100))])
    plan = decide(f, at(100))
    progress = plan.status.progress
    assert progress is not None
    assert (progress.completed, progress.total, progress.percent) == (1, 4, 25)
    # Mean duration 100 s; b and c are left on the longest path, so about 200 s remain.
    assert plan.status.eta == at(300)
    # Nothing finished since: the estimate stands until it has passed, then is made again.
    f = step(f, plan, now=at(250))
    plan = decide(f, at(250))
    assert plan.status.eta == at(300)
    f = step(f, plan, now=at(320))
    plan = decide(f, at(320))
    assert plan.status.eta is not None and plan.status.eta > at(320)


# --- failure and retries -------------------------------------------------------------------------

RETRY_CASES = [
    # strategy, initial, factor, max, attempts before this failure -> expected delay
    ("exponential", 10, 2.0, 600, 1, 10),
    ("exponential", 10, 2.0, 600, 2, 20),
    ("exponential", 10, 2.0, 600, 3, 40),
    ("exponential", 10, 3.0, 50, 3, 50),  # 90 capped by maxDelaySeconds
    ("linear", 5, 2.0, 600, 1, 5),
    ("linear", 5, 2.0, 600, 3, 15),
    ("linear", 5, 2.0, 12, 3, 12),
    ("fixed", 7, 2.0, 600, 1, 7),
    ("fixed", 7, 2.0, 600, 4, 7),
    ("fixed", 7, 2.0, 3, 2, 3),
]


@pytest.mark.parametrize(("strategy", "initial", "factor", "max_delay", "attempt", "delay"),
                         RETRY_CASES)
def test_retryable_failure_schedules_a_retry_per_strategy(
    strategy: str, initial: int, factor: float, max_delay: int, attempt: int, delay: float
) -> None:
    policy = {"limit": 5, "strategy": strategy, "initialDelaySeconds": initial,
              "factor": factor, "maxDelaySeconds": max_delay}
    spec = pipeline(stage("a", retry=policy), stage("b", "a"))
    status = PipelineRunStatus(start_time=T0, pipeline_spec=spec, stages={
        "a": StageCheckpoint(phase=R, attempts=attempt, job=job_name(RUN, "a", attempt),
                             start_time=T0)})
    f = facts(spec, status=status, jobs=[job("a", attempt)],
              pods=[pod("a", attempt, phase="Failed", exit_code=1)])
    plan = decide(f, at(50))
    cp = checkpoint(plan, "a")
    assert cp.phase == RETRY
    assert cp.exit_code == 1
    assert cp.next_retry_time == at(50 + delay)
    assert plan.requeue_after == pytest.approx(delay)
    assert plan.create_jobs == []
    assert reasons.STAGE_RETRYING in reasons_of(plan)
    assert plan.status.phase == RunPhase.RUNNING


def test_retry_starts_the_next_attempt_once_its_time_has_come() -> None:
    spec = pipeline(stage("a", retry={"limit": 2, "strategy": "fixed",
                                      "initialDelaySeconds": 10}))
    f = facts(spec)
    plan = decide(f, T0)
    f = step(f, plan, now=at(5), pods=[pod("a", phase="Failed", exit_code=75)])
    plan = decide(f, at(5))
    assert phases(plan) == {"a": RETRY}
    assert plan.requeue_after == 10
    f = step(f, plan, now=at(9))
    plan = decide(f, at(9))  # too early
    assert plan.create_jobs == []
    assert plan.requeue_after == pytest.approx(6)
    f = step(f, plan, now=at(15))
    plan = decide(f, at(15))
    assert [m["metadata"]["name"] for m in plan.create_jobs] == ["run-a-2"]
    cp = checkpoint(plan, "a")
    assert (cp.phase, cp.attempts, cp.job, cp.next_retry_time) == (R, 2, "run-a-2", None)
    assert cp.start_time == T0  # the stage's first start is kept
    assert "a (attempt 2)" in plan.events[-1].message


@pytest.mark.parametrize(("retry", "exit_code", "attempts", "fragment"), [
    (None, 1, 1, "after 1 attempt(s): exit code 1"),
    ({"limit": 3}, 65, 1, "(not retryable)"),
    ({"limit": 3}, 64, 1, "(not retryable)"),
    ({"limit": 3}, 66, 1, "(not retryable)"),
    ({"limit": 3, "retryableExitCodes": [75]}, 1, 1, "(not retryable)"),
    ({"limit": 2}, 1, 3, "after 3 attempt(s)"),  # retries exhausted
])
def test_failures_that_are_not_retried(retry: dict[str, Any] | None, exit_code: int,
                                       attempts: int, fragment: str) -> None:
    fields = {"retry": retry} if retry else {}
    spec = pipeline(stage("a", **fields), stage("b", "a"))
    status = PipelineRunStatus(start_time=T0, pipeline_spec=spec, stages={
        "a": StageCheckpoint(phase=R, attempts=attempts, job=job_name(RUN, "a", attempts),
                             start_time=T0)})
    f = facts(spec, status=status, jobs=[job("a", attempts)],
              pods=[pod("a", attempts, phase="Failed", exit_code=exit_code, finished=at(3))])
    plan = decide(f, at(5))
    cp = checkpoint(plan, "a")
    assert (cp.phase, cp.exit_code, cp.finish_time) == (F, exit_code, at(3))
    assert cp.next_retry_time is None
    failed_events = [e for e in plan.events if e.reason == reasons.STAGE_FAILED]
    assert len(failed_events) == 1 and fragment in failed_events[0].message
    # a was critical: b is skipped (upstream failed), the run fails in the same pass.
    assert checkpoint(plan, "b").reason == reasons.UPSTREAM_FAILED
    assert plan.status.phase == RunPhase.FAILED
    cond = condition(plan)
    assert (cond.status, cond.reason) == (ConditionStatus.FALSE, reasons.STAGE_FAILED)
    assert "a" in cond.message


def test_error_in_the_termination_message_is_the_stage_message() -> None:
    spec = pipeline(stage("a"))
    f = facts(spec)
    plan = decide(f, T0)
    f = step(f, plan, now=at(5), pods=[pod("a", phase="Failed", exit_code=65,
                                           message='{"error": "bad pdf"}')])
    plan = decide(f, at(5))
    assert checkpoint(plan, "a").message == "bad pdf"


def test_lost_job_is_an_infrastructure_failure_and_retried() -> None:
    spec = pipeline(stage("a", retry={"limit": 1, "initialDelaySeconds": 4}))
    status = PipelineRunStatus(start_time=T0, pipeline_spec=spec, stages={
        "a": StageCheckpoint(phase=R, attempts=1, job="run-a-1", start_time=T0)})
    plan = decide(facts(spec, status=status), at(60))
    cp = checkpoint(plan, "a")
    assert cp.phase == RETRY and "disappeared" in (cp.message or "")
    assert plan.requeue_after == 4


# --- critical and non-critical failures, finally -------------------------------------------------


def test_critical_failure_stops_new_work_then_runs_finally_and_fails_the_run() -> None:
    spec = pipeline(stage("a"), stage("slow"), stage("after-slow", "slow"),
                    stage("b", "a"), stage("c", "b"),
                    finally_=[stage("cleanup"), stage("notify", "cleanup")])
    f = facts(spec)
    plan = decide(f, T0)
    assert started(plan) == ["a", "slow"]
    # a fails critically while slow still runs: nothing new starts, finally waits.
    f = step(f, plan, now=at(10), pods=[pod("a", phase="Failed", exit_code=1),
                                        pod("slow", phase="Running")])
    plan = decide(f, at(10))
    assert plan.create_jobs == []
    assert phases(plan)["a"] == F
    assert checkpoint(plan, "b").reason == reasons.UPSTREAM_FAILED
    assert checkpoint(plan, "c").reason == reasons.UPSTREAM_FAILED  # cascades
    assert "after-slow" not in phases(plan)
    assert plan.status.phase == RunPhase.RUNNING
    # slow succeeds: its dependant must not start; main settles, finally starts.
    f = step(f, plan, now=at(20), pods=[pod("slow")])
    plan = decide(f, at(20))
    assert started(plan) == ["cleanup"]
    stopped = checkpoint(plan, "after-slow")
    assert (stopped.phase, stopped.reason) == (SKIP, reasons.RUN_FAILED)
    f = step(f, plan, now=at(30), pods=[pod("cleanup")])
    plan = decide(f, at(30))
    assert started(plan) == ["notify"]
    f = step(f, plan, now=at(40), pods=[pod("notify")])
    plan = decide(f, at(40))
    assert plan.status.phase == RunPhase.FAILED
    cond = condition(plan)
    assert (cond.status, cond.reason) == (ConditionStatus.FALSE, reasons.STAGE_FAILED)
    assert "a" in cond.message
    assert reasons.FAILED in reasons_of(plan)


def test_critical_failure_stops_pending_retries() -> None:
    spec = pipeline(stage("a"), stage("flaky", retry={"limit": 3}))
    status = PipelineRunStatus(start_time=T0, pipeline_spec=spec, stages={
        "a": StageCheckpoint(phase=R, attempts=1, job="run-a-1", start_time=T0),
        "flaky": StageCheckpoint(phase=RETRY, attempts=1, job="run-flaky-1", start_time=T0,
                                 next_retry_time=at(100), message="exit code 1 (Error)")})
    f = facts(spec, status=status, jobs=[job("a"), job("flaky")],
              pods=[pod("a", phase="Failed")])
    plan = decide(f, at(10))
    assert plan.create_jobs == []
    assert phases(plan) == {"a": F, "flaky": F}
    assert "not retried" in (checkpoint(plan, "flaky").message or "")
    assert plan.status.phase == RunPhase.FAILED


def test_non_critical_failure_skips_dependants_but_siblings_continue() -> None:
    spec = pipeline(stage("a"), stage("opt", "a", critical=False), stage("x", "opt"),
                    stage("y", "x"), stage("sib", "a"), stage("z", "sib"))
    f = facts(spec)
    plan = decide(f, T0)
    f = step(f, plan, now=at(10), pods=[pod("a")])
    plan = decide(f, at(10))
    assert started(plan) == ["opt", "sib"]
    f = step(f, plan, now=at(20), pods=[pod("opt", phase="Failed", exit_code=2),
                                        pod("sib")])
    plan = decide(f, at(20))
    assert started(plan) == ["z"]
    for name in ("x", "y"):
        cp = checkpoint(plan, name)
        assert (cp.phase, cp.reason) == (SKIP, reasons.UPSTREAM_FAILED)
    assert "opt" in (checkpoint(plan, "x").message or "")
    degraded = condition(plan, reasons.CONDITION_DEGRADED)
    assert degraded is not None
    assert (degraded.status, degraded.reason) == (ConditionStatus.TRUE,
                                                  reasons.NON_CRITICAL_STAGE_FAILED)
    assert "opt" in degraded.message
    f = step(f, plan, now=at(30), pods=[pod("z")])
    plan = decide(f, at(30))
    assert plan.status.phase == RunPhase.SUCCEEDED  # a non-critical failure does not fail it
    assert condition(plan, reasons.CONDITION_DEGRADED) is not None
    # ...and its last Event says so, as a Warning, instead of a plain "Run succeeded".
    last = plan.events[-1]
    assert (last.type, last.reason) == ("Warning", reasons.CONDITION_DEGRADED)
    assert "opt" in last.message and "degraded" in last.message


# --- when ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("when", "outputs", "expected"), [
    ("stages.a.outputs.n > 2", {"n": 3}, R),
    ("stages.a.outputs.n > 2", {"n": 1}, SKIP),
    ("params.mode == 'full'", {}, R),
    ("params.mode == 'fast'", {}, SKIP),
])
def test_when_decides_whether_a_stage_runs(when: str, outputs: dict[str, Any],
                                           expected: StagePhase) -> None:
    spec = pipeline(stage("a"), stage("b", "a", when=when), stage("c", "b"),
                    params=[{"name": "mode", "default": "full"}])
    f = facts(spec)
    plan = decide(f, T0)
    f = step(f, plan, now=at(10), pods=[pod("a", outputs=outputs)])
    plan = decide(f, at(10))
    assert phases(plan)["b"] == expected
    if expected == SKIP:
        cp = checkpoint(plan, "b")
        assert cp.reason == reasons.WHEN_FALSE and when in (cp.message or "")
        # A when-skipped stage counts as done: its dependant runs in the same pass.
        assert started(plan) == ["c"]
        assert reasons.STAGE_SKIPPED in reasons_of(plan)
    else:
        assert started(plan) == ["b"]


def test_when_reading_a_phase_runs_a_cleanup_branch_after_a_non_critical_failure() -> None:
    spec = pipeline(
        stage("train", critical=False),
        stage("cleanup", "train", when="stages.train.phase == 'Failed'"),
        stage("why", "train", when="stages.train.reason == 'ExitCode'"),
        stage("publish", "train", when="stages.train.phase == 'Succeeded'"),
        stage("evaluate", "train"),
        stage("report", "cleanup"),
    )
    f = facts(spec)
    plan = decide(f, T0)
    assert started(plan) == ["train"]  # the branches wait for train, whatever its outcome
    f = step(f, plan, now=at(10), pods=[pod("train", phase="Failed", exit_code=1)])
    plan = decide(f, at(10))
    assert sorted(started(plan)) == ["cleanup", "why"]
    published = checkpoint(plan, "publish")
    assert (published.phase, published.reason) == (SKIP, reasons.WHEN_FALSE)
    # A dependant that does not read train's phase is skipped as before.
    evaluated = checkpoint(plan, "evaluate")
    assert (evaluated.phase, evaluated.reason) == (SKIP, reasons.UPSTREAM_FAILED)
    f = step(f, plan, now=at(20), pods=[pod("cleanup"), pod("why")])
    plan = decide(f, at(20))
    assert started(plan) == ["report"]
    f = step(f, plan, now=at(30), pods=[pod("report")])
    plan = decide(f, at(30))
    assert plan.status.phase == RunPhase.SUCCEEDED
    assert condition(plan, reasons.CONDITION_DEGRADED) is not None


def test_when_reading_a_phase_sees_a_success_and_a_skip() -> None:
    spec = pipeline(
        stage("a"),
        stage("opt", "a", when="false"),
        stage("ok", "a", "opt", when="stages.a.phase == 'Succeeded' && "
                                     "stages.opt.phase == 'Skipped' && "
                                     "stages.opt.reason == 'WhenFalse'"),
        stage("alt", "a", when="stages.a.phase == 'Failed'"),
    )
    f = facts(spec)
    plan = decide(f, T0)
    f = step(f, plan, now=at(10), pods=[pod("a")])
    plan = decide(f, at(10))
    assert started(plan) == ["ok"]
    assert (checkpoint(plan, "alt").phase, checkpoint(plan, "alt").reason) == (
        SKIP, reasons.WHEN_FALSE)


def test_a_critical_failure_still_stops_a_branch_reading_its_phase() -> None:
    spec = pipeline(stage("a"), stage("b", "a", when="stages.a.phase == 'Failed'"))
    f = facts(spec)
    plan = decide(f, T0)
    f = step(f, plan, now=at(10), pods=[pod("a", phase="Failed", exit_code=1)])
    plan = decide(f, at(10))
    assert plan.create_jobs == []
    assert phases(plan)["b"] == SKIP
    assert plan.status.phase == RunPhase.FAILED


def test_when_reading_only_outputs_still_skips_after_a_failed_upstream() -> None:
    spec = pipeline(stage("a", critical=False), stage("b", "a", when="stages.a.outputs.n > 0"))
    f = facts(spec)
    plan = decide(f, T0)
    f = step(f, plan, now=at(10), pods=[pod("a", phase="Failed", exit_code=1)])
    plan = decide(f, at(10))
    cp = checkpoint(plan, "b")
    assert (cp.phase, cp.reason) == (SKIP, reasons.UPSTREAM_FAILED)
    assert plan.status.phase == RunPhase.SUCCEEDED


@pytest.mark.parametrize(("outputs", "fragment"), [
    ({}, "no such key"),
    ({"n": "three"}, "no matching overload"),
])
def test_when_runtime_error_fails_the_stage_with_the_message(outputs: dict[str, Any],
                                                            fragment: str) -> None:
    spec = pipeline(stage("a"), stage("b", "a", when="stages.a.outputs.n > 2"))
    f = facts(spec)
    plan = decide(f, T0)
    f = step(f, plan, now=at(10), pods=[pod("a", outputs=outputs)])
    plan = decide(f, at(10))
    cp = checkpoint(plan, "b")
    assert cp.phase == F
    assert "cannot evaluate `stages.a.outputs.n > 2`" in (cp.message or "")
    assert fragment in (cp.message or "")
    assert plan.create_jobs == []
    assert plan.status.phase == RunPhase.FAILED


# --- concurrency ---------------------------------------------------------------------------------


def test_max_parallel_stages_and_priority_order() -> None:
    spec = pipeline(stage("low", priority=-5), stage("mid"), stage("high", priority=10),
                    stage("mid2"), max_parallel_stages=2)
    f = facts(spec)
    plan = decide(f, T0)
    # Highest priority first; equal priorities keep pipeline order.
    assert started(plan) == ["high", "mid"]
    f = step(f, plan, now=at(5), pods=[pod("high", phase="Running")])
    plan = decide(f, at(5))
    assert started(plan) == []  # both slots taken
    f = step(f, plan, now=at(10), pods=[pod("high")])
    plan = decide(f, at(10))
    assert started(plan) == ["mid2"]
    f = step(f, plan, now=at(20), pods=[pod("mid"), pod("mid2")])
    plan = decide(f, at(20))
    assert started(plan) == ["low"]


def test_creates_per_pass_are_bounded_and_the_rest_continue_at_once() -> None:
    count = MAX_CREATES_PER_PASS + 50
    spec = pipeline(*[stage(f"s{i}") for i in range(count)])
    f = facts(spec)
    plan = decide(f, T0)
    assert len(plan.create_jobs) == MAX_CREATES_PER_PASS
    assert plan.requeue_after == 0
    f = step(f, plan, now=T0)
    plan = decide(f, T0)
    assert len(plan.create_jobs) == 50


# --- suspend, cancel, timeout --------------------------------------------------------------------


def test_suspend_creates_nothing_and_pauses() -> None:
    f = facts(DIAMOND, run_spec={"suspend": True})
    plan = decide(f, T0)
    assert plan.create_jobs == []
    assert plan.status.phase == RunPhase.PAUSED
    cond = condition(plan)
    assert (cond.status, cond.reason) == (ConditionStatus.UNKNOWN, reasons.PAUSED)
    # Unsuspended, it carries on.
    f = step(f, plan, now=at(5), spec=f.spec.model_copy(update={"suspend": False}))
    plan = decide(f, at(5))
    assert started(plan) == ["a"]
    assert plan.status.phase == RunPhase.RUNNING


def test_suspend_lets_running_stages_finish_but_starts_no_dependant() -> None:
    f = facts(DIAMOND)
    plan = decide(f, T0)
    f = step(f, plan, now=at(5), pods=[pod("a")],
             spec=f.spec.model_copy(update={"suspend": True}))
    plan = decide(f, at(5))
    assert phases(plan) == {"a": S}
    assert plan.create_jobs == []
    assert plan.status.phase == RunPhase.PAUSED


def test_cancel_deletes_running_jobs_and_cancels() -> None:
    f = facts(DIAMOND)
    plan = decide(f, T0)
    f = step(f, plan, now=at(10), pods=[pod("a")])
    plan = decide(f, at(10))
    f = step(f, plan, now=at(20), spec=f.spec.model_copy(update={"cancel": True}),
             jobs=[job("c", deleting=True)])
    plan = decide(f, at(20))
    # c's Job is already being deleted: only b's is deleted again.
    assert plan.delete_jobs == ["run-b-1"]
    assert plan.create_jobs == []
    # Running stages are Cancelled, those that never started Skipped: the same reason.
    assert phases(plan) == {"a": S, "b": CANC, "c": CANC, "d": SKIP}
    assert {n: checkpoint(plan, n).reason for n in "bcd"} == dict.fromkeys(
        "bcd", reasons.RUN_CANCELLED)
    assert plan.status.phase == RunPhase.CANCELLED
    cond = condition(plan)
    assert (cond.status, cond.reason) == (ConditionStatus.FALSE, reasons.CANCELLED)
    assert reasons.CANCELLED in reasons_of(plan)
    assert plan.status.progress is not None and plan.status.progress.percent == 100


@pytest.mark.parametrize(("pipeline_timeout", "run_timeout", "effective"), [
    (100, None, 100),
    (100, 50, 50),
    (None, 30, 30),
])
def test_run_timeout(pipeline_timeout: int | None, run_timeout: int | None,
                     effective: int) -> None:
    fields = {"timeout_seconds": pipeline_timeout} if pipeline_timeout else {}
    spec = pipeline(stage("a"), stage("b", "a"), **fields)
    run = {"timeoutSeconds": run_timeout} if run_timeout else {}
    f = facts(spec, run_spec=run)
    plan = decide(f, T0)
    assert plan.requeue_after == effective  # wake up at the deadline
    f = step(f, plan, now=at(effective - 1))
    plan = decide(f, at(effective - 1))
    assert plan.status.phase == RunPhase.RUNNING
    assert plan.requeue_after == pytest.approx(1)
    f = step(f, plan, now=at(effective))
    plan = decide(f, at(effective))
    assert plan.status.phase == RunPhase.FAILED
    assert plan.delete_jobs == ["run-a-1"]
    assert plan.create_jobs == []
    cond = condition(plan)
    assert (cond.status, cond.reason) == (ConditionStatus.FALSE, reasons.RUN_TIMEOUT)
    assert str(effective) in cond.message
    assert phases(plan) == {"a": CANC, "b": SKIP}
    assert checkpoint(plan, "a").reason == reasons.RUN_TIMED_OUT
    assert checkpoint(plan, "b").reason == reasons.RUN_TIMED_OUT


# --- adoption and lost Jobs ----------------------------------------------------------------------


@pytest.mark.parametrize("checkpoint_before", [
    None,  # crashed between the create and the very first status write
    StageCheckpoint(phase=RETRY, attempts=1, job="run-a-1", start_time=T0,
                    next_retry_time=at(5)),  # crashed after creating the retry's Job
])
def test_job_with_a_newer_attempt_than_the_checkpoint_is_adopted(
    checkpoint_before: StageCheckpoint | None
) -> None:
    spec = pipeline(stage("a", retry={"limit": 3}), stage("b", "a"))
    stages = {"a": checkpoint_before} if checkpoint_before else {}
    attempt = 2 if checkpoint_before else 1
    status = PipelineRunStatus(start_time=T0, pipeline_spec=spec, stages=stages)
    f = facts(spec, status=status, jobs=[job("a", attempt)],
              pods=[pod("a", attempt, phase="Running")])
    plan = decide(f, at(10))
    assert plan.create_jobs == []  # never re-created
    cp = checkpoint(plan, "a")
    assert (cp.phase, cp.attempts, cp.job) == (R, attempt, job_name(RUN, "a", attempt))
    assert cp.next_retry_time is None
    assert cp.start_time == (T0 if checkpoint_before else at(10))


def test_adopted_job_that_already_succeeded_is_folded_at_once() -> None:
    spec = pipeline(stage("a"), stage("b", "a"))
    status = PipelineRunStatus(start_time=T0, pipeline_spec=spec, stages={})
    f = facts(spec, status=status, jobs=[job("a")], pods=[pod("a", outputs={"k": 1})])
    plan = decide(f, at(10))
    assert phases(plan) == {"a": S, "b": R}
    assert checkpoint(plan, "a").outputs == {"k": 1}
    assert started(plan) == ["b"]


@pytest.mark.parametrize(("recent", "expected"), [(True, R), (False, F)])
def test_job_missing_from_the_cache(recent: bool, expected: StagePhase) -> None:
    spec = pipeline(stage("a"))
    status = PipelineRunStatus(start_time=T0, pipeline_spec=spec, stages={
        "a": StageCheckpoint(phase=R, attempts=1, job="run-a-1", start_time=T0)})
    f = facts(spec, status=status, recently_created=["run-a-1"] if recent else [])
    plan = decide(f, at(1))
    assert phases(plan) == {"a": expected}
    assert plan.create_jobs == []
    if expected == F:
        assert "run-a-1 disappeared" in (checkpoint(plan, "a").message or "")


def test_pods_alone_are_enough_when_the_job_is_not_cached_yet() -> None:
    spec = pipeline(stage("a"))
    status = PipelineRunStatus(start_time=T0, pipeline_spec=spec, stages={
        "a": StageCheckpoint(phase=R, attempts=1, job="run-a-1", start_time=T0)})
    plan = decide(facts(spec, status=status, pods=[pod("a", outputs={"x": 1})]), at(1))
    assert phases(plan) == {"a": S}


@pytest.mark.parametrize(("retry", "expected"), [(None, F), ({"limit": 1}, RETRY)])
def test_job_deadline_exceeded_times_the_stage_out(retry: dict[str, Any] | None,
                                                   expected: StagePhase) -> None:
    fields = {"retry": retry} if retry else {}
    spec = pipeline(stage("a", timeoutSeconds=30, **fields))
    status = PipelineRunStatus(start_time=T0, pipeline_spec=spec, stages={
        "a": StageCheckpoint(phase=R, attempts=1, job="run-a-1", start_time=T0)})
    f = facts(spec, status=status, jobs=[job("a", finished="Failed", reason="DeadlineExceeded",
                                             message="Job was active longer than allowed")])
    plan = decide(f, at(31))
    cp = checkpoint(plan, "a")
    assert cp.phase == expected
    assert "timed out" in (cp.message or "")


# --- fan-out -------------------------------------------------------------------------------------


def test_fan_out_stage_is_an_indexed_job_and_counts_its_indexes() -> None:
    spec = pipeline(stage("split", fanOut={"items": list(range(10)), "batchSize": 3,
                                           "parallelism": 2}))
    f = facts(spec)
    plan = decide(f, T0)
    job_spec = plan.create_jobs[0]["spec"]
    assert (job_spec["completionMode"], job_spec["completions"], job_spec["parallelism"]) == \
        ("Indexed", 4, 2)
    f = step(f, plan, now=at(5), pods=[
        pod("split", index=0, outputs={"n": 0}), pod("split", index=1, phase="Running")])
    plan = decide(f, at(5))
    cp = checkpoint(plan, "split")
    assert cp.phase == R
    assert cp.fan_out is not None
    assert (cp.fan_out.succeeded, cp.fan_out.failed, cp.fan_out.total) == (1, 0, 4)
    f = step(f, plan, now=at(9), pods=[
        pod("split", index=i, outputs={"n": i}) for i in range(4)])
    plan = decide(f, at(9))
    cp = checkpoint(plan, "split")
    assert cp.phase == S
    assert cp.outputs == {"n": 6, "count": 4, "results": [{"n": i} for i in range(4)]}
    assert plan.status.phase == RunPhase.SUCCEEDED


# --- invalid runs --------------------------------------------------------------------------------


def test_cycle_fails_the_run_as_invalid_naming_the_field() -> None:
    spec = pipeline(stage("a", "b"), stage("b", "a"))
    plan = decide(facts(spec), T0)
    assert plan.create_jobs == []
    assert plan.status.phase == RunPhase.FAILED
    cond = condition(plan)
    assert (cond.status, cond.reason) == (ConditionStatus.FALSE, reasons.INVALID_PIPELINE)
    assert "spec.stages[0].dependsOn[0]: dependency cycle" in cond.message
    assert reasons_of(plan) == [reasons.INVALID_PIPELINE]


@pytest.mark.parametrize(("params", "fragment"), [
    ({"n": 1, "nope": 2}, "spec.params.nope: not declared by the pipeline"),
    ({}, "spec.params.n: required"),
    ({"n": "one"}, "spec.params.n: expected int, got str"),
    ({"n": True}, "spec.params.n: expected int, got bool"),
])
def test_bad_params_fail_the_run(params: dict[str, Any], fragment: str) -> None:
    spec = pipeline(stage("a"), params=[{"name": "n", "type": "int"}])
    plan = decide(facts(spec, run_spec={"params": params}), T0)
    assert plan.create_jobs == []
    assert plan.status.phase == RunPhase.FAILED
    cond = condition(plan)
    assert cond.reason == reasons.INVALID_PIPELINE
    assert fragment in cond.message


@pytest.mark.parametrize(("seconds", "phase"), [(0, RunPhase.PENDING), (60, RunPhase.PENDING),
                                                (61, RunPhase.FAILED)])
def test_missing_pipeline_ref_waits_then_fails(seconds: int, phase: RunPhase) -> None:
    plan = decide(facts(None), at(seconds))
    assert plan.status.phase == phase
    cond = condition(plan)
    assert cond.reason == reasons.PIPELINE_NOT_FOUND
    assert "'pipe' not found in namespace ns" in cond.message
    assert plan.create_jobs == []
    if phase == RunPhase.PENDING:
        assert cond.status == ConditionStatus.UNKNOWN
        assert plan.requeue_after == 2.0
    else:
        assert cond.status == ConditionStatus.FALSE
        assert plan.requeue_after is None


def test_referenced_pipeline_is_snapshotted_at_start() -> None:
    f = facts(None, referenced=DIAMOND)
    plan = decide(f, T0)
    assert started(plan) == ["a"]
    assert plan.status.pipeline_spec == DIAMOND
    # The Pipeline is edited (or deleted) afterwards: the run keeps its snapshot.
    f = step(f, plan, now=at(5), pods=[pod("a")], referenced_pipeline=None)
    plan = decide(f, at(5))
    assert started(plan) == ["b", "c"]


# --- dry run, resume, TTL ------------------------------------------------------------------------


def test_dry_run_plans_a_job_for_every_stage_and_creates_nothing_for_real() -> None:
    spec = pipeline(stage("a"), stage("b", "a", args=["$(stages.a.outputs.file)"]),
                    finally_=[stage("f")])
    plan = decide(facts(spec, run_spec={"dryRun": True}), T0)
    assert plan.dry_run
    assert started(plan) == ["a", "b", "f"]
    args = plan.create_jobs[1]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["<a.outputs.file>"]
    assert plan.status.pipeline_spec == spec


def test_resume_reuses_succeeded_checkpoints_with_their_outputs() -> None:
    previous = {
        "a": StageCheckpoint(phase=S, attempts=1, job="old-a-1", start_time=T0,
                             finish_time=at(5), outputs={"file": "x.pdf"}),
        "b": StageCheckpoint(phase=F, attempts=1, job="old-b-1", exit_code=1),
    }
    spec = pipeline(stage("a"), stage("b", "a", args=["$(stages.a.outputs.file)"]))
    f = facts(spec, run_spec={"resumeFrom": "old"}, resume_checkpoints=previous)
    plan = decide(f, at(100))
    cp = checkpoint(plan, "a")
    assert (cp.phase, cp.reason, cp.outputs) == (S, reasons.STAGE_REUSED, {"file": "x.pdf"})
    assert "old" in (cp.message or "")
    assert started(plan) == ["b"]  # the failed one runs again, with the reused outputs
    args = plan.create_jobs[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["x.pdf"]
    assert reasons.RESUMED_FROM in reasons_of(plan)


def test_rerun_stages_run_again_with_everything_downstream_and_finally() -> None:
    """`kubedag retry --from b`: a, upstream, is reused; b, c after it and the finally stage
    run again although they succeeded; d, beside them, is reused."""
    done = {name: StageCheckpoint(phase=S, attempts=1, job=f"old-{name}-1", start_time=T0,
                                  finish_time=at(5), outputs={"n": 1}) for name in "abcdz"}
    spec = pipeline(stage("a"), stage("b", "a"), stage("c", "b"), stage("d", "a"),
                    finally_=[stage("z")])
    f = facts(spec, run_spec={"resumeFrom": "old", "rerunStages": ["b"]},
              resume_checkpoints=done)
    plan = decide(f, at(100))
    assert {n: cp.reason for n, cp in (plan.status.stages or {}).items()} == {
        "a": reasons.STAGE_REUSED, "d": reasons.STAGE_REUSED, "b": None}
    assert started(plan) == ["b"]


def test_an_unknown_rerun_stage_fails_the_run_naming_the_field() -> None:
    spec = pipeline(stage("a"))
    f = facts(spec, run_spec={"resumeFrom": "old", "rerunStages": ["a", "nope"]},
              resume_checkpoints={})
    plan = decide(f, at(1))
    assert plan.status.phase == RunPhase.FAILED
    succeeded = condition(plan, CONDITION_SUCCEEDED)
    assert succeeded is not None
    assert "spec.rerunStages[1]: unknown stage 'nope'" in succeeded.message


@pytest.mark.parametrize(("ttl", "now", "delete", "requeue"), [
    (None, 1000, False, None),
    (60, 30, False, 30.0),
    (60, 60, True, None),
    (60, 600, True, None),
])
def test_ttl_after_finish(ttl: int | None, now: float, delete: bool,
                          requeue: float | None) -> None:
    run = {"ttlSecondsAfterFinished": ttl} if ttl is not None else {}
    finished = PipelineRunStatus(phase=RunPhase.SUCCEEDED, start_time=T0, completion_time=T0)
    plan = decide(facts(DIAMOND, status=finished, run_spec=run), at(now))
    assert plan.delete_run is delete
    assert plan.requeue_after == requeue
    assert plan.create_jobs == [] and plan.events == []
    assert plan.status == finished


# --- idempotence ---------------------------------------------------------------------------------


def test_a_pass_over_its_own_output_changes_nothing() -> None:
    spec = pipeline(stage("a"), stage("b", "a"), stage("c", "a", when="false"),
                    stage("d", "b", "c", retry={"limit": 2}),
                    finally_=[stage("f")], max_parallel_stages=5)
    f = facts(spec)
    now = T0
    plan = decide(f, now)
    outcomes = [[pod("a", outputs={"x": 1})], [pod("b")], [pod("d", phase="Failed")],
                [], [pod("d", 2)], [pod("f")]]
    for pods in outcomes:
        f_again = step(f, plan, now=now)
        again = decide(f_again, now)
        assert again.create_jobs == [] and again.delete_jobs == []
        assert to_k8s(again.status) == to_k8s(plan.status)
        f = f_again
        now = now + timedelta(seconds=30)
        f = step(f, plan, now=now, pods=pods)
        plan = decide(f, now)
    assert plan.status.phase == RunPhase.SUCCEEDED


def test_created_jobs_are_summarised_back_to_their_stage_and_attempt() -> None:
    plan = decide(facts(DIAMOND), T0)
    [summary] = created_jobs(plan)
    assert (summary.name, summary.stage, summary.attempt) == ("run-a-1", "a", 1)


def test_unfinished_run_with_status_from_the_api_is_not_restarted() -> None:
    plan = decide(facts(DIAMOND), T0)
    raw = to_k8s(plan.status)
    status = PipelineRunStatus.model_validate(raw)
    f = replace(facts(DIAMOND, status=status, jobs=created_jobs(plan)))
    again = decide(f, at(1))
    assert again.create_jobs == []
    assert reasons.RUN_STARTED not in reasons_of(again)


# --- idempotence, as a property over random DAGs and outcomes -------------------------------------


@st.composite
def random_pipelines(draw: st.DrawFn) -> Any:
    count = draw(st.integers(min_value=1, max_value=12))
    names = [f"s{i}" for i in range(count)]
    stages = []
    for i, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=3)) if i else []
        fields: dict[str, Any] = {"critical": draw(st.booleans()),
                                  "priority": draw(st.integers(-2, 2))}
        if draw(st.booleans()):
            fields["retry"] = {"limit": draw(st.integers(0, 2)), "initialDelaySeconds": 5}
        if deps and draw(st.integers(0, 4)) == 0:
            fields["when"] = draw(st.sampled_from(["true", "false"]))
        stages.append(stage(name, *deps, **fields))
    finals = [stage("fin")] if draw(st.booleans()) else []
    limit = draw(st.one_of(st.none(), st.integers(1, 4)))
    return pipeline(*stages, finally_=finals or None, max_parallel_stages=limit)


OUTCOMES = ["Succeeded", "Failed", "Failed65", "Running", "Lost"]


# The CEL parser raises the recursion limit when first built; build it before hypothesis runs
# (which warns when the limit changes during a test).
compile_expression("true")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_pipelines(), st.data())
def test_decide_is_idempotent_on_its_own_output(spec: Any, data: st.DataObject) -> None:
    f = facts(spec)
    now = T0
    plan = decide(f, now)
    for _ in range(40):
        # Re-run the pass on its own output, the created Jobs now observed: nothing new.
        f_again = step(f, plan, now=now, pods=f.pods)
        again = decide(f_again, now)
        assert again.create_jobs == []
        assert again.delete_jobs == []
        assert to_k8s(again.status) == to_k8s(plan.status)
        if plan.status.phase.finished:
            break
        f = f_again
        pods = []
        for name, cp in sorted((plan.status.stages or {}).items()):
            if cp.phase != R:
                continue
            outcome = data.draw(st.sampled_from(OUTCOMES), label=name)
            if outcome == "Succeeded":
                pods.append(pod(name, cp.attempts or 1, outputs={"v": 1}))
            elif outcome.startswith("Failed"):
                pods.append(pod(name, cp.attempts or 1, phase="Failed",
                                exit_code=65 if outcome == "Failed65" else 1))
            elif outcome == "Running":
                pods.append(pod(name, cp.attempts or 1, phase="Running"))
        now = now + timedelta(seconds=data.draw(st.sampled_from([1, 10, 60]), label="tick"))
        lost = {cp.job for cp in (plan.status.stages or {}).values()
                if cp.phase == R and not any(p.job == cp.job for p in pods)}
        f = step(f, plan, now=now, pods=pods)
        # A Job without a pod outcome was lost (deleted behind our back) or is still pending.
        f = replace(f, jobs={n: j for n, j in f.jobs.items() if n not in lost}
                    if data.draw(st.booleans(), label="lose") else f.jobs)
        plan = decide(f, now)
        # Invariants of every pass.
        running = sum(1 for cp in (plan.status.stages or {}).values() if cp.phase == R)
        if spec.max_parallel_stages is not None:
            assert running <= spec.max_parallel_stages
        for stage_spec in spec.all_stages():
            cp = (plan.status.stages or {}).get(stage_spec.name)
            if cp is not None and cp.phase in (R, S) and stage_spec.name != "fin":
                for dep in stage_spec.depends_on or []:
                    assert (plan.status.stages or {})[dep].phase.done
    else:
        pytest.fail(f"run did not finish: {phases(plan)}")


def test_suspended_run_whose_last_stage_finished_still_finishes() -> None:
    f = facts(pipeline(stage("a")))
    plan = decide(f, T0)
    f = step(f, plan, now=at(5), pods=[pod("a")],
             spec=f.spec.model_copy(update={"suspend": True}))
    plan = decide(f, at(5))
    assert plan.status.phase == RunPhase.SUCCEEDED
    assert plan.create_jobs == []
