"""A stage whose pod cannot be placed: Pending with the scheduler's word, the run's Schedulable
condition, one Warning Event, unschedulableTimeoutSeconds; and the fit checks of dry runs and
Pipelines against the nodes. Facts in, plan out."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from kubedag.api import ConditionStatus, RunPhase, StageCheckpoint, StagePhase, find_condition
from kubedag.core import reasons
from kubedag.core.decide import decide
from kubedag.core.estimate import NodeCapacity, Taint, node_capacity, unschedulable_stages
from kubedag.core.feedback import record_create_results
from kubedag.core.observe import Outcome, PodSummary, attempt_outcome, summarize_pod
from kubedag.core.pipelinestatus import pipeline_status
from kubedag.core.plan import Plan
from tests.unit.core.factories import T0, at, facts, job, pipeline, pod, stage, started, step

P, R, F, S = StagePhase.PENDING, StagePhase.RUNNING, StagePhase.FAILED, StagePhase.SUCCEEDED
SCHEDULER = ("0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) didn't match "
             "Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption "
             "is not helpful for scheduling.")
GI = 2.0**30


def unplaced(stage_name: str, since: Any = T0, attempt: int = 1,
             index: int | None = None) -> PodSummary:
    return replace(pod(stage_name, attempt, phase="Pending", index=index), started=None,
                   unschedulable_message=SCHEDULER, unschedulable_since=since)


def cp(plan: Plan, name: str) -> StageCheckpoint:
    return (plan.status.stages or {})[name]


def schedulable(plan: Plan) -> Any:
    return find_condition(plan.status.conditions, reasons.CONDITION_SCHEDULABLE)


# --- what the pod says -------------------------------------------------------------------------


def test_summarize_pod_reads_the_schedulers_verdict() -> None:
    body = {"metadata": {"name": "run-a-1-xyz", "creationTimestamp": "2024-06-01T12:00:00Z",
                         "labels": {"job-name": "run-a-1", "kubedag.io/stage": "a"}},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": SCHEDULER, "lastTransitionTime": "2024-06-01T12:00:03Z"}]}}
    summary = summarize_pod(body)
    assert (summary.unschedulable, summary.unschedulable_message,
            summary.unschedulable_since) == (True, SCHEDULER, at(3))
    body["status"]["conditions"][0].update(status="True", reason=None, message=None)
    assert not summarize_pod(body).unschedulable
    # Gated pods (Kueue's pod integration) wait for something else, not for a node.
    body["status"]["conditions"][0].update(status="False", reason="SchedulingGated")
    assert not summarize_pod(body).unschedulable


def test_an_attempt_no_pod_of_which_is_placed_is_pending_until_its_timeout() -> None:
    result = attempt_outcome(job("a"), [unplaced("a", since=at(10))])
    assert (result.outcome, result.reason, result.message) == (
        Outcome.PENDING, reasons.UNSCHEDULABLE, SCHEDULER)
    timeout = timedelta(seconds=60)
    waiting = attempt_outcome(job("a"), [unplaced("a", since=at(10))], now=at(69),
                              unschedulable_timeout=timeout)
    assert (waiting.outcome, waiting.recheck_at, waiting.stop_job) == (
        Outcome.PENDING, at(70), False)
    failed = attempt_outcome(job("a"), [unplaced("a", since=at(10))], now=at(70),
                             unschedulable_timeout=timeout)
    assert (failed.outcome, failed.reason, failed.stop_job) == (
        Outcome.FAILED, reasons.UNSCHEDULABLE, True)
    assert SCHEDULER in (failed.message or "") and "60 s" in (failed.message or "")
    placed = attempt_outcome(job("a"), [pod("a", phase="Pending")], now=at(1000),
                             unschedulable_timeout=timeout)
    assert (placed.outcome, placed.message) == (Outcome.RUNNING, None)


def test_a_fan_out_with_some_pods_placed_is_running_and_never_times_out() -> None:
    pods = [pod("fan", index=0, phase="Running"), unplaced("fan", index=1),
            unplaced("fan", index=2)]
    result = attempt_outcome(job("fan", completions=3), pods, now=at(10_000),
                             unschedulable_timeout=timedelta(seconds=60))
    assert result.outcome is Outcome.RUNNING
    assert result.message == f"2 pod(s) unschedulable: {SCHEDULER}"


# --- decide ------------------------------------------------------------------------------------


def test_an_unschedulable_stage_is_pending_says_why_once_and_runs_when_placed() -> None:
    f = facts(pipeline(stage("train", resources={"gpu": 16}), stage("after", "train"),
                       maxParallelStages=1))
    plan = decide(f, T0)
    assert started(plan) == ["train"]
    f = step(f, plan, now=at(5), pods=[unplaced("train", since=at(2))])
    plan = decide(f, at(5))
    train = cp(plan, "train")
    assert (train.phase, train.reason, train.message, train.job) == (
        P, reasons.UNSCHEDULABLE, SCHEDULER, "run-train-1")
    assert plan.create_jobs == [] and plan.delete_jobs == []
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", reasons.UNSCHEDULABLE)]
    assert SCHEDULER in plan.events[0].message and "train" in plan.events[0].message
    condition = schedulable(plan)
    assert (condition.status, condition.reason) == (
        ConditionStatus.FALSE, reasons.STAGES_UNSCHEDULABLE)
    assert f"train: {SCHEDULER}" in condition.message
    assert plan.status.phase == RunPhase.RUNNING

    # The next pass: still waiting, no second Event, no second Job.
    f = step(f, plan, now=at(30), pods=[unplaced("train", since=at(2))])
    plan = decide(f, at(30))
    assert (cp(plan, "train").phase, plan.events, plan.create_jobs) == (P, [], [])

    # Placed (a node joined): Running, the reason and message go, the condition clears.
    f = step(f, plan, now=at(40), pods=[pod("train", phase="Running")])
    plan = decide(f, at(40))
    train = cp(plan, "train")
    assert (train.phase, train.reason, train.message) == (R, None, None)
    condition = schedulable(plan)
    assert (condition.status, condition.reason) == (
        ConditionStatus.TRUE, reasons.STAGES_SCHEDULED)
    f = step(f, plan, now=at(50), pods=[pod("train")])
    plan = decide(f, at(50))
    assert (cp(plan, "train").phase, started(plan)) == (S, ["after"])


def test_a_stage_waiting_for_a_node_holds_its_place_under_max_parallel_stages() -> None:
    f = facts(pipeline(stage("big", resources={"gpu": 16}), stage("small"),
                       maxParallelStages=1))
    plan = decide(f, T0)
    assert started(plan) == ["big"]
    f = step(f, plan, now=at(5), pods=[unplaced("big")])
    plan = decide(f, at(5))
    assert started(plan) == []
    assert (cp(plan, "big").phase, "small" in (plan.status.stages or {})) == (P, False)


def test_runs_without_such_a_wait_get_no_schedulable_condition() -> None:
    f = facts(pipeline(stage("a")))
    plan = decide(f, T0)
    f = step(f, plan, now=at(5), pods=[pod("a", phase="Running")])
    assert schedulable(decide(f, at(5))) is None


@pytest.mark.parametrize(("stage_fields", "defaults"), [
    ({"unschedulableTimeoutSeconds": 60}, {}),
    ({}, {"unschedulableTimeoutSeconds": 60}),
    ({"unschedulableTimeoutSeconds": 60}, {"unschedulableTimeoutSeconds": 3600}),
])
def test_the_unschedulable_timeout_fails_the_stage_without_a_retry(
        stage_fields: dict[str, Any], defaults: dict[str, Any]) -> None:
    spec = pipeline(stage("train", retry={"limit": 3}, **stage_fields), stage("after", "train"),
                    defaults=defaults)
    f = facts(spec)
    plan = decide(f, T0)
    f = step(f, plan, now=at(30), pods=[unplaced("train", since=at(1))])
    plan = decide(f, at(30))
    assert cp(plan, "train").phase == P
    assert plan.requeue_after == pytest.approx(31)  # wakes when the timeout runs out
    f = step(f, plan, now=at(61), pods=[unplaced("train", since=at(1))])
    plan = decide(f, at(61))
    train = cp(plan, "train")
    assert (train.phase, train.reason, train.attempts) == (F, reasons.UNSCHEDULABLE, 1)
    assert plan.delete_jobs == ["run-train-1"] and plan.create_jobs == []
    assert plan.status.phase == RunPhase.FAILED
    assert any("(Unschedulable) after 1 attempt(s) (not retryable)" in e.message
               for e in plan.events)


def test_cancelling_a_run_deletes_the_job_of_a_stage_waiting_for_a_node() -> None:
    f = facts(pipeline(stage("train")))
    plan = decide(f, T0)
    f = step(f, plan, now=at(5), pods=[unplaced("train")])
    plan = decide(f, at(5))
    f = step(f, plan, now=at(6), pods=[unplaced("train")])
    f = replace(f, spec=f.spec.model_copy(update={"cancel": True}))
    plan = decide(f, at(6))
    assert plan.delete_jobs == ["run-train-1"]
    assert (cp(plan, "train").phase, plan.status.phase) == (
        StagePhase.CANCELLED, RunPhase.CANCELLED)


# --- fit against the nodes: dry run, Pipeline status, the shared check -------------------------

NODES = [
    NodeCapacity("kwok-cpu-0", {"type": "kwok"}, {"cpu": 32.0, "memory": 128 * GI}),
    NodeCapacity("kwok-gpu-0", {"type": "kwok"},
                 {"cpu": 32.0, "memory": 128 * GI, "nvidia.com/gpu": 4.0}),
]


def test_a_dry_run_fails_a_stage_that_fits_no_node_naming_the_largest_node() -> None:
    spec = pipeline(stage("prep"), stage("train", "prep", resources={"gpu": 16}))
    f = replace(facts(spec, run_spec={"dryRun": True}), nodes=NODES)
    plan = decide(f, T0)
    assert len(plan.create_jobs) == 2  # the API server still checks every Job
    record_create_results(plan, {"prep": None, "train": None}, T0)
    train, prep = cp(plan, "train"), cp(plan, "prep")
    assert (train.phase, train.reason) == (F, reasons.UNSCHEDULABLE)
    assert "kwok-gpu-0" in (train.message or "") and "nvidia.com/gpu 4" in (train.message or "")
    assert (prep.phase, prep.reason) == (P, None)
    assert plan.status.phase == RunPhase.FAILED
    succeeded = find_condition(plan.status.conditions, "Succeeded")
    assert succeeded.reason == reasons.DRY_RUN_FAILED and "train" in succeeded.message

    # Every stage fits: the dry run succeeds; no nodes known (None): no fit check at all.
    for nodes in (NODES, None):
        fits = replace(facts(pipeline(stage("prep")), run_spec={"dryRun": True}), nodes=nodes)
        plan = decide(fits, T0)
        record_create_results(plan, {"prep": None}, T0)
        assert plan.status.phase == RunPhase.SUCCEEDED


def test_a_rejected_job_outranks_the_fit_check_in_a_dry_run() -> None:
    spec = pipeline(stage("train", resources={"gpu": 16}))
    plan = decide(replace(facts(spec, run_spec={"dryRun": True}), nodes=NODES), T0)
    record_create_results(plan, {"train": "exceeded quota"}, T0)
    assert cp(plan, "train").reason is None
    assert "exceeded quota" in (cp(plan, "train").message or "")


def pipeline_spec(*stages: dict[str, Any]) -> dict[str, Any]:
    return {"stages": list(stages)}


def test_the_pipelines_fits_condition() -> None:
    spec = pipeline_spec(stage("prep"), stage("train", resources={"gpu": 16}))
    status = pipeline_status(spec, 3, None, T0, NODES)
    fits = next(c for c in status["conditions"] if c["type"] == reasons.CONDITION_FITS)
    assert (fits["status"], fits["reason"], fits["observedGeneration"]) == (
        "False", reasons.NO_NODE_FITS, 3)
    assert fits["message"] == ("Fits no node: stage 'train' requests nvidia.com/gpu 16, more "
                               "than any node allocates; the largest node, kwok-gpu-0, has "
                               "nvidia.com/gpu 4")
    valid = next(c for c in status["conditions"] if c["type"] == "Valid")
    assert valid["status"] == "True"  # nodes change: fitting none now is not invalid

    # A bigger node joins: the same Pipeline fits.
    bigger = [*NODES, NodeCapacity("big", {}, {"nvidia.com/gpu": 16.0})]
    later = pipeline_status(spec, 3, status, at(60), bigger)
    fits = next(c for c in later["conditions"] if c["type"] == reasons.CONDITION_FITS)
    assert (fits["status"], fits["reason"]) == ("True", reasons.STAGES_FIT)

    # Nodes unknown, or an invalid Pipeline: no Fits condition.
    assert [c["type"] for c in pipeline_status(spec, 1, None, T0)["conditions"]] == ["Valid"]
    broken = pipeline_spec(stage("a", "missing"))
    assert [c["type"] for c in pipeline_status(broken, 1, None, T0, NODES)["conditions"]] == [
        "Valid"]


def test_node_capacity_reads_the_api_object() -> None:
    body = {"metadata": {"name": "gpu-1", "labels": {"pool": "gpu"}},
            "spec": {"taints": [
                {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
                {"key": "soft", "effect": "PreferNoSchedule"}]},
            "status": {"allocatable": {"cpu": "7500m", "memory": "30Gi", "nvidia.com/gpu": "8",
                                       "pods": "110"}}}
    node = node_capacity(body)
    assert node == NodeCapacity(
        "gpu-1", {"pool": "gpu"},
        {"cpu": 7.5, "memory": 30 * GI, "nvidia.com/gpu": 8.0, "pods": 110.0},
        (Taint("nvidia.com/gpu", "present", "NoSchedule"),))
    assert node_capacity({**body, "spec": {"unschedulable": True}}) is None  # cordoned


@pytest.mark.parametrize(("tolerations", "fits"), [
    ([], False),
    ([{"key": "nvidia.com/gpu", "operator": "Exists"}], True),
    ([{"key": "nvidia.com/gpu", "value": "present"}], True),
    ([{"key": "nvidia.com/gpu", "value": "absent"}], False),
    ([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}], False),
    ([{"operator": "Exists"}], True),
])
def test_taints_keep_stages_off_nodes_unless_tolerated(tolerations: list[dict[str, Any]],
                                                       fits: bool) -> None:
    tainted = [NodeCapacity("gpu-1", {}, {"nvidia.com/gpu": 8.0},
                            (Taint("nvidia.com/gpu", "present", "NoSchedule"),))]
    spec = pipeline(stage("train", resources={"gpu": 1}, tolerations=tolerations))
    unfit = unschedulable_stages(spec, tainted)
    assert (unfit == []) is fits
    if not fits:
        assert str(unfit[0]) == ("stage 'train' (requests nvidia.com/gpu 1): every node with the "
                                 "labels of its nodeSelector has a taint it does not tolerate "
                                 "(nvidia.com/gpu=present:NoSchedule on gpu-1)")


def test_no_node_at_all() -> None:
    unfit = unschedulable_stages(pipeline(stage("a")), [])
    assert str(unfit[0]) == "stage 'a' (requests nothing): there is no schedulable node"

