"""Kueue: a run with a queue creates its stage Jobs suspended and labelled, and a stage waits
Pending/Queued (with Kueue's word) until its Job is admitted; queue time is kept apart."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kubedag.api import PipelineRunSpec, RunPhase, StageCheckpoint, StagePhase, find_condition
from kubedag.core import reasons
from kubedag.core.decide import RunFacts, decide
from kubedag.core.jobspec import (
    KUEUE_PRIORITY_CLASS_LABEL,
    KUEUE_QUEUE_LABEL,
    JobSettings,
    Queueing,
    build_job,
)
from kubedag.core.naming import job_name
from kubedag.core.observe import WorkloadSummary, summarize_job, summarize_workload
from kubedag.core.plan import Plan
from kubedag.core.runview import RunResult
from tests.unit.core.factories import (
    IDENTITY,
    RUN,
    T0,
    at,
    facts,
    job,
    phases,
    pipeline,
    pod,
    reasons_of,
    stage,
    started,
    step,
)

P, R, S, CANC = StagePhase.PENDING, StagePhase.RUNNING, StagePhase.SUCCEEDED, StagePhase.CANCELLED
GPU = {"gpu": 8}
NO_QUOTA = ("couldn't assign flavors to pod set main: insufficient quota for nvidia.com/gpu in "
            "flavor default, 8 more needed")
QUEUED_RUN = {"queueName": "team-a", "priorityClassName": "high"}


def checkpoint(plan: Plan, name: str) -> StageCheckpoint:
    return (plan.status.stages or {})[name]


def pending_workload(stage_name: str, message: str = NO_QUOTA) -> WorkloadSummary:
    return WorkloadSummary(name=f"job-{stage_name}-1-abcde", job=job_name(RUN, stage_name, 1),
                           reason="Pending", message=message)


def admitted_workload(stage_name: str, seconds: float) -> WorkloadSummary:
    return WorkloadSummary(name=f"job-{stage_name}-1-abcde", job=job_name(RUN, stage_name, 1),
                           admitted=True, admitted_time=at(seconds))


# --- the Jobs ------------------------------------------------------------------------------------


def _job(run_spec: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    spec = pipeline(stage("train", resources={"gpu": 4}, timeoutSeconds=60),
                    defaults=defaults or None)
    run = PipelineRunSpec.model_validate({"pipelineSpec": spec, **run_spec})
    return build_job(run=IDENTITY, pipeline=spec, stage=spec.stages[0], attempt=1, params={},
                     outputs={}, settings=JobSettings(), queueing=Queueing.of(run, spec))


def test_without_a_queue_nothing_changes() -> None:
    manifest = _job({})
    assert "suspend" not in manifest["spec"]
    assert not [k for k in manifest["metadata"]["labels"] if k.startswith("kueue.x-k8s.io/")]
    # A priority class means nothing without a queue.
    assert _job({"priorityClassName": "high"}) == manifest


def test_a_queued_job_is_created_suspended_with_kueues_labels_on_the_job_only() -> None:
    manifest = _job(QUEUED_RUN)
    assert manifest["spec"]["suspend"] is True
    labels = manifest["metadata"]["labels"]
    assert labels[KUEUE_QUEUE_LABEL] == "team-a"
    assert labels[KUEUE_PRIORITY_CLASS_LABEL] == "high"
    # Never on the pods: Kueue's pod integration would take each for a workload of its own.
    pod_labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert KUEUE_QUEUE_LABEL not in pod_labels and KUEUE_PRIORITY_CLASS_LABEL not in pod_labels
    # The deadline is the Job controller's, which starts it only when Kueue unsuspends the Job.
    assert manifest["spec"]["activeDeadlineSeconds"] == 60
    assert summarize_job(manifest).suspended


def test_the_pipelines_default_queue_applies_unless_the_run_names_its_own() -> None:
    assert _job({}, queueName="shared")["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "shared"
    labels = _job({"queueName": "mine"}, queueName="shared")["metadata"]["labels"]
    assert labels[KUEUE_QUEUE_LABEL] == "mine"
    assert KUEUE_PRIORITY_CLASS_LABEL not in labels


def test_a_fan_out_stage_is_one_suspended_indexed_job_so_one_workload() -> None:
    spec = pipeline(stage("embed", fanOut={"items": list(range(10)), "batchSize": 2,
                                           "parallelism": 5}, resources={"gpu": 1}))
    plan = decide(facts(spec, run_spec=QUEUED_RUN), T0)
    assert len(plan.create_jobs) == 1
    job_spec = plan.create_jobs[0]["spec"]
    assert (job_spec["completionMode"], job_spec["completions"], job_spec["parallelism"],
            job_spec["suspend"]) == ("Indexed", 5, 5, True)


# --- Workloads -----------------------------------------------------------------------------------


def _workload(conditions: list[dict[str, Any]], owner_kind: str = "Job") -> dict[str, Any]:
    return {"metadata": {"name": "job-run-train-1-4f2a1", "namespace": "ns",
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": owner_kind,
                                              "name": "run-train-1", "uid": "j1",
                                              "controller": True}]},
            "status": {"conditions": conditions}}


def test_a_workload_summary_has_kueues_reason_until_admitted() -> None:
    pending = summarize_workload(_workload([
        {"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": NO_QUOTA,
         "lastTransitionTime": "2024-06-01T12:00:01Z"}]))
    assert pending == WorkloadSummary(name="job-run-train-1-4f2a1", job="run-train-1",
                                      reason="Pending", message=NO_QUOTA)
    checks = summarize_workload(_workload([
        {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved"},
        {"type": "Admitted", "status": "False", "reason": "NoChecks"}]))
    assert checks is not None and not checks.admitted
    assert checks.message == "quota reserved, waiting for admission checks"
    admitted = summarize_workload(_workload([
        {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved"},
        {"type": "Admitted", "status": "True", "reason": "Admitted",
         "lastTransitionTime": "2024-06-01T12:00:30Z"}]))
    assert admitted is not None and admitted.admitted and admitted.admitted_time == at(30)
    assert admitted.message is None
    assert summarize_workload(_workload([], owner_kind="JobSet")) is None


# --- decide: Queued, then Running ----------------------------------------------------------------


def _queued_pass() -> tuple[RunFacts, Plan]:
    f = facts(pipeline(stage("train", resources=GPU), stage("report", "train")),
              run_spec=QUEUED_RUN)
    return f, decide(f, T0)


def test_a_queued_stage_is_pending_with_reason_queued_and_its_job_created() -> None:
    _, plan = _queued_pass()
    assert started(plan) == ["train"]
    cp = checkpoint(plan, "train")
    assert (cp.phase, cp.reason, cp.job, cp.attempts) == (P, reasons.QUEUED, "run-train-1", 1)
    assert cp.queued and cp.queued_time == T0 and cp.start_time is None
    assert cp.message == "waiting for Kueue to admit Job run-train-1 from LocalQueue team-a"
    assert reasons_of(plan) == [reasons.RUN_STARTED, reasons.STAGE_QUEUED]
    assert plan.status.phase == RunPhase.RUNNING
    succeeded = find_condition(plan.status.conditions, "Succeeded")
    assert succeeded is not None
    assert succeeded.message == "0/2 stages done; 1 stage(s) queued for Kueue's admission"


def test_kueues_message_shows_while_waiting_and_the_job_is_never_created_twice() -> None:
    f, plan = _queued_pass()
    for seconds in (5, 10, 15):
        f = step(f, plan, now=at(seconds), jobs=[job("train", suspended=True)],
                 workloads={"run-train-1": pending_workload("train")})
        plan = decide(f, at(seconds))
        assert not plan.create_jobs and not plan.delete_jobs
        cp = checkpoint(plan, "train")
        assert (cp.phase, cp.reason, cp.message) == (P, reasons.QUEUED, NO_QUOTA)
        assert cp.queued_time == T0
        assert "report" not in (plan.status.stages or {})  # its dependency has not run
    assert reasons_of(plan) == []


def test_admission_starts_the_stage_and_the_wait_is_queue_time_not_run_time() -> None:
    f, plan = _queued_pass()
    f = step(f, plan, now=at(5), jobs=[job("train", suspended=True)],
             workloads={"run-train-1": pending_workload("train")})
    plan = decide(f, at(5))
    # Kueue admitted the Workload at 42 s and unsuspended the Job (the Job controller then
    # set its startTime, a moment later).
    f = step(f, plan, now=at(45), jobs=[job("train", started=at(43))],
             workloads={"run-train-1": admitted_workload("train", 42)})
    plan = decide(f, at(45))
    cp = checkpoint(plan, "train")
    assert (cp.phase, cp.reason, cp.message, cp.queued_time) == (R, None, None, None)
    assert (cp.start_time, cp.queue_seconds) == (at(42), 42)
    assert reasons_of(plan) == [reasons.STAGE_STARTED]
    f = step(f, plan, now=at(100), pods=[pod("train", finished=at(100))])
    plan = decide(f, at(100))
    cp = checkpoint(plan, "train")
    assert cp.phase == S and cp.queue_seconds == 42
    assert cp.finish_time is not None and cp.start_time is not None
    assert (cp.finish_time - cp.start_time).total_seconds() == 58  # run time alone
    # The next stage is queued in its turn.
    assert checkpoint(plan, "report").queued


def test_without_a_workload_the_jobs_own_start_time_is_the_admission() -> None:
    f, plan = _queued_pass()
    f = step(f, plan, now=at(20), jobs=[job("train", started=at(12))])
    plan = decide(f, at(20))
    cp = checkpoint(plan, "train")
    assert (cp.phase, cp.start_time, cp.queue_seconds) == (R, at(12), 12)


def test_a_stage_waiting_in_kueue_keeps_the_run_going_and_counts_for_max_parallel() -> None:
    spec = pipeline(stage("a", resources=GPU), stage("b", resources=GPU), stage("c"),
                    stage("d", "a"), maxParallelStages=2)
    f = facts(spec, run_spec=QUEUED_RUN)
    plan = decide(f, T0)
    assert started(plan) == ["a", "b"]
    f = step(f, plan, now=at(60), jobs=[job("a", suspended=True), job("b", suspended=True)])
    plan = decide(f, at(60))
    assert not plan.create_jobs  # two Jobs wait in Kueue: maxParallelStages is used up
    assert phases(plan) == {"a": P, "b": P}
    assert not plan.status.phase.finished


def test_a_queued_run_is_not_held_back_by_the_operators_stage_budget() -> None:
    spec = pipeline(stage("a"), stage("b"))
    no_room = facts(spec)
    no_room = replace(no_room, stage_room=0)
    plan = decide(no_room, T0)
    assert not plan.create_jobs and plan.waiting_for_room == 2 and plan.uses_stage_budget
    queued = replace(facts(spec, run_spec=QUEUED_RUN), stage_room=0)
    plan = decide(queued, T0)
    assert started(plan) == ["a", "b"] and plan.waiting_for_room == 0
    assert not plan.uses_stage_budget


def test_an_evicted_stage_waits_again_and_its_second_wait_adds_to_queue_time() -> None:
    f, plan = _queued_pass()
    f = step(f, plan, now=at(10), jobs=[job("train", started=at(10))],
             workloads={"run-train-1": admitted_workload("train", 10)})
    plan = decide(f, at(10))
    assert checkpoint(plan, "train").phase == R
    preempted = "Preempted to accommodate a workload (UID: w2) due to prioritization"
    # Kueue suspends the Job again; the Job controller deletes its pod (which fails).
    f = step(f, plan, now=at(30), jobs=[job("train", suspended=True)],
             pods=[pod("train", phase="Failed")],
             workloads={"run-train-1": pending_workload("train", preempted)})
    plan = decide(f, at(30))
    cp = checkpoint(plan, "train")
    assert (cp.phase, cp.reason, cp.message, cp.attempts) == (P, reasons.QUEUED, preempted, 1)
    assert cp.queued_time == at(30) and cp.start_time == at(10)
    assert reasons_of(plan) == [reasons.STAGE_EVICTED]
    f = step(f, plan, now=at(50), jobs=[job("train", started=at(45))], pods=[],
             workloads={"run-train-1": admitted_workload("train", 45)})
    plan = decide(f, at(50))
    cp = checkpoint(plan, "train")
    assert (cp.phase, cp.queue_seconds, cp.start_time) == (R, 10 + 15, at(10))


def test_cancelling_a_run_deletes_the_jobs_waiting_in_kueue() -> None:
    f, plan = _queued_pass()
    f = step(f, plan, now=at(5), jobs=[job("train", suspended=True)])
    f = replace(f, spec=f.spec.model_copy(update={"cancel": True}))
    plan = decide(f, at(5))
    assert plan.delete_jobs == ["run-train-1"]
    assert phases(plan) == {"train": CANC, "report": StagePhase.SKIPPED}
    assert plan.status.phase == RunPhase.CANCELLED


def test_a_suspended_job_adopted_after_a_crash_is_queued_not_running() -> None:
    f = facts(pipeline(stage("train", resources=GPU)), run_spec=QUEUED_RUN,
              jobs=[job("train", suspended=True)])
    plan = decide(f, at(20))
    assert not plan.create_jobs
    cp = checkpoint(plan, "train")
    assert cp.queued and cp.queued_time == T0 and cp.start_time is None


def test_a_queued_jobs_disappearance_fails_the_attempt() -> None:
    f, plan = _queued_pass()
    f = step(f, plan, now=at(60), jobs=[])
    f = replace(f, jobs={})
    plan = decide(f, at(60))
    cp = checkpoint(plan, "train")
    assert (cp.phase, cp.reason, cp.queued_time) == (StagePhase.FAILED, reasons.JOB_LOST, None)


def test_the_run_view_shows_queue_time_the_current_wait_included() -> None:
    f, plan = _queued_pass()
    view = RunResult.from_status(RUN, "ns", plan.status, now=at(25))
    assert view.stages["train"].queue_seconds == 25
    assert view.stages["train"].run_seconds is None  # not started: it has not been admitted
    assert view.stages["report"].queue_seconds is None
    f = step(f, plan, now=at(45), jobs=[job("train", started=at(40))])
    plan = decide(f, at(45))
    view = RunResult.from_status(RUN, "ns", plan.status, now=at(50))
    train = view.stages["train"]
    assert (train.queue_seconds, train.wait_seconds, train.run_seconds) == (40, 40, 10)
    assert view.to_dict()["stages"]["train"]["queueSeconds"] == 40
