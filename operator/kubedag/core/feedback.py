"""Fold what happened while a plan was carried out back into the run's status.

Only the API server can say whether it accepts a Job, so rejections (and, for a dry run, every
verdict) arrive after decide() and are recorded here, before the single status write.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubedag.api import PipelineRunStatus, RunPhase, StageCheckpoint, StagePhase
from kubedag.core import reasons
from kubedag.core.fallback import reject_fallback
from kubedag.core.plan import Event, Plan, clip
from kubedag.core.runstatus import finish_run


def record_create_results(plan: Plan, results: dict[str, str | None], now: datetime) -> None:
    """``results``: stage -> the API server's rejection message, or None when it accepted."""
    status = plan.status
    stages = dict(status.stages or {})
    rejected = {stage: message for stage, message in results.items() if message is not None}
    if plan.dry_run:
        # decide() already failed the stages that fit no node; the API server's rejection
        # of a Job, when there is one, is the more basic problem and replaces it.
        unfit = {stage: cp.message for stage, cp in stages.items()
                 if cp.reason == reasons.UNSCHEDULABLE and stage not in rejected}
        for stage, message in results.items():
            if stage in unfit:
                continue
            stages[stage] = StageCheckpoint(
                phase=StagePhase.FAILED if message else StagePhase.PENDING,
                message=clip(f"dry run: Job rejected: {message}") if message
                else "dry run: Job accepted by the API server (nothing created)")
        status.stages = stages
        generation = status.observed_generation or 1
        if rejected or unfit:
            summary = "; ".join([*(f"{s}: {m}" for s, m in sorted(rejected.items())),
                                 *(f"{s}: {m}" for s, m in sorted(unfit.items()))])
            finish_run(status, RunPhase.FAILED, reasons.DRY_RUN_FAILED, summary, generation, now)
            plan.events.append(Event("Warning", reasons.DRY_RUN_FAILED, summary[:1024]))
        else:
            message = f"Dry run: all {len(results)} stage Jobs accepted by the API server"
            finish_run(status, RunPhase.SUCCEEDED, reasons.DRY_RUN_SUCCEEDED, message,
                       generation, now)
            plan.events.append(Event("Normal", reasons.DRY_RUN_SUCCEEDED, message))
        return
    for stage, message in rejected.items():
        current = stages.get(stage) or StageCheckpoint()
        if (fallback_failed := reject_fallback(current, message, now)) is not None:
            stages[stage] = fallback_failed
            plan.events.append(Event("Warning", reasons.FALLBACK_FAILED,
                                     f"Fallback of stage {stage} failed ({reasons.JOB_REJECTED}): "
                                     f"{message}"[:1024]))
            continue
        stages[stage] = current.model_copy(update={
            "phase": StagePhase.FAILED, "finish_time": now, "reason": reasons.JOB_REJECTED,
            "message": clip(f"the API server rejected the stage's Job: {message}")})
        plan.events.append(Event("Warning", reasons.STAGE_FAILED,
                                 f"Stage {stage} failed ({reasons.JOB_REJECTED}): "
                                 f"{message}"[:1024]))
    status.stages = stages
    if rejected:
        # The next pass sees the failures and settles the run (finally stages, phase).
        plan.requeue_after = 0.0


def record_claim_rejected(plan: Plan, message: str, now: datetime) -> None:
    """The API server refused the run's workspace claim (quota, invalid spec): no Job was
    created; the run fails, naming the claim."""
    status = plan.status
    claim = status.workspace.claim_name if status.workspace else "?"
    text = f"the API server rejected the workspace PersistentVolumeClaim {claim}: {message}"
    plan.create_jobs = []
    if status.workspace is not None:
        status.workspace = status.workspace.model_copy(update={"created": False})
    generation = status.observed_generation or 1
    if plan.dry_run:
        status.stages = None
        finish_run(status, RunPhase.FAILED, reasons.DRY_RUN_FAILED, f"dry run: {text}",
                   generation, now)
        plan.events.append(Event("Warning", reasons.DRY_RUN_FAILED, text[:1024]))
        return
    if status.pipeline_spec is not None:
        status.stages = {
            stage.name: StageCheckpoint(phase=StagePhase.SKIPPED, reason=reasons.RUN_FAILED,
                                        message="not run: the workspace could not be created",
                                        finish_time=now)
            for stage in status.pipeline_spec.all_stages()}
    finish_run(status, RunPhase.FAILED, reasons.WORKSPACE_FAILED, text, generation, now)
    plan.events = [e for e in plan.events if e.reason != reasons.STAGE_STARTED]
    plan.events.append(Event("Warning", reasons.WORKSPACE_FAILED, text[:1024]))


def decide_invalid_spec(body: dict[str, Any], message: str, now: datetime) -> Plan:
    """A spec the schema let through but the models reject: fail the run, naming the fields."""
    status = PipelineRunStatus.model_validate(body.get("status") or {})
    plan = Plan(status=status)
    if status.phase.finished:
        return plan
    generation = int(body["metadata"].get("generation", 1))
    finish_run(status, RunPhase.FAILED, reasons.INVALID_PIPELINE, message, generation, now)
    plan.events.append(Event("Warning", reasons.INVALID_PIPELINE, message[:1024]))
    return plan
