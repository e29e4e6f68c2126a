"""Run-level status: phase, the Succeeded condition, progress, ETA, Degraded, and its size."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

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
from kubedag.core.decide import decide
from kubedag.core.runstatus import finish_run, refresh_run_status
from tests.unit.core.factories import T0, at, facts, pipeline, pod, stage, step

S, F, R, P = StagePhase.SUCCEEDED, StagePhase.FAILED, StagePhase.RUNNING, StagePhase.PENDING
KIB = 1024

CHAIN = pipeline(stage("a"), stage("b", "a"), stage("c", "b"), stage("side"),
                 finally_=[stage("fin")])


def ran(start: float, end: float) -> StageCheckpoint:
    return StageCheckpoint(phase=S, start_time=at(start), finish_time=at(end))


def running(start: float) -> StageCheckpoint:
    return StageCheckpoint(phase=R, start_time=at(start))


@pytest.mark.parametrize(("stages", "now", "eta"), [
    # Nothing finished: no estimate.
    ({}, 0, None),
    ({"a": running(0)}, 10, None),
    # a took 60 s; b, c remain on the longest path, then fin: 3 x 60 s.
    ({"a": ran(0, 60)}, 60, 60 + 180),
    # b has run 20 s of its 60 s mean: 40 + 60 (c) + 60 (fin).
    ({"a": ran(0, 60), "b": running(60)}, 80, 80 + 160),
    # b overran its mean: counts as nothing left, not negative.
    ({"a": ran(0, 60), "b": running(60)}, 200, 200 + 120),
    # Mean of 30 and 90 is 60; side done, fin alone remains.
    ({"a": ran(0, 30), "b": ran(30, 120), "c": ran(120, 180), "side": ran(0, 60)}, 180,
     180 + 60),
])
def test_eta_is_the_longest_remaining_path(stages: dict[str, StageCheckpoint], now: float,
                                           eta: float | None) -> None:
    status = PipelineRunStatus(start_time=T0, stages=stages)
    refresh_run_status(status, CHAIN, False, 3, at(now), [])
    assert status.eta == (None if eta is None else at(eta))
    assert status.observed_generation == 3


def test_a_long_run_estimates_its_eta_again_at_each_percent() -> None:
    """200 independent stages, the first 2 took 10 s: 1 % done, the ETA is now plus 10 s. The
    3rd took 100 s: still 1 %, so the estimate stands; with the 4th (2 %) it is made again."""
    spec = pipeline(*[stage(f"s{i:03d}") for i in range(200)])
    stages = {"s000": ran(0, 10), "s001": ran(0, 10)}
    status = PipelineRunStatus(start_time=T0, stages=dict(stages))
    refresh_run_status(status, spec, False, 1, at(10), [])
    assert status.eta == at(20)
    stages["s002"] = ran(0, 100)
    status.stages = dict(stages)
    refresh_run_status(status, spec, False, 1, at(12), [])
    assert status.progress is not None and status.progress.completed == 3
    assert status.eta == at(20)  # not at(52), the mean of 40 s from 12 s
    stages["s003"] = ran(0, 100)
    status.stages = dict(stages)
    refresh_run_status(status, spec, False, 1, at(15), [])
    # Mean (10 + 10 + 100 + 100) / 4 = 55 s, from 15 s.
    assert status.eta == at(70)


@pytest.mark.parametrize(("finished", "total", "percent"), [
    (0, 5, 0), (1, 5, 20), (2, 3, 66), (5, 5, 100),
])
def test_progress_rounds_down(finished: int, total: int, percent: int) -> None:
    spec = pipeline(*[stage(f"s{i}") for i in range(total)])
    status = PipelineRunStatus(stages={f"s{i}": ran(0, 1) for i in range(finished)})
    refresh_run_status(status, spec, False, 1, at(10), [])
    assert status.progress is not None
    assert (status.progress.completed, status.progress.total, status.progress.percent) == \
        (finished, total, percent)


@pytest.mark.parametrize(("suspended", "phase", "reason"), [
    (False, RunPhase.RUNNING, reasons.RUNNING),
    (True, RunPhase.PAUSED, reasons.PAUSED),
])
def test_refresh_sets_phase_and_an_unknown_condition(suspended: bool, phase: RunPhase,
                                                     reason: str) -> None:
    status = PipelineRunStatus()
    refresh_run_status(status, CHAIN, suspended, 1, T0, [])
    assert status.phase == phase
    cond = find_condition(status.conditions, CONDITION_SUCCEEDED)
    assert cond is not None
    assert (cond.status, cond.reason, cond.observed_generation) == \
        (ConditionStatus.UNKNOWN, reason, 1)


def test_unchanged_condition_keeps_its_transition_time() -> None:
    status = PipelineRunStatus()
    refresh_run_status(status, CHAIN, False, 1, T0, [])
    refresh_run_status(status, CHAIN, False, 1, at(100), [])
    cond = find_condition(status.conditions, CONDITION_SUCCEEDED)
    assert cond is not None and cond.last_transition_time == T0
    finish_run(status, RunPhase.FAILED, reasons.STAGE_FAILED, "x", 1, at(200))
    cond = find_condition(status.conditions, CONDITION_SUCCEEDED)
    assert cond is not None and cond.last_transition_time == at(200)


@pytest.mark.parametrize(("phase", "value"), [
    (RunPhase.SUCCEEDED, ConditionStatus.TRUE),
    (RunPhase.FAILED, ConditionStatus.FALSE),
    (RunPhase.CANCELLED, ConditionStatus.FALSE),
])
def test_finish_run(phase: RunPhase, value: ConditionStatus) -> None:
    status = PipelineRunStatus(start_time=T0, eta=at(50), pipeline_spec=CHAIN,
                               stages={"a": ran(0, 1)})
    finish_run(status, phase, "Why", "because", 2, at(40))
    assert status.phase == phase
    assert status.completion_time == at(40)
    assert status.eta is None
    assert status.observed_generation == 2
    assert status.progress is not None and status.progress.completed == 1
    cond = find_condition(status.conditions, CONDITION_SUCCEEDED)
    assert cond is not None
    assert (cond.status, cond.reason, cond.message) == (value, "Why", "because")


def test_finish_run_without_a_start_time_starts_it_now() -> None:
    status = PipelineRunStatus()
    finish_run(status, RunPhase.FAILED, reasons.INVALID_PIPELINE, "bad", 1, T0)
    assert status.start_time == T0


def test_degraded_names_failed_non_critical_stages_only() -> None:
    spec = pipeline(stage("opt", critical=False), stage("crit"), stage("opt2", critical=False))
    status = PipelineRunStatus(stages={
        "opt": StageCheckpoint(phase=F), "crit": StageCheckpoint(phase=F),
        "opt2": StageCheckpoint(phase=S)})
    refresh_run_status(status, spec, False, 1, T0, [])
    degraded = find_condition(status.conditions, reasons.CONDITION_DEGRADED)
    assert degraded is not None
    assert degraded.message.endswith(": opt")


def test_no_degraded_condition_without_failures() -> None:
    status = PipelineRunStatus(stages={"a": ran(0, 1)})
    refresh_run_status(status, CHAIN, False, 1, T0, [])
    assert find_condition(status.conditions, reasons.CONDITION_DEGRADED) is None


def test_waiting_is_pending() -> None:
    status = PipelineRunStatus()
    refresh_run_status(status, None, False, 1, T0, [], waiting=("PipelineNotFound", "no"))
    assert status.phase == RunPhase.PENDING
    cond = find_condition(status.conditions, CONDITION_SUCCEEDED)
    assert cond is not None and (cond.reason, cond.message) == ("PipelineNotFound", "no")


def test_thousand_stage_run_status_is_compact() -> None:
    """A real decide() run of 1,000 stages (every one Succeeded, small outputs), then measured."""
    count = 1000
    spec = pipeline(*[stage(f"extract-page-batch-{i:04d}", critical=i % 2 == 0,
                            retry={"limit": 2})
                      for i in range(count)],
                    defaults={"image": "ghcr.io/kubedag/worker:0.1.0"})
    f = facts(spec)
    now = T0
    plan = decide(f, now)
    for _ in range(10):
        if plan.status.phase.finished:
            break
        now += timedelta(seconds=1)
        pods = [pod(name, outputs={"pages": 12, "chunks": 40},
                    usage={"cpuSeconds": 12.5, "peakRssBytes": 123_456_789}, finished=now)
                for name, cp in (plan.status.stages or {}).items() if cp.phase == R]
        f = step(f, plan, now=now, pods=pods)
        plan = decide(f, now)
    assert plan.status.phase == RunPhase.SUCCEEDED
    assert set(cp.phase for cp in (plan.status.stages or {}).values()) == {S}
    assert len(plan.status.stages or {}) == count
    full = len(json.dumps(to_k8s(plan.status), separators=(",", ":")))
    checkpoints = len(json.dumps(to_k8s(plan.status.model_copy(update={"pipeline_spec": None})),
                                 separators=(",", ":")))
    print(f"\n1,000-stage run status: {checkpoints / KIB:.1f} KiB without the pipeline "
          f"snapshot, {full / KIB:.1f} KiB with it")
    # The checkpoints and run-level fields are what grows with progress: the 256 KiB budget.
    assert checkpoints < 256 * KIB, f"{checkpoints / KIB:.1f} KiB"
    # The snapshot (status.pipelineSpec) comes on top; the object must stay far below etcd's
    # 1.5 MiB limit.
    assert full < 1024 * KIB, f"{full / KIB:.1f} KiB"
