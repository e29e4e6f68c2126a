"""Why a stage failed (its reason), start failures with a grace period, and how stages that
never ran are recorded when a run ends: facts in, plan out."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from kubedag.api import (
    CONDITION_SUCCEEDED,
    ConditionStatus,
    RunPhase,
    StageCheckpoint,
    StagePhase,
    find_condition,
)
from kubedag.core import reasons
from kubedag.core.decide import START_FAILURE_GRACE, decide
from kubedag.core.feedback import record_create_results
from kubedag.core.observe import PodSummary
from kubedag.core.plan import Plan
from tests.unit.core.factories import (
    T0,
    at,
    facts,
    job,
    phases,
    pipeline,
    pod,
    stage,
    started,
    step,
)

S, F, R, P = StagePhase.SUCCEEDED, StagePhase.FAILED, StagePhase.RUNNING, StagePhase.PENDING
SKIP, RETRY, CANC = StagePhase.SKIPPED, StagePhase.RETRYING, StagePhase.CANCELLED
FAST_RETRY = {"limit": 2, "initialDelaySeconds": 1}
GRACE = timedelta(seconds=10)


def cp(plan: Plan, name: str) -> StageCheckpoint:
    return (plan.status.stages or {})[name]


def succeeded_condition(plan: Plan) -> Any:
    return find_condition(plan.status.conditions, CONDITION_SUCCEEDED)


def waiting_pod(stage_name: str, reason: str, message: str, since: Any = T0,
                attempt: int = 1) -> PodSummary:
    return replace(pod(stage_name, attempt, phase="Pending"), started=None,
                   waiting_reason=reason, waiting_message=message, waiting_since=since)


def warnings(plan: Plan) -> list[str]:
    return [e.message for e in plan.events if e.type == "Warning"]


# --- the reason of a failed attempt ------------------------------------------------------------


@pytest.mark.parametrize(("failed_pod", "failed_job", "reason", "exit_code"), [
    (pod("a", phase="Failed", exit_code=3), None, reasons.EXIT_CODE, 3),
    (replace(pod("a", phase="Failed", exit_code=137), terminated_reason="OOMKilled"), None,
     reasons.OOM_KILLED, 137),
    (None, job("a", finished="Failed", reason="DeadlineExceeded",
               message="Job was active longer than specified deadline"),
     reasons.DEADLINE_EXCEEDED, None),
    # The pod was deleted before it ended: the Job controller counts it failed.
    (None, job("a", finished="Failed", reason="BackoffLimitExceeded"), reasons.POD_LOST, None),
    (replace(pod("a", phase="Failed", exit_code=137), disruption="Evicted",
             disruption_message="The node was low on resource: memory."), None,
     reasons.POD_LOST, None),
    (None, job("a", finished="Failed", reason="PodFailurePolicy"), reasons.JOB_FAILED, None),
])
def test_a_failed_stage_records_a_stable_reason_and_keeps_the_exit_code_apart(
    failed_pod: PodSummary | None, failed_job: Any, reason: str, exit_code: int | None
) -> None:
    f = facts(pipeline(stage("a")))
    plan = decide(f, T0)
    f = step(f, plan, now=at(10), pods=[failed_pod] if failed_pod else [],
             jobs=[failed_job] if failed_job else [])
    plan = decide(f, at(10))
    a = cp(plan, "a")
    assert (a.phase, a.reason) == (F, reason)
    if exit_code is not None:
        assert a.exit_code == exit_code
    # The Event and the run's condition name the stage and the reason.
    assert any(f"Stage a failed ({reason})" in m for m in warnings(plan))
    condition = succeeded_condition(plan)
    assert condition.reason == reasons.STAGE_FAILED
    assert condition.message.startswith(f"Stage a ({reason}") and "failed" in condition.message


def test_a_deadline_wins_over_the_exit_code_of_pods_killed_for_it() -> None:
    """At the deadline the Job controller deletes the pods, which may end Failed with 143."""
    f = facts(pipeline(stage("a", timeoutSeconds=5)))
    plan = decide(f, T0)
    killed = replace(pod("a", phase="Failed", exit_code=143), deleting=True)
    f = step(f, plan, now=at(6), pods=[killed])
    plan = decide(f, at(6))
    assert phases(plan) == {"a": R}  # a pod killed while deleted: the Job says why
    f = step(f, plan, now=at(7), pods=[killed],
             jobs=[job("a", finished="Failed", reason="DeadlineExceeded")])
    plan = decide(f, at(7))
    assert (cp(plan, "a").phase, cp(plan, "a").reason) == (F, reasons.DEADLINE_EXCEEDED)


def test_a_retried_attempt_keeps_its_reason_while_retrying_and_clears_it_when_restarted() -> None:
    f = facts(pipeline(stage("a", retry=FAST_RETRY)))
    plan = decide(f, T0)
    f = step(f, plan, now=at(10), pods=[pod("a", phase="Failed", exit_code=1)])
    plan = decide(f, at(10))
    a = cp(plan, "a")
    assert (a.phase, a.reason, a.exit_code) == (RETRY, reasons.EXIT_CODE, 1)
    assert any("(ExitCode:" in m for m in warnings(plan))
    f = step(f, plan, now=at(11))
    plan = decide(f, at(11))
    a = cp(plan, "a")
    assert (a.phase, a.attempts, a.reason, a.message) == (R, 2, None, None)
    assert a.exit_code == 1  # the last failed attempt's code stays


def test_pod_lost_is_retried() -> None:
    f = facts(pipeline(stage("a", retry=FAST_RETRY)))
    plan = decide(f, T0)
    f = step(f, plan, now=at(10), jobs=[job("a", finished="Failed",
                                            reason="BackoffLimitExceeded")])
    plan = decide(f, at(10))
    assert (cp(plan, "a").phase, cp(plan, "a").reason) == (RETRY, reasons.POD_LOST)


def test_outputs_too_large_invalid_reference_and_when_errors_have_their_reasons() -> None:
    spec = pipeline(stage("a"), stage("b", "a", args=["$(stages.a.outputs.missing)"]),
                    stage("c", "a", when="stages.a.outputs.nope > 1", critical=False))
    f = facts(spec)
    plan = decide(f, T0)
    f = step(f, plan, now=at(10), pods=[pod("a", outputs={"k": 1})])
    plan = decide(f, at(10))
    assert (cp(plan, "b").phase, cp(plan, "b").reason) == (F, reasons.INVALID_REFERENCE)
    assert (cp(plan, "c").phase, cp(plan, "c").reason) == (F, reasons.WHEN_EVALUATION_FAILED)

    f = facts(pipeline(stage("big")))
    plan = decide(f, T0)
    f = step(f, plan, now=at(10), pods=[pod("big", outputs={"blob": "x" * 5000})])
    plan = decide(f, at(10))
    big = cp(plan, "big")
    assert (big.phase, big.reason, big.exit_code) == (F, reasons.OUTPUT_TOO_LARGE, None)


def test_a_job_the_api_server_rejects_fails_with_job_rejected() -> None:
    plan = decide(facts(pipeline(stage("a"))), T0)
    record_create_results(plan, {"a": "exceeded quota"}, T0)
    a = cp(plan, "a")
    assert (a.phase, a.reason) == (F, reasons.JOB_REJECTED)
    assert any("(JobRejected)" in e.message for e in plan.events)


def test_the_run_condition_names_every_failed_critical_stage_and_its_reason() -> None:
    f = facts(pipeline(stage("a"), stage("b")))
    plan = decide(f, T0)
    f = step(f, plan, now=at(10), pods=[
        pod("a", phase="Failed", exit_code=2),
        replace(pod("b", phase="Failed", exit_code=137), terminated_reason="OOMKilled")])
    plan = decide(f, at(10))
    message = succeeded_condition(plan).message
    assert message.startswith("Critical stages failed:")
    assert "a (ExitCode: exit code 2" in message and "b (OOMKilled: exit code 137" in message


# --- containers that cannot start ------------------------------------------------------------


@pytest.mark.parametrize(("waiting", "reason"), [
    ("ErrImagePull", reasons.IMAGE_PULL_FAILED),
    ("ImagePullBackOff", reasons.IMAGE_PULL_FAILED),
    ("InvalidImageName", reasons.IMAGE_PULL_FAILED),
    ("CreateContainerConfigError", reasons.CONTAINER_CONFIG_ERROR),
    ("CreateContainerError", reasons.CONTAINER_CONFIG_ERROR),
])
def test_a_pod_that_cannot_start_fails_after_the_grace_period_and_its_job_is_deleted(
    waiting: str, reason: str
) -> None:
    # A retry policy does not matter: the same spec would fail the same way.
    f = replace(facts(pipeline(stage("a", retry=FAST_RETRY), stage("b", "a"))),
                start_failure_grace=GRACE)
    plan = decide(f, T0)
    stuck = waiting_pod("a", waiting, 'Back-off pulling image "nope:1"', since=at(1))
    f = step(f, plan, now=at(5), pods=[stuck])
    plan = decide(f, at(5))
    a = cp(plan, "a")
    # Meanwhile: Running, with the kubelet's word, and a wake-up when the grace runs out.
    assert (a.phase, a.message) == (R, f'{waiting}: Back-off pulling image "nope:1"')
    assert plan.requeue_after == pytest.approx(6)
    assert plan.delete_jobs == []
    f = step(f, plan, now=at(11), pods=[stuck])
    plan = decide(f, at(11))
    a = cp(plan, "a")
    assert (a.phase, a.reason, a.attempts) == (F, reason, 1)
    assert waiting in (a.message or "") and "10 s" in (a.message or "")
    assert plan.delete_jobs == ["run-a-1"]
    assert plan.status.phase == RunPhase.FAILED
    assert (cp(plan, "b").phase, cp(plan, "b").reason) == (SKIP, reasons.UPSTREAM_FAILED)
    assert f"Stage a ({reason}" in succeeded_condition(plan).message


def test_a_waiting_message_goes_away_when_the_container_starts() -> None:
    f = replace(facts(pipeline(stage("a"))), start_failure_grace=GRACE)
    plan = decide(f, T0)
    f = step(f, plan, now=at(2), pods=[waiting_pod("a", "ErrImagePull", "timeout")])
    plan = decide(f, at(2))
    assert cp(plan, "a").message == "ErrImagePull: timeout"
    f = step(f, plan, now=at(4), pods=[pod("a", phase="Running")])
    plan = decide(f, at(4))
    assert (cp(plan, "a").phase, cp(plan, "a").message) == (R, None)


def test_the_default_grace_period() -> None:
    assert timedelta(seconds=60) <= START_FAILURE_GRACE <= timedelta(seconds=120)
    f = facts(pipeline(stage("a")))
    plan = decide(f, T0)
    stuck = waiting_pod("a", "ImagePullBackOff", "x")
    f = step(f, plan, now=T0 + START_FAILURE_GRACE - timedelta(seconds=1), pods=[stuck])
    assert decide(f, f.created + START_FAILURE_GRACE - timedelta(seconds=1)).status.phase \
        == RunPhase.RUNNING


def test_one_stuck_fan_out_pod_fails_the_attempt() -> None:
    spec = pipeline(stage("fan", fanOut={"items": [1, 2, 3]}))
    f = replace(facts(spec), start_failure_grace=GRACE)
    plan = decide(f, T0)
    pods = [pod("fan", index=0), replace(waiting_pod("fan", "CreateContainerConfigError",
                                                     'secret "creds" not found'), index=1),
            pod("fan", index=2, phase="Running")]
    f = step(f, plan, now=at(20), pods=pods)
    plan = decide(f, at(20))
    fan = cp(plan, "fan")
    assert (fan.phase, fan.reason) == (F, reasons.CONTAINER_CONFIG_ERROR)
    assert 'secret "creds" not found' in (fan.message or "")


# --- stages a run's end leaves behind ------------------------------------------------------


def ending(how: str) -> tuple[Plan, str]:
    """A run a -> (b running, c pending after b), with d pending and a finally stage,
    ended by a critical failure, a cancel, or its timeout."""
    spec = pipeline(stage("a"), stage("b", "a"), stage("c", "b"), stage("x", "a"),
                    stage("d", "x"), finally_=[stage("report")], timeoutSeconds=100)
    f = facts(spec)
    plan = decide(f, T0)
    f = step(f, plan, now=at(10), pods=[pod("a")])
    plan = decide(f, at(10))
    assert started(plan) == ["b", "x"]
    if how == "failure":
        f = step(f, plan, now=at(20), pods=[pod("x", phase="Failed", exit_code=1)])
        plan = decide(f, at(20))
        f = step(f, plan, now=at(30), pods=[pod("b")])
        return decide(f, at(30)), reasons.RUN_FAILED
    if how == "cancel":
        f = step(f, plan, now=at(20), spec=f.spec.model_copy(update={"cancel": True}),
                 pods=[pod("x", phase="Failed", exit_code=1)])
        plan = decide(f, at(20))
        return plan, reasons.RUN_CANCELLED
    f = step(f, plan, now=at(100), pods=[pod("x", phase="Failed", exit_code=1)])
    return decide(f, at(100)), reasons.RUN_TIMED_OUT


@pytest.mark.parametrize("how", ["failure", "cancel", "timeout"])
def test_stages_that_never_started_are_skipped_with_the_reason_the_run_ended(how: str) -> None:
    plan, reason = ending(how)
    # x failed; d depends on it: UpstreamFailed, whatever ended the run.
    assert (cp(plan, "x").phase, cp(plan, "x").reason) == (F, reasons.EXIT_CODE)
    assert (cp(plan, "d").phase, cp(plan, "d").reason) == (SKIP, reasons.UPSTREAM_FAILED)
    c = cp(plan, "c")
    assert (c.phase, c.reason) == (SKIP, reason)
    assert c.attempts is None and c.job is None
    if how == "failure":
        # A critical failure lets running stages finish, then runs finally stages.
        assert cp(plan, "b").phase == S
        assert started(plan) == ["report"]
    else:
        # Cancel and timeout stop what runs (Cancelled) and never start finally stages.
        assert (cp(plan, "b").phase, cp(plan, "b").reason) == (CANC, reason)
        assert (cp(plan, "report").phase, cp(plan, "report").reason) == (SKIP, reason)
        assert plan.delete_jobs == ["run-b-1"]
        assert plan.status.phase.finished


def test_a_stage_waiting_to_retry_when_the_run_is_cancelled_is_cancelled() -> None:
    f = facts(pipeline(stage("a", retry={"limit": 3, "initialDelaySeconds": 60})))
    plan = decide(f, T0)
    f = step(f, plan, now=at(10), pods=[pod("a", phase="Failed", exit_code=1)])
    plan = decide(f, at(10))
    assert cp(plan, "a").phase == RETRY
    f = step(f, plan, now=at(20), spec=f.spec.model_copy(update={"cancel": True}))
    plan = decide(f, at(20))
    a = cp(plan, "a")
    assert (a.phase, a.reason, a.next_retry_time) == (CANC, reasons.RUN_CANCELLED, None)
    assert plan.delete_jobs == []  # its failed Job is not running anything
    condition = succeeded_condition(plan)
    assert (condition.status, condition.reason) == (ConditionStatus.FALSE, reasons.CANCELLED)
