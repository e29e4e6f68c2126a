"""Circuit breakers: the pure state machine (kubedag.core.breaker) and decide() holding stages."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from kubedag import contract
from kubedag.api import (
    BreakerState,
    BreakerThresholds,
    CircuitBreakerSpec,
    CircuitBreakerStatus,
    ForcedState,
    StagePhase,
)
from kubedag.core import reasons
from kubedag.core.breaker import (
    AttemptReport,
    BreakerView,
    Verdict,
    advance,
    allowance,
    breaker_key,
    classify,
    record_result,
    record_starts,
    stage_policy,
    view,
)
from kubedag.core.decide import decide
from kubedag.core.jobspec import JobSettings, stage_image
from kubedag.core.naming import breaker_name
from kubedag.core.observe import Outcome
from tests.unit.core.factories import T0, at, facts, phases, pipeline, pod, stage, started, step

SPEC = CircuitBreakerSpec(key="s3-prod")
CLOSED = CircuitBreakerStatus()
OPEN, HALF, SHUT = BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED


def report(verdict: Verdict, stage_name: str = "a", seconds: float = 0) -> AttemptReport:
    reason = {Verdict.FAILURE: reasons.OOM_KILLED, Verdict.IGNORED: reasons.EXIT_CODE}.get(verdict)
    return AttemptReport(key="s3-prod", stage=stage_name, verdict=verdict, reason=reason,
                         time=at(seconds), thresholds=BreakerThresholds())


def feed(status: CircuitBreakerStatus, verdicts: list[Verdict], *, spec: CircuitBreakerSpec = SPEC,
         run: str = "r1", start: float = 0) -> tuple[CircuitBreakerStatus, list[str]]:
    transitions: list[str] = []
    for i, verdict in enumerate(verdicts):
        status, changes = record_result(spec, status, run, report(verdict, seconds=start + i),
                                        at(start + i))
        transitions += [t.reason for t in changes]
    return status, transitions


def tripped() -> CircuitBreakerStatus:
    status, transitions = feed(CLOSED, [Verdict.FAILURE] * 5)
    assert transitions == [reasons.CIRCUIT_TRIPPED]
    return status


# --- what counts ------------------------------------------------------------------------------

@pytest.mark.parametrize(("outcome", "reason", "code", "verdict"), [
    (Outcome.SUCCEEDED, None, 0, Verdict.SUCCESS),
    (Outcome.FAILED, reasons.EXIT_CODE, contract.EXIT_RETRYABLE, Verdict.FAILURE),
    (Outcome.FAILED, reasons.OOM_KILLED, 137, Verdict.FAILURE),
    (Outcome.FAILED, reasons.POD_LOST, None, Verdict.FAILURE),
    (Outcome.FAILED, reasons.IMAGE_PULL_FAILED, None, Verdict.FAILURE),
    (Outcome.FAILED, reasons.DEADLINE_EXCEEDED, None, Verdict.FAILURE),
    (Outcome.FAILED, reasons.JOB_LOST, None, Verdict.FAILURE),
    (Outcome.FAILED, reasons.EXIT_CODE, contract.EXIT_USAGE, Verdict.IGNORED),
    (Outcome.FAILED, reasons.EXIT_CODE, contract.EXIT_PERMANENT, Verdict.IGNORED),
    (Outcome.FAILED, reasons.EXIT_CODE, contract.EXIT_OUTPUT_TOO_LARGE, Verdict.IGNORED),
    (Outcome.FAILED, reasons.EXIT_CODE, 1, Verdict.IGNORED),
    (Outcome.FAILED, reasons.CONTAINER_CONFIG_ERROR, None, Verdict.IGNORED),
    (Outcome.FAILED, reasons.UNSCHEDULABLE, None, Verdict.IGNORED),
])
def test_only_infrastructure_failures_and_exit_75_count(
        outcome: Outcome, reason: str | None, code: int | None, verdict: Verdict) -> None:
    assert classify(outcome, reason, code) is verdict


def test_permanent_errors_never_trip_it() -> None:
    status, transitions = feed(CLOSED, [Verdict.IGNORED] * 50)
    assert status.state == SHUT and status.consecutive_failures == 0 and not transitions
    assert not status.recent_attempts


# --- tripping ---------------------------------------------------------------------------------

def test_five_consecutive_failures_trip_it_for_open_seconds() -> None:
    status, transitions = feed(CLOSED, [Verdict.FAILURE] * 4)
    assert status.state == SHUT and status.consecutive_failures == 4 and not transitions
    status, transitions = feed(status, [Verdict.FAILURE], start=4)
    assert transitions == [reasons.CIRCUIT_TRIPPED]
    assert (status.state, status.trips, status.open_seconds) == (OPEN, 1, 60)
    assert status.half_open_time == at(4) + timedelta(seconds=60)
    assert allowance(SPEC, status) == 0
    assert status.last_failure is not None and status.last_failure.reason == reasons.OOM_KILLED


def test_a_success_resets_the_consecutive_count() -> None:
    status, transitions = feed(CLOSED, [Verdict.FAILURE] * 4 + [Verdict.SUCCESS]
                               + [Verdict.FAILURE] * 4)
    assert status.state == SHUT and status.consecutive_failures == 4 and not transitions


def test_a_failure_ratio_over_the_window_trips_it() -> None:
    pattern = [Verdict.FAILURE, Verdict.FAILURE, Verdict.SUCCESS] * 3  # 6 of 9: too few yet
    status, transitions = feed(CLOSED, pattern)
    assert status.state == SHUT and not transitions
    status, transitions = feed(status, [Verdict.FAILURE], start=9)  # 7 of 10
    assert transitions == [reasons.CIRCUIT_TRIPPED] and status.state == OPEN


def test_attempts_older_than_the_window_do_not_count() -> None:
    spec = CircuitBreakerSpec(key="k", thresholds=BreakerThresholds(window_seconds=5))
    pattern = [Verdict.FAILURE, Verdict.SUCCESS] * 5
    status, transitions = feed(CLOSED, pattern, spec=spec)
    assert len(status.recent_attempts or []) <= 6 and not transitions


# --- half-open, probe, waves ------------------------------------------------------------------

def test_after_open_seconds_exactly_one_probe_may_start() -> None:
    status = tripped()
    same, changes = advance(SPEC, status, at(30), waiting=3)
    assert same.state == OPEN and not changes
    status, changes = advance(SPEC, status, at(70), waiting=3)
    assert [t.reason for t in changes] == [reasons.CIRCUIT_HALF_OPENED]
    assert status.state == HALF and allowance(SPEC, status) == 1
    status = record_starts(status, "r3", ["a"], at(70))
    assert status.probe is not None and (status.probe.run, status.probe.stage) == ("r3", "a")
    assert allowance(SPEC, status) == 0


def test_probe_failure_reopens_with_doubled_open_seconds_capped() -> None:
    status = tripped()
    seconds = []
    for round_ in range(6):
        now = at(1000 * (round_ + 1))
        status, _ = advance(SPEC, status, now, waiting=1)
        status = record_starts(status, "r3", ["a"], now)
        status, changes = record_result(SPEC, status, "r3", report(Verdict.FAILURE), now)
        assert [t.reason for t in changes] == [reasons.CIRCUIT_PROBE_FAILED]
        seconds.append(status.open_seconds)
    assert seconds == [120, 240, 480, 600, 600, 600]
    assert status.trips == 7


def test_results_of_other_attempts_do_not_decide_while_half_open() -> None:
    status, _ = advance(SPEC, tripped(), at(100), waiting=1)
    status = record_starts(status, "r3", ["a"], at(100))
    status, changes = record_result(SPEC, status, "r1", report(Verdict.SUCCESS, "b"), at(101))
    assert status.state == HALF and not changes


def test_an_uncounted_probe_failure_frees_the_probe_slot() -> None:
    status, _ = advance(SPEC, tripped(), at(100), waiting=1)
    status = record_starts(status, "r3", ["a"], at(100))
    status, changes = record_result(SPEC, status, "r3", report(Verdict.IGNORED), at(101))
    assert not changes and status.state == HALF and status.probe is None
    assert allowance(SPEC, status) == 1


def test_probe_success_releases_held_attempts_in_waves_of_1_2_4_8() -> None:
    status, _ = advance(SPEC, tripped(), at(100), waiting=20)
    status = record_starts(status, "r3", ["probe"], at(100))
    status, changes = record_result(SPEC, status, "r3", report(Verdict.SUCCESS, "probe"), at(101))
    assert [t.reason for t in changes] == [reasons.CIRCUIT_PROBE_SUCCEEDED]
    waves = []
    for _ in range(4):
        status, _ = advance(SPEC, status, at(102), waiting=20)
        wave = allowance(SPEC, status)
        assert wave is not None
        waves.append(wave)
        names = [f"s{i}" for i in range(wave)]
        status = record_starts(status, "r3", names, at(102))
        assert allowance(SPEC, status) == 0  # the wave is out: the next waits for its results
        for name in names:
            status, _ = record_result(SPEC, status, "r3", report(Verdict.SUCCESS, name), at(103))
    assert waves == [1, 2, 4, 8]
    assert status.state == SHUT and status.release is not None


def test_the_release_ends_when_nobody_waits_and_its_attempts_went_well() -> None:
    status, _ = advance(SPEC, tripped(), at(100), waiting=1)
    status = record_starts(status, "r3", ["probe"], at(100))
    status, _ = record_result(SPEC, status, "r3", report(Verdict.SUCCESS, "probe"), at(101))
    status = record_starts(status, "r3", ["a"], at(102))
    status, changes = advance(SPEC, status, at(102), waiting=0)
    assert not changes  # "a" is still running
    status, _ = record_result(SPEC, status, "r3", report(Verdict.SUCCESS, "a"), at(103))
    status, changes = advance(SPEC, status, at(104), waiting=0)
    assert [t.reason for t in changes] == [reasons.CIRCUIT_RELEASED]
    assert allowance(SPEC, status) is None and status.release is None


def test_a_counted_failure_during_the_release_reopens_it() -> None:
    status, _ = advance(SPEC, tripped(), at(100), waiting=5)
    status = record_starts(status, "r3", ["probe"], at(100))
    status, _ = record_result(SPEC, status, "r3", report(Verdict.SUCCESS, "probe"), at(101))
    status, changes = record_result(SPEC, status, "r3", report(Verdict.FAILURE, "b"), at(102))
    assert [t.reason for t in changes] == [reasons.CIRCUIT_RELEASE_FAILED]
    assert status.state == OPEN and status.open_seconds == 120


# --- forceState ---------------------------------------------------------------------------------

def test_force_open_holds_everything_until_lifted_then_probes_at_once() -> None:
    forced = CircuitBreakerSpec(key="s3-prod", force_state=ForcedState.OPEN)
    status, changes = advance(forced, CLOSED, at(0), waiting=0)
    assert [t.reason for t in changes] == [reasons.CIRCUIT_FORCED_OPEN]
    assert status.state == OPEN and allowance(forced, status) == 0
    status, changes = advance(forced, status, at(10_000), waiting=0)
    assert status.state == OPEN and not changes  # no timer while forced
    status, changes = advance(SPEC, status, at(10_001), waiting=1)
    assert [t.reason for t in changes] == [reasons.CIRCUIT_FORCE_LIFTED]
    assert status.state == HALF and allowance(SPEC, status) == 1


def test_force_closed_runs_everything_and_never_trips() -> None:
    forced = CircuitBreakerSpec(key="s3-prod", force_state=ForcedState.CLOSED)
    status, changes = advance(forced, tripped(), at(10), waiting=3)
    assert [t.reason for t in changes] == [reasons.CIRCUIT_FORCED_CLOSED]
    status, transitions = feed(status, [Verdict.FAILURE] * 20, spec=forced, start=11)
    assert status.state == SHUT and not transitions and allowance(forced, status) is None
    assert status.consecutive_failures == 20


# --- keys and names -----------------------------------------------------------------------------

def test_the_key_is_the_label_else_the_processor_else_the_image() -> None:
    spec = pipeline(stage("a", breaker={"key": "s3-prod"}),
                    {"name": "b", "processor": "pkg.mod:fn"}, stage("c"),
                    stage("d", breaker={"enabled": False}),
                    defaults={"breaker": {"consecutiveFailures": 3}})
    a, b, c, d = spec.stages
    settings = JobSettings(worker_image="worker:1")
    keys = [breaker_key(s, spec.defaults, stage_image(s, spec, settings)) for s in (a, b, c, d)]
    assert keys == ["s3-prod", "pkg.mod:fn", "busybox", None]
    assert stage_policy(a, spec.defaults).consecutive_failures == 3


def test_object_names_are_dns_labels_that_keep_distinct_keys_apart() -> None:
    names = {breaker_name(k) for k in ("a:b", "a/b", "a-b", "ghcr.io/x/" + "y" * 300)}
    assert len(names) == 4
    assert all(len(n) <= 63 and n.replace("-", "").isalnum() for n in names)
    assert breaker_name("s3-prod") == "s3-prod"


# --- decide() holding stages ----------------------------------------------------------------------

GUARDED = pipeline(stage("a", breaker={"key": "s3-prod"}), stage("b", breaker={"key": "s3-prod"}),
                   stage("c"))


def open_view(half_open: float | None = 60) -> BreakerView:
    return BreakerView(name="s3-prod", state=OPEN, allowance=0,
                       half_open_time=at(half_open) if half_open is not None else None)


def test_an_open_breaker_holds_new_attempts_pending_and_wakes_the_run_at_half_open() -> None:
    f = replace(facts(GUARDED), breakers={"s3-prod": open_view()})
    plan = decide(f, T0)
    assert started(plan) == ["c"]
    stages = plan.status.stages or {}
    for name in ("a", "b"):
        assert (stages[name].phase, stages[name].reason) == (StagePhase.PENDING,
                                                             reasons.CIRCUIT_OPEN)
        assert stages[name].job is None and "s3-prod" in (stages[name].message or "")
    assert plan.breaker_held == {"s3-prod": 2}
    assert plan.requeue_after == 60
    assert [e.reason for e in plan.events].count(reasons.CIRCUIT_OPEN) == 2
    assert not plan.status.phase.finished


def test_a_stage_with_a_fallback_runs_its_fallback_at_once_instead_of_waiting() -> None:
    spec = pipeline(stage("a", breaker={"key": "s3-prod"},
                          fallback={"image": "cached-copy:1", "command": ["restore"]}),
                    stage("b", "a"))
    plan = decide(replace(facts(spec), breakers={"s3-prod": open_view()}), T0)
    cp = (plan.status.stages or {})["a"]
    assert (cp.phase, cp.reason) == (StagePhase.FAILED, reasons.CIRCUIT_OPEN)
    assert cp.fallback is not None and cp.fallback.job is not None
    [job] = plan.create_jobs
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "cached-copy:1"
    assert plan.breaker_held == {} and not plan.status.phase.finished


def test_a_half_open_breaker_lets_one_attempt_through_and_reports_it() -> None:
    half = BreakerView(name="s3-prod", state=HALF, allowance=1)
    plan = decide(replace(facts(GUARDED), breakers={"s3-prod": half}), T0)
    assert sorted(started(plan)) == ["a", "c"]
    assert plan.breaker_starts == {"s3-prod": ["a"]}
    assert plan.breaker_held == {"s3-prod": 1}


def test_a_held_retry_keeps_its_attempts_and_retries_left() -> None:
    spec = pipeline(stage("a", breaker={"key": "s3-prod"}, retry={"limit": 2}))
    f = facts(spec)
    plan = decide(f, T0)
    f = step(f, plan, now=at(1), pods=[pod("a", phase="Failed", exit_code=75)])
    plan = decide(f, at(1))
    assert phases(plan)["a"] == StagePhase.RETRYING
    assert [(r.verdict, r.stage) for r in plan.breaker_reports] == [(Verdict.FAILURE, "a")]
    f = replace(step(f, plan, now=at(100)), breakers={"s3-prod": open_view(None)})
    plan = decide(f, at(100))
    a = (plan.status.stages or {})["a"]
    assert (a.phase, a.reason, a.attempts) == (StagePhase.RETRYING, reasons.CIRCUIT_OPEN, 1)
    assert not plan.create_jobs
    # Released: the retry is attempt 2, as if it had never been held.
    f = replace(step(f, plan, now=at(200)), breakers={})
    plan = decide(f, at(200))
    assert started(plan) == ["a"]
    a = (plan.status.stages or {})["a"]
    assert (a.phase, a.attempts, a.reason) == (StagePhase.RUNNING, 2, None)


def test_finished_attempts_are_reported_with_whether_they_count() -> None:
    spec = pipeline(stage("a"), stage("b"), stage("c", breaker={"enabled": False}))
    f = facts(spec)
    plan = decide(f, T0, JobSettings())
    f = step(f, plan, now=at(5), pods=[pod("a", phase="Failed", exit_code=65),
                                      pod("b"), pod("c", phase="Failed", exit_code=75)])
    plan = decide(f, at(5))
    assert sorted((r.stage, r.key, r.verdict) for r in plan.breaker_reports) == [
        ("a", "busybox", Verdict.IGNORED), ("b", "busybox", Verdict.SUCCESS)]


def test_view_of_a_tripped_breaker_names_when_it_half_opens() -> None:
    shown = view("s3-prod", SPEC, tripped())
    assert shown.allowance == 0 and shown.half_open_time == at(64)
    assert at(64).isoformat() in shown.hold_message("s3-prod")
