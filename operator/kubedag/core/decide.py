"""decide(facts, now) -> Plan: the whole reconcile decision for one PipelineRun, with no I/O.

Like the Job controller's syncJob, one pass folds what was observed (Jobs and pods) into the
stage checkpoints, decides what starts, stops or retries, and derives the run's phase,
conditions, progress and ETA. The shell executes the plan and writes the status once.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kubedag.api import (
    FanOutStatus,
    PipelineRunSpec,
    PipelineRunStatus,
    PipelineSpec,
    RetryPolicy,
    RunPhase,
    Stage,
    StageCheckpoint,
    StagePhase,
    Workspace,
    WorkspaceStatus,
)
from kubedag.api.cache import RunCacheMode, StageCacheStatus
from kubedag.core import reasons
from kubedag.core.breaker import AttemptReport, BreakerView, breaker_key, classify, stage_policy
from kubedag.core.breaker import thresholds_of as breaker_thresholds
from kubedag.core.cache import (
    EMPTY_CACHE,
    CacheIndex,
    Hit,
    StageInputs,
    Wait,
    age,
    changes_between,
    entry_manifest,
    look_up,
    stage_cache,
    uses_cache,
)
from kubedag.core.dag import build_from_pairs
from kubedag.core.estimate import NodeCapacity, unschedulable_stages
from kubedag.core.expressions import StageStatus
from kubedag.core.fallback import (
    adopt_fallback,
    apply_fallback_result,
    effective_outputs,
    effective_phase,
    effective_reason,
    failure_note,
    fallback_active,
    fallback_in_flight,
    recovered_stages,
    settle_unstarted_fallbacks,
    start_due_fallbacks,
    start_fallback,
    stop_fallback,
)
from kubedag.core.jobspec import (
    JobSettings,
    Queueing,
    RunIdentity,
    build_claim,
    build_job,
    stage_image,
)
from kubedag.core.memo import SameInputs
from kubedag.core.naming import INLINE_PIPELINE, job_name, workspace_claim_name
from kubedag.core.observe import (
    AttemptResult,
    JobSummary,
    Outcome,
    PodSummary,
    WorkloadSummary,
    attempt_outcome,
)
from kubedag.core.params import resolve_params
from kubedag.core.plan import Event, Plan, clip, short_list
from kubedag.core.runstatus import finish_run, refresh_run_status
from kubedag.core.stagecheck import (
    check_pipeline,
    evaluate_when,
    stages_read_by,
    stages_watched_by,
)
from kubedag.core.stageorder import all_in_order, pipeline_order

# A Job we created may not be in the watch cache yet; until this much time has passed, its
# absence is the cache lagging, not the Job being lost.
CREATE_GRACE = timedelta(seconds=30)
MAX_CREATES_PER_PASS = 250
OUTPUTS_BUDGET = 512 * 1024
PIPELINE_LOOKUP_PATIENCE = timedelta(seconds=60)
# How long a pod may fail to start its container (image pull, configuration error) before
# its attempt fails; the operator's KUBEDAG_START_FAILURE_GRACE_SECONDS.
START_FAILURE_GRACE = timedelta(seconds=90)
# How often a stage waiting for another run's identical stage looks for its cached result.
CACHE_WAIT_POLL = timedelta(seconds=2)


@dataclass(frozen=True)
class RunFacts:
    """Everything decide() may look at, gathered by the shell."""

    identity: RunIdentity
    generation: int
    created: datetime
    spec: PipelineRunSpec
    status: PipelineRunStatus
    # The referenced Pipeline's spec (None: not found), ignored once the run has a snapshot.
    referenced_pipeline: PipelineSpec | None
    jobs: Mapping[str, JobSummary]
    pods: Sequence[PodSummary]
    # Jobs this operator created recently: absent from the cache is not yet "lost".
    recently_created: frozenset[str] = frozenset()
    # Checkpoints of spec.resumeFrom's run (None when not requested or not found), with the
    # pipeline it ran and its resolved params (None: unknown, stages are compared by name only).
    resume_checkpoints: Mapping[str, StageCheckpoint] | None = None
    resume_pipeline: PipelineSpec | None = None
    resume_params: Mapping[str, Any] | None = None
    # Stages this run may start under the operator-wide budget (None: no budget).
    stage_room: int | None = None
    start_failure_grace: timedelta = START_FAILURE_GRACE
    # The nodes pods may land on now (None: unknown): a dry run reports stages that fit none.
    nodes: Sequence[NodeCapacity] | None = None
    # Kueue's Workloads of the run's Jobs, by Job name (empty without Kueue).
    workloads: Mapping[str, WorkloadSummary] = field(default_factory=dict)
    # The stage cache's entries (read only): consulted for stages with a `cache`.
    cache: CacheIndex = EMPTY_CACHE
    # The circuit breakers of the run's namespace that limit attempts now, by key (read-only;
    # a key that is absent lets every attempt start). See kubedag.core.breaker.
    breakers: Mapping[str, BreakerView] = field(default_factory=dict)


@dataclass
class _Pass:
    facts: RunFacts
    now: datetime
    settings: JobSettings
    status: PipelineRunStatus
    pipeline: PipelineSpec
    params: dict[str, Any]
    checkpoints: dict[str, StageCheckpoint]
    plan: Plan
    # The Kueue queue the run's new Jobs go to (None: no Kueue, Jobs start at once).
    queueing: Queueing | None = None
    started: list[str] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    succeeded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    # Announced after the stage events of the same pass, so Events read in order.
    finished_event: Event | None = None
    # Attempts started this pass under each breaker's allowance, by key.
    breaker_used: dict[str, int] = field(default_factory=dict)

    @property
    def stamp(self) -> datetime:
        """Checkpoint times in whole seconds, like metav1.Time: 7 bytes a timestamp is 14 KiB
        on a 1,000-stage status."""
        return self.now.replace(microsecond=0)

    def event(self, type_: str, reason: str, message: str) -> None:
        self.plan.events.append(Event(type_, reason, message))

    def wake_at(self, when: datetime) -> None:
        delay = max((when - self.now).total_seconds(), 0.0)
        current = self.plan.requeue_after
        self.plan.requeue_after = delay if current is None else min(current, delay)

    def build_job(self, stage: Stage, attempt: int,
                  outputs: Mapping[str, Mapping[str, Any] | None] | None = None, *,
                  fallback: bool = False) -> dict[str, Any]:
        """The Job of one attempt of a stage (or of its fallback) in this run; ValueError for
        a reference that cannot resolve. ``outputs``: the stages' outputs, when the caller
        has them at hand for many Jobs."""
        claim = self.status.workspace.claim_name if self.status.workspace else None
        return build_job(run=self.facts.identity, pipeline=self.pipeline, stage=stage,
                         attempt=attempt, params=self.params,
                         outputs=_outputs(self) if outputs is None else outputs,
                         settings=self.settings, workspace_claim=claim,
                         queueing=self.queueing, fallback=fallback)


def decide(facts: RunFacts, now: datetime, settings: JobSettings | None = None) -> Plan:
    settings = settings or JobSettings()
    # Shallow on purpose: decide() and its helpers only ever reassign status fields (new
    # dicts, lists and model_copy'd checkpoints), never mutate nested objects, so facts.status
    # stays untouched. A deep copy cloned the whole pipeline snapshot on every pass (the
    # largest single cost of decide() on big runs, seen with py-spy).
    status = facts.status.model_copy()
    plan = Plan(status=status)
    if status.phase.finished:
        return _after_finish(facts, status, plan, now)

    pipeline = status.pipeline_spec or facts.spec.pipeline_spec or facts.referenced_pipeline
    if pipeline is None:
        return _pipeline_missing(facts, status, plan, now)
    # A snapshot was validated before it was taken; re-checking a 1,000-stage DAG on every
    # pass would be most of the pass's cost.
    errors = check_pipeline(pipeline) if status.pipeline_spec is None else []
    params, param_errors = resolve_params(pipeline, facts.spec.params)
    param_errors += rerun_errors(pipeline, facts.spec.rerun_stages or [])
    if errors or param_errors:
        message = "; ".join([*errors, *param_errors])
        finish_run(status, RunPhase.FAILED, reasons.INVALID_PIPELINE, message,
                   facts.generation, now)
        plan.events.append(Event("Warning", reasons.INVALID_PIPELINE, message[:1024]))
        return plan

    queueing = Queueing.of(facts.spec, pipeline)
    # Kueue's quota is the budget of a run with a queue: the operator's own would throttle
    # its stages twice (and hide them from Kueue's priorities and fair sharing).
    plan.uses_stage_budget = queueing is None
    if facts.spec.dry_run:
        plan.dry_run = True
        status.pipeline_spec = pipeline
        _bind_workspace(facts, pipeline, status, plan)
        claim = status.workspace.claim_name if status.workspace else None
        plan.create_jobs = [
            build_job(run=facts.identity, pipeline=pipeline, stage=stage, attempt=1,
                      params=params, outputs=_placeholder_outputs(pipeline),
                      settings=settings, workspace_claim=claim, queueing=queueing)
            for stage in pipeline.all_stages()
        ]
        if facts.nodes is not None:
            # The API server's verdict on each Job comes later (core.feedback); the nodes'
            # is known now. A stage that fits no node would wait for one forever.
            status.stages = {
                unfit.stage: StageCheckpoint(phase=StagePhase.FAILED,
                                             reason=reasons.UNSCHEDULABLE,
                                             message=clip(f"dry run: fits no node: {unfit}"))
                for unfit in unschedulable_stages(pipeline, facts.nodes)} or None
        return plan

    # One dict shared with the status, so run-level summaries always see the latest checkpoints.
    status.stages = dict(status.stages or {})
    p = _Pass(facts, now, settings, status, pipeline, params, status.stages, plan, queueing)
    if status.start_time is None:
        status.start_time = now
        status.pipeline_spec = pipeline
        p.event("Normal", reasons.RUN_STARTED,
                f"Run started: {len(pipeline.all_stages())} stages")
        _bind_workspace(facts, pipeline, status, plan)
        _reuse_finished_stages(p)

    _fold_observations(p)
    _announce_pause(p)
    deadline = _run_deadline(p)
    if facts.spec.cancel:
        _stop_everything(p, reasons.RUN_CANCELLED, "run cancelled")
        finish_run(status, RunPhase.CANCELLED, reasons.CANCELLED, "Run cancelled by spec.cancel",
                   facts.generation, now)
        p.event("Warning", reasons.CANCELLED, "Run cancelled")
    elif deadline is not None and now >= deadline:
        _stop_everything(p, reasons.RUN_TIMED_OUT, "run timed out")
        message = f"Run exceeded its timeout of {_run_timeout(p)} s"
        finish_run(status, RunPhase.FAILED, reasons.RUN_TIMEOUT, message, facts.generation, now)
        p.event("Warning", reasons.RUN_TIMEOUT, message)
    else:
        if deadline is not None:
            p.wake_at(deadline)
        if not facts.spec.suspend or all(
                _phase(p, s.name).finished for s in pipeline.all_stages()):
            # Suspended, nothing starts; but a run with nothing left to start still finishes.
            _schedule(p)
    _summarize_events(p)
    refresh_run_status(status, pipeline, facts.spec.suspend, facts.generation, now, p.plan.events,
                       queued=plan.waiting_for_room)
    return plan


def rerun_closure(pipeline: PipelineSpec, rerun: Sequence[str]) -> set[str]:
    """The stages `rerunStages` sends round again: those named, everything downstream of
    them and, when there are any, the finally stages (they report on the main stages)."""
    if not rerun:
        return set()
    graph = build_from_pairs((s.name, s.depends_on or ()) for s in pipeline.stages)
    again = set(rerun)
    for name in rerun:
        if name in graph:
            again |= graph.downstream(name)
    return again | {s.name for s in pipeline.finally_ or []}


def rerun_errors(pipeline: PipelineSpec, rerun: Sequence[str]) -> list[str]:
    """`spec.rerunStages` names that are no stage of the pipeline. Called on every pass, so
    a run without rerunStages (nearly all) must not pay for a set of every stage name."""
    if not rerun:
        return []
    names = {s.name for s in pipeline.all_stages()}
    return [f"spec.rerunStages[{i}]: unknown stage {name!r}"
            for i, name in enumerate(rerun) if name not in names]


# --- observations --------------------------------------------------------------------------

def _fold_observations(p: _Pass) -> None:
    # The newest attempt each stage has a Job for, found in one sweep of the Jobs: a max()
    # over each stage's Jobs was a third of this function's time on a 900-stage run.
    newest_attempt: dict[str, int] = {}
    fallback_jobs: dict[str, list[JobSummary]] = defaultdict(list)
    for job in p.facts.jobs.values():
        if job.fallback:
            fallback_jobs[job.stage].append(job)
        elif job.attempt > newest_attempt.get(job.stage, 0):
            newest_attempt[job.stage] = job.attempt
    pods_by_job: dict[str, list[PodSummary]] = defaultdict(list)
    for pod in p.facts.pods:
        pods_by_job[pod.job].append(pod)

    for stage in p.pipeline.all_stages():
        cp = p.checkpoints.get(stage.name)
        if cp is None and stage.name not in newest_attempt:
            continue  # not started: most stages of a big run early on
        if cp is not None and cp.fallback is None and cp.phase.finished:
            continue  # most of them later (a look costs a thousand of them a millisecond)
        if cp is not None and cp.fallback is not None:
            # The stage's own attempts are over: only its fallback's Jobs are watched.
            _fold_fallback(p, stage, fallback_jobs.get(stage.name, []), pods_by_job)
            continue
        seen = newest_attempt.get(stage.name, 0)
        if seen > ((cp.attempts or 0) if cp else 0) and (cp is None or not cp.phase.finished):
            # We created this Job but crashed before recording it: adopt it, never re-create.
            cp = _adopt(p, stage, seen, cp)
        if cp is None or not cp.in_flight or cp.job is None:
            continue
        current = cp.job
        observed = p.facts.jobs.get(current)
        pods = pods_by_job.get(current, [])
        if observed is not None and observed.suspended and observed.finished is None:
            # Kueue has not admitted the Job (or took its quota back): no pod runs, none of
            # its pods' states matter (a re-suspended Job's pods are being deleted).
            _wait_for_admission(p, stage, cp)
            continue
        if cp.queued and (observed is not None or pods):
            cp = _admitted(p, stage, cp, observed)
        judged = (observed, *pods)
        if _quiet_attempts.unchanged(cp, judged):
            continue
        result = _observe(p, stage, current, pods)
        if result is not None:
            _apply_result(p, stage, cp, result)
            if _quiet(result) and p.checkpoints[stage.name] is cp and observed is not None:
                _quiet_attempts.note(cp, judged)


# An attempt in flight whose checkpoint, Job and pods are the very objects of a pass that found
# nothing to change gets the same verdict again, so it is not judged again: judging them all
# took two thirds of a pass of the fan-out with 982 stages in flight (cProfile), where each
# pass sees one or two of them change.
_quiet_attempts: SameInputs[StageCheckpoint] = SameInputs()


def _quiet(result: AttemptResult) -> bool:
    """A verdict of an attempt running with nothing to say: one that depends only on the Job
    and pods (not on the clock, as a start failure's grace or an unschedulable timeout do)."""
    return (result.outcome is Outcome.RUNNING and result.message is None
            and result.recheck_at is None and not result.stop_job)


def _observe(p: _Pass, stage: Stage, current: str,
             pods: list[PodSummary]) -> AttemptResult | None:
    """The verdict on the attempt whose Job is ``current`` (None: created so recently that
    the cache may not show it yet); asks for the Job's deletion when its pods cannot start."""
    observed = p.facts.jobs.get(current)
    if observed is None and not pods:
        if current in p.facts.recently_created:
            return None
        result = AttemptResult(Outcome.FAILED, message=f"Job {current} disappeared",
                               reason=reasons.JOB_LOST)
    else:
        result = attempt_outcome(observed, pods, now=p.now,
                                 start_grace=p.facts.start_failure_grace,
                                 unschedulable_timeout=_unschedulable_timeout(p, stage))
    if result.recheck_at is not None:
        p.wake_at(result.recheck_at)
    if result.stop_job and (observed is None or not observed.deleting):
        p.plan.delete_jobs.append(current)
    return result


def _fold_fallback(p: _Pass, stage: Stage, jobs: list[JobSummary],
                   pods_by_job: Mapping[str, list[PodSummary]]) -> None:
    """What the stage's fallback Jobs say (see core.fallback)."""
    if jobs:
        adopt_fallback(p, stage, max(jobs, key=lambda j: j.attempt))
    fallback = p.checkpoints[stage.name].fallback
    if fallback is None or not fallback.in_flight or fallback.job is None:
        return
    result = _observe(p, stage, fallback.job, pods_by_job.get(fallback.job, []))
    if result is not None:
        apply_fallback_result(p, stage, result, _outputs_too_large(p, result.outputs))


def _adopt(p: _Pass, stage: Stage, attempt: int, cp: StageCheckpoint | None) -> StageCheckpoint:
    name = job_name(p.facts.identity.name, stage.name, attempt)
    job = p.facts.jobs.get(name)
    update: dict[str, Any] = {"attempts": attempt, "job": name, "next_retry_time": None}
    if job is not None and job.suspended:
        # Still waiting for Kueue: it has been since the Job was created.
        update.update(phase=StagePhase.PENDING, reason=reasons.QUEUED,
                      message=_queued_message(p, name), queued_time=job.created or p.stamp)
    else:
        update.update(phase=StagePhase.RUNNING,
                      start_time=cp.start_time if cp and cp.start_time else p.stamp)
    adopted = (cp or StageCheckpoint()).model_copy(update=update)
    p.checkpoints[stage.name] = adopted
    return adopted


def _queued_message(p: _Pass, job: str) -> str:
    """Kueue's word on why the Job waits, from its Workload; until Kueue has said anything
    (or when the operator does not see Workloads), which queue it waits in."""
    workload = p.facts.workloads.get(job)
    if workload is not None and workload.message:
        return clip(workload.message) or ""
    queue = f" from LocalQueue {p.queueing.queue_name}" if p.queueing else ""
    return f"waiting for Kueue to admit Job {job}{queue}"


def _wait_for_admission(p: _Pass, stage: Stage, cp: StageCheckpoint) -> None:
    """The attempt's Job is suspended: Pending with reason Queued and Kueue's message. A
    running stage whose Job is suspended again was evicted by Kueue (preempted, or its
    quota reclaimed): its pods are deleted and the attempt waits to be admitted again."""
    assert cp.job is not None
    message = _queued_message(p, cp.job)
    if cp.queued:
        if cp.message != message:
            _update(p, stage.name, cp, {"message": message})
        return
    _update(p, stage.name, cp, {"phase": StagePhase.PENDING, "reason": reasons.QUEUED,
                                "message": message, "queued_time": p.stamp, "progress": None})
    p.event("Warning", reasons.STAGE_EVICTED,
            f"Stage {stage.name} was evicted by Kueue and waits to be admitted again: {message}")


def _admitted(p: _Pass, stage: Stage, cp: StageCheckpoint,
              job: JobSummary | None) -> StageCheckpoint:
    """Kueue admitted the attempt's Job (and unsuspended it): the stage runs from then on,
    and the wait counts as queue time, not run time."""
    assert cp.job is not None
    workload = p.facts.workloads.get(cp.job)
    admitted = ((workload.admitted_time if workload is not None else None)
                or (job.started if job is not None else None) or p.now)
    admitted = min(max(admitted, cp.queued_time or admitted), p.now).replace(microsecond=0)
    waited = int((admitted - cp.queued_time).total_seconds()) if cp.queued_time else 0
    attempt = cp.attempts or 1
    p.started.append(stage.name if attempt == 1 else f"{stage.name} (attempt {attempt})")
    return _update(p, stage.name, cp, {
        "phase": StagePhase.RUNNING, "reason": None, "message": None, "queued_time": None,
        "queue_seconds": (cp.queue_seconds or 0) + waited,
        "start_time": cp.start_time or admitted})


def _apply_result(p: _Pass, stage: Stage, cp: StageCheckpoint, result: AttemptResult) -> None:
    update: dict[str, Any] = {}
    failed_for_good = False
    if result.total_indexes > 1:
        update["fan_out"] = {"succeeded": result.succeeded_indexes,
                             "failed": result.failed_indexes, "total": result.total_indexes}
    if result.outcome in (Outcome.RUNNING, Outcome.PENDING):
        if result.progress is not None:
            update["progress"] = round(result.progress, 3)
        # While a pod cannot start its container, the kubelet's word; while none can be
        # placed, the scheduler's (phase Pending); otherwise nothing.
        pending = result.outcome is Outcome.PENDING
        update.update(message=clip(result.message), reason=result.reason if pending else None,
                      phase=StagePhase.PENDING if pending else StagePhase.RUNNING)
        if pending and cp.reason != result.reason:
            # Once when the wait begins, not on every pass while it lasts.
            p.event("Warning", reasons.UNSCHEDULABLE,
                    f"Stage {stage.name} cannot be scheduled: {result.message}")
        if any(getattr(cp, key) != value for key, value in update.items()):
            _update(p, stage.name, cp, update)
        return
    update.update(exit_code=result.exit_code, message=clip(result.message), usage=result.usage,
                  reason=result.reason or reasons.EXIT_CODE, queued_time=None)
    _report_to_breaker(p, stage, result)
    too_large = _outputs_too_large(p, result.outputs)
    if result.outcome is Outcome.SUCCEEDED and too_large:
        update.update(phase=StagePhase.FAILED, finish_time=result.finished or p.stamp,
                      message=too_large, reason=reasons.OUTPUT_TOO_LARGE, exit_code=None)
        p.event("Warning", reasons.STAGE_FAILED,
                f"Stage {stage.name} failed ({reasons.OUTPUT_TOO_LARGE}): {too_large}")
    elif result.outcome is Outcome.SUCCEEDED:
        # Succeeded implies exit code 0 and progress 1: leaving them unset keeps a
        # 1,000-stage status under 256 KiB.
        update.update(phase=StagePhase.SUCCEEDED, outputs=result.outputs, progress=None,
                      exit_code=None, finish_time=result.finished or p.stamp, message=None,
                      reason=None)
        p.succeeded.append(stage.name)
        _fill_cache(p, stage, cp, result, update)
    else:
        policy = stage.retry or RetryPolicy()
        attempts = cp.attempts or 1
        reason = update["reason"]
        retryable = policy.is_retryable(result.exit_code) and reason not in reasons.NOT_RETRIED
        if attempts <= policy.limit and retryable:
            retry_at = p.now + timedelta(seconds=policy.delay_seconds(attempts))
            update.update(phase=StagePhase.RETRYING, next_retry_time=retry_at)
            p.event("Warning", reasons.STAGE_RETRYING,
                    f"Stage {stage.name} attempt {attempts} failed ({reason}: "
                    f"{result.message}); retry {attempts}/{policy.limit} at "
                    f"{retry_at.isoformat()}")
        else:
            update.update(phase=StagePhase.FAILED, finish_time=result.finished or p.stamp)
            why = "" if retryable or not policy.limit else " (not retryable)"
            p.event("Warning", reasons.STAGE_FAILED,
                    f"Stage {stage.name} failed ({reason}) after {attempts} attempt(s){why}: "
                    f"{result.message}")
            failed_for_good = True
    _update(p, stage.name, cp, update)
    if failed_for_good:
        start_fallback(p, stage, update["reason"])


def _update(p: _Pass, name: str, cp: StageCheckpoint, update: dict[str, Any]) -> StageCheckpoint:
    new = StageCheckpoint.model_validate({**cp.model_dump(), **update})
    p.checkpoints[name] = new
    return new


# --- scheduling ----------------------------------------------------------------------------

def _phase(p: _Pass, name: str) -> StagePhase:
    """The stage's phase as the rest of the run sees it: a failed stage whose fallback runs
    is in flight, one whose fallback succeeded is done (see core.fallback)."""
    cp = p.checkpoints.get(name)
    return effective_phase(cp) if cp else StagePhase.PENDING


def _upstream_failed(p: _Pass, name: str) -> bool:
    cp = p.checkpoints.get(name)
    return cp is not None and _fails_dependants(cp)


def _fails_dependants(cp: StageCheckpoint) -> bool:
    """Failed, cancelled, or skipped for an upstream failure: a stage that depends on it (and
    does not judge it in its `when`) is skipped."""
    return effective_phase(cp) in (StagePhase.FAILED, StagePhase.CANCELLED) or (
        cp.phase == StagePhase.SKIPPED and cp.reason == reasons.UPSTREAM_FAILED)


def _failed_by_itself(p: _Pass, name: str) -> bool:
    """Failed, or skipped for that (not stopped by the run's end)."""
    cp = p.checkpoints.get(name)
    return cp is not None and cp.phase != StagePhase.CANCELLED and _upstream_failed(p, name)


def _skip(p: _Pass, stage: Stage, reason: str, message: str) -> None:
    p.checkpoints[stage.name] = StageCheckpoint(
        phase=StagePhase.SKIPPED, reason=reason, message=message, finish_time=p.stamp)
    p.skipped.append(f"{stage.name} ({message})")


def _candidates(p: _Pass, in_order: Sequence[Stage], stopping: bool) -> list[Stage]:
    """Stages that may start now; skips what can never run. ``in_order``: in DAG order, so
    that skips cascade."""
    ready: list[Stage] = []
    checkpoints = p.checkpoints
    for stage in in_order:
        # One look at the checkpoint (what _phase and _in_flight would each take) for every
        # stage on every pass.
        cp = checkpoints.get(stage.name)
        phase = effective_phase(cp) if cp is not None else StagePhase.PENDING
        if phase == StagePhase.RETRYING:
            assert cp is not None
            if stopping:
                # A retry is new work, and a critical failure stops new work.
                _fail_stage(p, stage, f"{cp.message}; not retried: a critical stage failed",
                            cp.reason or reasons.EXIT_CODE)
                continue
            if cp.next_retry_time is None or cp.next_retry_time <= p.now:
                ready.append(stage)
            else:
                p.wake_at(cp.next_retry_time)
            continue
        if phase != StagePhase.PENDING or (cp is not None and _attempt_in_flight(cp)):
            continue
        failed, settled = _dependencies(p, stage)
        if failed:
            _skip(p, stage, reasons.UPSTREAM_FAILED, f"upstream {', '.join(failed)} failed")
            continue
        if not settled or stopping:
            continue
        skipped = sorted(s for s in stages_read_by(stage) if _phase(p, s) == StagePhase.SKIPPED)
        if skipped:
            # As in Tekton: a stage that consumes outputs of a skipped stage is skipped too.
            _skip(p, stage, reasons.UPSTREAM_SKIPPED,
                  f"reads outputs of skipped stage(s) {', '.join(skipped)}")
            continue
        if stage.when:
            verdict = evaluate_when(stage.when, p.params, _outputs(p), _statuses(p))
            if isinstance(verdict, str):
                _fail_stage(p, stage, verdict, reasons.WHEN_EVALUATION_FAILED)
                continue
            if not verdict:
                _skip(p, stage, reasons.WHEN_FALSE, f"when is false: {stage.when}")
                continue
        ready.append(stage)
    return ready


def _dependencies(p: _Pass, stage: Stage) -> tuple[list[str], bool]:
    """The stage's dependencies that failed (it is skipped for them), and whether all have
    settled (it may start): one look at each dependency's checkpoint, as this runs for every
    pending stage on every pass.

    A dependency whose phase or reason the stage's `when` reads is the `when`'s to judge: it
    only has to finish, however it ended (a critical failure still stops new work). Any other
    has to be done (succeeded, or skipped by a condition); one that failed, was cancelled or
    was skipped for an upstream failure fails the stage's chance to run.
    """
    deps = stage.depends_on or []
    if not deps:
        return [], True
    watched = stages_watched_by(stage)
    failed: list[str] = []
    settled = True
    for dep in deps:
        cp = p.checkpoints.get(dep)
        if cp is None:
            settled = False
            continue
        if dep in watched:
            settled = settled and effective_phase(cp).finished
        elif _fails_dependants(cp):
            failed.append(dep)
        else:
            settled = settled and effective_phase(cp).done
    return failed, settled


def _fail_stage(p: _Pass, stage: Stage, message: str, reason: str) -> None:
    p.checkpoints[stage.name] = (p.checkpoints.get(stage.name) or StageCheckpoint()).model_copy(
        update={"phase": StagePhase.FAILED, "message": clip(message), "finish_time": p.stamp,
                "reason": reason, "next_retry_time": None})
    p.event("Warning", reasons.STAGE_FAILED, f"Stage {stage.name} failed ({reason}): {message}")


def _outputs_too_large(p: _Pass, outputs: dict[str, Any] | None) -> str | None:
    """Why these outputs cannot be kept, if they cannot.

    Every stage's outputs live in the run's status, which etcd caps at 1.5 MiB: each stage may
    use an equal share of OUTPUTS_BUDGET (at most 4 KiB, the termination message's own size).
    """
    if not outputs:
        return None
    size = len(json.dumps(outputs, separators=(",", ":")))
    allowance = min(4096, OUTPUTS_BUDGET // max(len(p.pipeline.all_stages()), 1))
    if size <= allowance:
        return None
    return (f"outputs are {size} bytes; a stage of this {len(p.pipeline.all_stages())}-stage "
            f"pipeline may report at most {allowance} bytes (the run's status must stay below "
            "the API server's object size limit): write large results to the workspace and "
            "output a reference")


def _critical_failure(p: _Pass, stages: Sequence[Stage]) -> bool:
    """Some critical stage failed (a recovered one did not). Runs over every stage on every
    pass: the stored phase rules out nearly all before a look at their fallback."""
    checkpoints = p.checkpoints
    for stage in stages:
        cp = checkpoints.get(stage.name)
        if (cp is not None and cp.phase == StagePhase.FAILED and stage.critical
                and effective_phase(cp) == StagePhase.FAILED):
            return True
    return False


def _in_flight(p: _Pass, name: str) -> bool:
    cp = p.checkpoints.get(name)
    return cp is not None and _attempt_in_flight(cp)


def _attempt_in_flight(cp: StageCheckpoint) -> bool:
    """The stage's attempt, or its fallback's, has a Job that has not ended."""
    return cp.in_flight or fallback_active(cp)


def _active(p: _Pass, stages: Sequence[Stage]) -> bool:
    """Some stage has an attempt in flight (queued, waiting for a node, running) or one to
    come (retrying)."""
    checkpoints = p.checkpoints
    for stage in stages:
        cp = checkpoints.get(stage.name)  # none: not started
        # A fallback never makes a stage Retrying: its stored phase says it.
        if cp is not None and (cp.phase == StagePhase.RETRYING or _attempt_in_flight(cp)):
            return True
    return False


def _schedule(p: _Pass) -> None:
    main, final = p.pipeline.stages, p.pipeline.finally_ or []
    stopping = _critical_failure(p, main)
    settle_unstarted_fallbacks(p, stopping)
    main_in_order, final_in_order = pipeline_order(p.pipeline)
    ready = _candidates(p, main_in_order, stopping)
    if not _active(p, main) and not ready:
        # The main DAG is settled; what never ran will not run now.
        for stage in main:
            if _phase(p, stage.name) == StagePhase.PENDING and not _in_flight(p, stage.name):
                _skip(p, stage, reasons.RUN_FAILED, "not run: a critical stage failed")
        ready = _candidates(p, final_in_order, stopping=False)
    _start(p, ready)
    everything = [*main, *final]
    # A stage without a checkpoint has not started: the run is not over (no walk needed).
    if len(p.checkpoints) >= len(everything) and all(
            _phase(p, s.name).finished for s in everything):
        if _critical_failure(p, everything):
            failed = [s.name for s in everything
                      if s.critical and _phase(p, s.name) == StagePhase.FAILED]
            finish_run(p.status, RunPhase.FAILED, reasons.STAGE_FAILED,
                       _failure_summary(p, failed), p.facts.generation, p.now)
            p.finished_event = Event("Warning", reasons.FAILED,
                                     f"Run failed: {', '.join(failed)} failed")
        else:
            finish_run(p.status, RunPhase.SUCCEEDED, reasons.SUCCEEDED,
                       f"All {len(everything)} stages done", p.facts.generation, p.now)
            p.finished_event = _succeeded_event(p, everything)


def _succeeded_event(p: _Pass, everything: list[Stage]) -> Event:
    """A run that lost non-critical stages still succeeds, but says so where people look
    first (`kubectl get events`, alerting on Warnings), not only in its Degraded condition."""
    failed = [s.name for s in everything if _phase(p, s.name) == StagePhase.FAILED]
    recovered = recovered_stages(everything, p.checkpoints)
    if not failed and not recovered:
        return Event("Normal", reasons.SUCCEEDED, "Run succeeded")
    why = [*([f"non-critical stage(s) failed: {short_list(failed)}"] if failed else []),
           *([f"recovered by fallback: {short_list(recovered)}"] if recovered else [])]
    return Event("Warning", reasons.CONDITION_DEGRADED, f"Run succeeded degraded: {'; '.join(why)}")


def _running_count(p: _Pass) -> int:
    """Stages whose Job exists: those queued in Kueue or waiting for a node hold their place
    too, and so do running fallbacks."""
    return sum(1 for cp in p.checkpoints.values() if cp.in_flight or fallback_in_flight(cp))


def _start(p: _Pass, ready: list[Stage]) -> None:
    ready = _serve_from_cache(p, ready)
    ready = _admitted_by_breakers(p, ready)
    limit = p.pipeline.max_parallel_stages
    # Fallbacks that are due go first: their stages started long before the ready ones.
    free = start_due_fallbacks(
        p, None if limit is None else min(max(limit - _running_count(p), 0),
                                          MAX_CREATES_PER_PASS))
    # No limit: room for every ready stage, so the per-pass bound below triggers the requeue.
    room = len(ready) if free is None else free
    if p.queueing is None and p.facts.stage_room is not None and p.facts.stage_room < room:
        # The operator-wide budget is the tighter bound: the rest waits in line for room.
        p.plan.waiting_for_room = max(min(room, len(ready)) - p.facts.stage_room, 0)
        room = p.facts.stage_room
    if len(ready) > 1:
        position = {s.name: i for i, s in enumerate(p.pipeline.all_stages())}
        ready.sort(key=lambda s: (-s.priority, position[s.name]))
    if len(ready) > min(room, MAX_CREATES_PER_PASS) and room > MAX_CREATES_PER_PASS:
        p.wake_at(p.now)  # capped by the per-pass bound, not by the limit: continue at once
    outputs = _outputs(p) if ready else {}  # most passes start nothing
    for stage in ready[: min(room, MAX_CREATES_PER_PASS)]:
        cp = p.checkpoints.get(stage.name) or StageCheckpoint()
        attempt = (cp.attempts or 0) + 1
        try:
            manifest = p.build_job(stage, attempt, outputs)
        except ValueError as error:
            _fail_stage(p, stage, str(error), reasons.INVALID_REFERENCE)
            continue
        p.plan.create_jobs.append(manifest)
        _debit_breaker(p, stage)
        # message and reason describe the attempt now running (the last failure's Event
        # stays); exitCode keeps the last failed attempt's code.
        job = manifest["metadata"]["name"]
        update: dict[str, Any] = {"attempts": attempt, "job": job, "next_retry_time": None,
                                  "progress": None}
        if p.queueing is None:
            update.update(phase=StagePhase.RUNNING, start_time=cp.start_time or p.stamp,
                          message=None, reason=None)
        else:
            # Created suspended: it runs when Kueue admits it (see _admitted).
            update.update(phase=StagePhase.PENDING, reason=reasons.QUEUED,
                          message=_queued_message(p, job), queued_time=p.stamp)
        p.checkpoints[stage.name] = cp.model_copy(update=update)
        label = stage.name if attempt == 1 else f"{stage.name} (attempt {attempt})"
        (p.started if p.queueing is None else p.queued).append(label)


# --- circuit breakers: the logic is kubedag.core.breaker's, these are decide()'s hooks -----------

def _breaker_key(p: _Pass, stage: Stage) -> str | None:
    return breaker_key(stage, p.pipeline.defaults, stage_image(stage, p.pipeline, p.settings))


def _admitted_by_breakers(p: _Pass, ready: list[Stage]) -> list[Stage]:
    """The ready stages their breakers let start now; the others are held."""
    if not p.facts.breakers:
        return ready
    admitted = []
    for stage in ready:
        key = _breaker_key(p, stage)
        view = p.facts.breakers.get(key) if key is not None else None
        if key is None or view is None or view.allowance is None:
            admitted.append(stage)
        elif p.breaker_used.get(key, 0) < view.allowance:
            p.breaker_used[key] = p.breaker_used.get(key, 0) + 1
            admitted.append(stage)
        else:
            held_by_breaker(p, stage, key, view)
    return admitted


def held_by_breaker(p: _Pass, stage: Stage, key: str, view: BreakerView) -> None:
    """The one place a stage is held by an open breaker: it waits with reason CircuitOpen -
    Pending, or Retrying for a retry that was due - with no Job, so the wait uses neither a
    retry nor the stage's timeout. A stage with a fallback does not wait: it fails with
    reason CircuitOpen and its fallback runs at once (in this pass, when there is room)."""
    if stage.fallback is not None:
        _fail_stage(p, stage, f"not run: {view.hold_message(key)}; its fallback runs instead",
                    reasons.CIRCUIT_OPEN)
        start_fallback(p, stage, reasons.CIRCUIT_OPEN)
        return
    p.plan.breaker_held[key] = p.plan.breaker_held.get(key, 0) + 1
    if view.half_open_time is not None:
        p.wake_at(view.half_open_time)
    cp = p.checkpoints.get(stage.name) or StageCheckpoint()
    message = view.hold_message(key)
    if cp.reason == reasons.CIRCUIT_OPEN and cp.message == message:
        return
    if cp.reason != reasons.CIRCUIT_OPEN:
        p.event("Warning", reasons.CIRCUIT_OPEN, f"Stage {stage.name} held: {message}")
    p.checkpoints[stage.name] = cp.model_copy(
        update={"reason": reasons.CIRCUIT_OPEN, "message": message})


def _debit_breaker(p: _Pass, stage: Stage) -> None:
    """An attempt started under a breaker's allowance: the shell debits it."""
    key = _breaker_key(p, stage) if p.facts.breakers else None
    if key is not None and key in p.facts.breakers:
        p.plan.breaker_starts.setdefault(key, []).append(stage.name)


def _report_to_breaker(p: _Pass, stage: Stage, result: AttemptResult) -> None:
    """A finished attempt of a stage with a breaker: the shell folds it into the breaker."""
    key = _breaker_key(p, stage)
    if key is None:
        return
    p.plan.breaker_reports.append(AttemptReport(
        key=key, stage=stage.name,
        verdict=classify(result.outcome, result.reason, result.exit_code),
        reason=result.reason or (reasons.EXIT_CODE if result.exit_code else None),
        time=result.finished or p.stamp,
        thresholds=breaker_thresholds(stage_policy(stage, p.pipeline.defaults))))


def _outputs(p: _Pass) -> dict[str, dict[str, Any] | None]:
    """Outputs of the stages done with them: a recovered stage's are its fallback's."""
    return {name: effective_outputs(cp) for name, cp in p.checkpoints.items()
            if effective_phase(cp) == StagePhase.SUCCEEDED}


def _statuses(p: _Pass) -> dict[str, StageStatus]:
    """How each finished stage ended, for `when` expressions reading `stages.<name>.phase`
    (a recovered stage: Succeeded, reason RecoveredByFallback)."""
    return {name: StageStatus(phase.value, effective_reason(cp))
            for name, cp in p.checkpoints.items() if (phase := effective_phase(cp)).finished}


def _placeholder_outputs(pipeline: PipelineSpec) -> dict[str, dict[str, Any] | None]:
    """Dry run: outputs do not exist yet, so each reference reads as itself."""
    class _Echo(dict[str, Any]):
        def __init__(self, stage: str) -> None:
            super().__init__()
            self.stage = stage

        def __contains__(self, key: object) -> bool:
            return True

        def __getitem__(self, key: str) -> str:
            return f"<{self.stage}.outputs.{key}>"

    return {s.name: _Echo(s.name) for s in pipeline.all_stages()}


# --- the stage cache --------------------------------------------------------------------

def _stage_inputs(p: _Pass, stage: Stage,
                  outputs: Mapping[str, Mapping[str, Any] | None] | None = None) -> StageInputs:
    identity, ref = p.facts.identity, p.facts.spec.pipeline_ref
    return StageInputs(namespace=identity.namespace,
                       pipeline=ref.name if ref is not None else INLINE_PIPELINE,
                       run=identity.name, stage=stage,
                       image=stage_image(stage, p.pipeline, p.settings), params=p.params,
                       outputs=_outputs(p) if outputs is None else outputs)


def _serve_from_cache(p: _Pass, ready: list[Stage]) -> list[Stage]:
    """Ready cacheable stages about to make their first attempt: a hit succeeds at once (no
    Job, no room used), a stage whose result another run is computing waits for it, a miss
    starts with the reason recorded. Returns the stages still to start."""
    if not uses_cache(p.pipeline):
        return ready
    to_start: list[Stage] = []
    # Stages ready together do not read each other's outputs: one snapshot serves them all.
    outputs: dict[str, dict[str, Any] | None] | None = None
    for stage in ready:
        cache = stage_cache(stage, p.pipeline)
        cp = p.checkpoints.get(stage.name) or StageCheckpoint()
        if cache is None or cp.attempts:
            to_start.append(stage)
            continue
        outputs = _outputs(p) if outputs is None else outputs
        try:
            found = look_up(p.facts.cache, _stage_inputs(p, stage, outputs), cache,
                            p.facts.spec.cache, p.now)
        except ValueError:
            to_start.append(stage)  # a reference that cannot resolve: build_job says which
            continue
        if isinstance(found, Hit):
            _reuse_cached(p, stage, found)
        elif isinstance(found, Wait):
            if cp.reason != reasons.WAITING_FOR_CACHE:
                p.checkpoints[stage.name] = cp.model_copy(update={
                    "reason": reasons.WAITING_FOR_CACHE,
                    "message": f"waiting for run {found.run}, which is computing the same "
                               "result (same cache key)"})
            p.wake_at(p.now + CACHE_WAIT_POLL)
        else:
            p.plan.cache_lookups.append((stage.name, "miss", found.reason))
            p.checkpoints[stage.name] = cp.model_copy(update={"cache": found.status()})
            to_start.append(stage)
    return to_start


def _cache_fills(p: _Pass) -> frozenset[str]:
    """The keys the run's in-flight stages are computing (other runs wait for them)."""
    if not uses_cache(p.pipeline):
        return frozenset()
    return frozenset(cp.cache.key for cp in p.checkpoints.values()
                     if cp.cache is not None and cp.cache.key and not cp.cache.hit
                     and cp.in_flight)


def _reuse_cached(p: _Pass, stage: Stage, hit: Hit) -> None:
    entry = hit.entry
    how_old = age(p.now - entry.filled)
    total = entry.fan_out_total
    p.checkpoints[stage.name] = StageCheckpoint(
        phase=StagePhase.SUCCEEDED, reason=reasons.CACHED,
        message=f"cached result of run {entry.source_run}, {how_old} old",
        outputs=dict(entry.outputs) if entry.outputs else None,
        start_time=p.stamp, finish_time=p.stamp,
        fan_out=FanOutStatus(succeeded=total, total=total) if total else None,
        cache=StageCacheStatus(key=hit.key, hit=True, source_run=entry.source_run,
                               filled_time=entry.filled))
    p.cached.append(f"{stage.name} (run {entry.source_run}, {how_old} old)")
    p.plan.cache_lookups.append((stage.name, "hit", reasons.CACHED))
    p.wake_at(p.now)  # its dependants may be ready now


def _fill_cache(p: _Pass, stage: Stage, cp: StageCheckpoint, result: AttemptResult,
                update: dict[str, Any]) -> None:
    """A cacheable stage succeeded: store its result under the key computed with the digest
    its pods ran (none reported: nothing stored)."""
    cache = stage_cache(stage, p.pipeline)
    if cache is None or p.facts.spec.cache == RunCacheMode.DISABLED or not result.image_id:
        return
    try:
        built = entry_manifest(_stage_inputs(p, stage), cache, result.image_id, result.outputs,
                               result.total_indexes if stage.fan_out is not None else None,
                               p.stamp)
    except ValueError:
        return
    if built is None:
        return
    key, manifest = built
    p.plan.cache_entries.append(manifest)
    p.plan.overwrite_cache = p.facts.spec.cache == RunCacheMode.OVERWRITE
    update["cache"] = (cp.cache or StageCacheStatus()).model_copy(update={"key": key})


# --- stopping, resuming, deadlines ----------------------------------------------------------

def _stop_everything(p: _Pass, reason: str, message: str) -> None:
    """The run ends now (cancel, timeout): stages that had started are Cancelled (a running
    one's Job deleted: its pods get SIGTERM and their grace period), the others Skipped; both
    with the same reason (UpstreamFailed instead, when a dependency failed: as if the run
    had gone on)."""
    for stage in all_in_order(p.pipeline):
        cp = p.checkpoints.get(stage.name)
        if cp is not None and cp.phase.finished:
            stop_fallback(p, stage.name, reason, message, p.facts.jobs)
            continue
        if cp is not None and cp.in_flight and cp.job:
            job = p.facts.jobs.get(cp.job)
            if job is None or not job.deleting:
                p.plan.delete_jobs.append(cp.job)
        if cp is not None and (cp.in_flight or cp.phase == StagePhase.RETRYING):
            p.checkpoints[stage.name] = cp.model_copy(update={
                "phase": StagePhase.CANCELLED, "message": message, "finish_time": p.stamp,
                "reason": reason, "next_retry_time": None, "progress": None,
                "queued_time": None})
        elif failed := [d for d in stage.depends_on or [] if _failed_by_itself(p, d)]:
            _skip(p, stage, reasons.UPSTREAM_FAILED, f"upstream {', '.join(failed)} failed")
        else:
            p.checkpoints[stage.name] = StageCheckpoint(
                phase=StagePhase.SKIPPED, reason=reason, message=f"not run: {message}",
                finish_time=p.stamp)


def _failure_summary(p: _Pass, failed: Sequence[str]) -> str:
    """The run's Failed condition message: each failed critical stage, its reason and why."""
    parts = []
    for name in failed:
        cp = p.checkpoints[name]
        detail = f"{cp.reason or reasons.EXIT_CODE}"
        if cp.message:
            detail += f": {clip(cp.message, 300)}"
        parts.append(f"{name} ({detail}{failure_note(cp)})")
    if len(parts) == 1:
        return f"Stage {parts[0]} failed"
    return f"Critical stages failed: {'; '.join(parts)}"


def _bind_workspace(facts: RunFacts, pipeline: PipelineSpec, status: PipelineRunStatus,
                    plan: Plan) -> None:
    """Once, as the run starts: which claim its pods mount, and the claim to create (the
    shell creates it before any Job; AlreadyExists is success)."""
    workspace: Workspace | None = facts.spec.workspace or (
        pipeline.defaults.workspace if pipeline.defaults else None)
    if workspace is None:
        return
    if workspace.volume_claim_template is not None:
        plan.create_claim = build_claim(facts.identity, workspace.volume_claim_template)
        status.workspace = WorkspaceStatus(
            claim_name=workspace_claim_name(facts.identity.name), created=True)
    elif workspace.persistent_volume_claim is not None:
        status.workspace = WorkspaceStatus(
            claim_name=workspace.persistent_volume_claim.claim_name)


def _reuse_finished_stages(p: _Pass) -> None:
    previous = p.facts.resume_checkpoints
    if not previous:
        return
    again = rerun_closure(p.pipeline, p.facts.spec.rerun_stages or [])
    reused: list[str] = []
    for stage in all_in_order(p.pipeline):
        old = previous.get(stage.name)
        # A stage its fallback recovered counts as done: its (the fallback's) outputs are
        # reused with the rest of its checkpoint.
        reusable = (old is not None and effective_phase(old) == StagePhase.SUCCEEDED
                    and stage.name not in again and not _changed_since(p, stage, reused))
        if old is not None and reusable and stage.name not in p.checkpoints:
            p.checkpoints[stage.name] = old.model_copy(
                update={"reason": reasons.STAGE_REUSED,
                        "message": f"reused from run {p.facts.spec.resume_from}"})
            reused.append(stage.name)
    if reused:
        p.event("Normal", reasons.RESUMED_FROM,
                f"Reused {len(reused)} finished stage(s) of run {p.facts.spec.resume_from}: "
                f"{short_list(reused)}")


def _changed_since(p: _Pass, stage: Stage, reused: list[str]) -> bool:
    """Whether the stage's key differs from what it was in spec.resumeFrom's run (its
    definition, the params it reads, its upstream outputs: a dependency running again may
    change them); if so an Event says what changed, and it runs again."""
    before, params = p.facts.resume_pipeline, p.facts.resume_params
    if before is None or params is None:
        return False  # an old run without a snapshot: reused by name, as always
    old_stage = next((s for s in before.all_stages() if s.name == stage.name), None)
    rerun = [d for d in stage.depends_on or [] if d not in reused]
    if old_stage is None:
        changes = ["it is new"]
    elif rerun:
        changes = [f"upstream {', '.join(rerun)} runs again"]
    else:
        previous = p.facts.resume_checkpoints or {}
        old_outputs = {name: cp.outputs for name, cp in previous.items()
                       if cp.phase == StagePhase.SUCCEEDED}
        identity = p.facts.identity
        changes = changes_between(
            StageInputs(identity.namespace, "", "", old_stage,
                        stage_image(old_stage, before, p.settings), params, old_outputs),
            stage_cache(old_stage, before),
            _stage_inputs(p, stage), stage_cache(stage, p.pipeline))
    if changes:
        p.event("Normal", reasons.STAGE_CHANGED,
                clip(f"Stage {stage.name} runs again although it succeeded in run "
                     f"{p.facts.spec.resume_from}: {'; '.join(changes)}") or "")
    return bool(changes)


def _unschedulable_timeout(p: _Pass, stage: Stage) -> timedelta | None:
    defaults = p.pipeline.defaults
    seconds = stage.unschedulable_timeout_seconds or (
        defaults.unschedulable_timeout_seconds if defaults else None)
    return timedelta(seconds=seconds) if seconds else None


def _run_timeout(p: _Pass) -> int | None:
    return p.facts.spec.timeout_seconds or p.pipeline.timeout_seconds


def _run_deadline(p: _Pass) -> datetime | None:
    timeout = _run_timeout(p)
    if timeout is None or p.status.start_time is None:
        return None
    return p.status.start_time + timedelta(seconds=timeout)


def _pipeline_missing(facts: RunFacts, status: PipelineRunStatus, plan: Plan,
                      now: datetime) -> Plan:
    name = facts.spec.pipeline_ref.name if facts.spec.pipeline_ref else "?"
    message = f"Pipeline {name!r} not found in namespace {facts.identity.namespace}"
    if now - facts.created > PIPELINE_LOOKUP_PATIENCE:
        finish_run(status, RunPhase.FAILED, reasons.PIPELINE_NOT_FOUND, message,
                   facts.generation, now)
        plan.events.append(Event("Warning", reasons.PIPELINE_NOT_FOUND, message))
        return plan
    # It may be applied in the same `kubectl apply` right after the run: wait a little.
    refresh_run_status(status, None, facts.spec.suspend, facts.generation, now, [],
                       waiting=(reasons.PIPELINE_NOT_FOUND, message))
    plan.requeue_after = 2.0
    return plan


def _after_finish(facts: RunFacts, status: PipelineRunStatus, plan: Plan,
                  now: datetime) -> Plan:
    ttl = facts.spec.ttl_seconds_after_finished
    if ttl is not None and status.completion_time is not None:
        expiry = status.completion_time + timedelta(seconds=ttl)
        if now >= expiry:
            plan.delete_run = True
        else:
            plan.requeue_after = (expiry - now).total_seconds()
    return plan



def _summarize_events(p: _Pass) -> None:
    """One Event per kind of transition per pass: a 1,000-stage fan-out is not 1,000 Events;
    and the cache keys the run's in-flight stages are computing."""
    for reason, verb, stages in ((reasons.STAGE_SUCCEEDED, "Succeeded", p.succeeded),
                                 (reasons.STAGE_CACHED, "Reused cached results of", p.cached),
                                 (reasons.STAGE_SKIPPED, "Skipped", p.skipped),
                                 (reasons.STAGE_QUEUED, "Queued", p.queued),
                                 (reasons.STAGE_STARTED, "Started", p.started)):
        if stages:
            p.plan.events.append(Event.listing(reason, verb, stages))
    if p.finished_event is not None:
        p.plan.events.append(p.finished_event)
    # Not an Event, but told the same way, once the pass is over: the keys being computed.
    p.plan.cache_fills = _cache_fills(p)


def _announce_pause(p: _Pass) -> None:
    """Paused and Resumed are state changes too: say so once, when they happen."""
    was_paused = p.facts.status.phase == RunPhase.PAUSED
    if p.facts.spec.suspend and not was_paused:
        p.event("Normal", reasons.PAUSED, "Paused by spec.suspend: no new stages start")
    elif not p.facts.spec.suspend and was_paused:
        p.event("Normal", reasons.RESUMED, "Resumed: stages start again")
