"""Small factories for decide() tests: a fake clock, pipelines, RunFacts, Job and pod summaries.

The core is pure, so a test builds the facts a reconcile would see, calls decide(), and checks
the plan. `step()` plays the shell: it feeds a plan's status (and the Jobs it created, as the
shell's expectations would) back into the next pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from kubedag.api import (
    PipelineRunSpec,
    PipelineRunStatus,
    PipelineSpec,
    StageCheckpoint,
    StagePhase,
)
from kubedag.core.decide import RunFacts, decide
from kubedag.core.jobspec import RunIdentity
from kubedag.core.naming import job_name
from kubedag.core.observe import JobSummary, PodSummary, summarize_job
from kubedag.core.plan import Plan

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
RUN = "run"
NAMESPACE = "ns"
UID = "uid-1234"
IDENTITY = RunIdentity(name=RUN, namespace=NAMESPACE, uid=UID, pipeline="pipe")


def at(seconds: float) -> datetime:
    """The fake clock: T0 plus this many seconds."""
    return T0 + timedelta(seconds=seconds)


def stage(name: str, *deps: str, **fields: Any) -> dict[str, Any]:
    """A stage as camelCase JSON (the API's spelling), running an image."""
    out: dict[str, Any] = {"name": name, "image": "busybox"}
    if deps:
        out["dependsOn"] = list(deps)
    out.update(fields)
    return out


def pipeline(*stages: dict[str, Any], **fields: Any) -> PipelineSpec:
    return PipelineSpec.model_validate({"stages": list(stages), **fields})


def facts(
    spec: PipelineSpec | None = None,
    *,
    status: PipelineRunStatus | None = None,
    jobs: Iterable[JobSummary] = (),
    pods: Sequence[PodSummary] = (),
    run_spec: Mapping[str, Any] | None = None,
    referenced: PipelineSpec | None = None,
    recently_created: Iterable[str] = (),
    resume_checkpoints: Mapping[str, StageCheckpoint] | None = None,
    created: datetime = T0,
    identity: RunIdentity = IDENTITY,
) -> RunFacts:
    """RunFacts for an inline pipeline (or a pipelineRef when `spec` is None)."""
    raw: dict[str, Any] = dict(run_spec or {})
    if spec is not None:
        raw.setdefault("pipelineSpec", spec)
    else:
        raw.setdefault("pipelineRef", {"name": "pipe"})
    return RunFacts(
        identity=identity,
        generation=1,
        created=created,
        spec=PipelineRunSpec.model_validate(raw),
        status=status or PipelineRunStatus(),
        referenced_pipeline=referenced,
        jobs={j.name: j for j in jobs},
        pods=list(pods),
        recently_created=frozenset(recently_created),
        resume_checkpoints=resume_checkpoints,
    )


def job(stage_name: str, attempt: int = 1, *, completions: int = 1, finished: str | None = None,
        reason: str | None = None, message: str | None = None,
        deleting: bool = False, suspended: bool = False,
        started: datetime | None = None) -> JobSummary:
    return JobSummary(name=job_name(RUN, stage_name, attempt), stage=stage_name, attempt=attempt,
                      created=T0, completions=completions, deleting=deleting,
                      finished=finished, reason=reason, message=message, suspended=suspended,
                      started=started)


def pod(stage_name: str, attempt: int = 1, *, phase: str = "Succeeded",
        exit_code: int | None = None,
        outputs: dict[str, Any] | None = None, message: str | None = None,
        index: int | None = None, finished: datetime | None = None,
        progress: float | None = None, usage: dict[str, Any] | None = None,
        image_id: str | None = None) -> PodSummary:
    """A pod of the stage's Job; `outputs`/`usage` go into the worker's termination message."""
    if exit_code is None and phase in ("Succeeded", "Failed"):
        exit_code = 0 if phase == "Succeeded" else 1
    if message is None and (outputs is not None or usage is not None):
        report: dict[str, Any] = {}
        if outputs is not None:
            report["outputs"] = outputs
        if usage is not None:
            report["usage"] = usage
        message = json.dumps(report)
    suffix = f"-{index}" if index is not None else ""
    return PodSummary(
        name=f"{job_name(RUN, stage_name, attempt)}{suffix}-abcde",
        job=job_name(RUN, stage_name, attempt), stage=stage_name, attempt=attempt, phase=phase,
        index=index, exit_code=exit_code if phase in ("Succeeded", "Failed") else None,
        termination_message=message, terminated_reason="Completed" if phase == "Succeeded"
        else ("Error" if phase == "Failed" else None),
        started=T0, finished=finished, progress=progress, image_id=image_id)


def created_jobs(plan: Plan) -> list[JobSummary]:
    """The Jobs a plan creates, as the shell's expectations present them to the next pass."""
    return [summarize_job(m) for m in plan.create_jobs]


def step(previous: RunFacts, plan: Plan, *, now: datetime, pods: Sequence[PodSummary] = (),
         jobs: Iterable[JobSummary] = (), **changes: Any) -> RunFacts:
    """The facts of the next pass: the plan's status, every Job seen so far, new pods."""
    seen = {**previous.jobs, **{j.name: j for j in created_jobs(plan)},
            **{j.name: j for j in jobs}}
    return replace(previous, status=plan.status, jobs=seen, pods=list(pods),
                   recently_created=frozenset(), **changes)


def started(plan: Plan) -> list[str]:
    """Stage names of the Jobs a plan creates, in order."""
    return [m["metadata"]["labels"]["kubedag.io/stage"] for m in plan.create_jobs]


def phases(plan: Plan) -> dict[str, StagePhase]:
    return {name: cp.phase for name, cp in (plan.status.stages or {}).items()}


def reasons_of(plan: Plan) -> list[str]:
    return [e.reason for e in plan.events]


def run_to_end(f: RunFacts, now: datetime, outcomes: Mapping[str, PodSummary] | None = None,
               limit: int = 50) -> Plan:
    """Drive a run: every started stage's pod succeeds (or ends as `outcomes` says)."""
    plan = decide(f, now)
    for _ in range(limit):
        if plan.status.phase.finished:
            return plan
        running = [(n, cp) for n, cp in (plan.status.stages or {}).items()
                   if cp.phase == StagePhase.RUNNING]
        finished_pods = [
            (outcomes or {}).get(n) or pod(n, cp.attempts or 1, outputs={"stage": n})
            for n, cp in running]
        now = now + timedelta(seconds=10)
        f = step(f, plan, now=now, pods=finished_pods)
        plan = decide(f, now)
    raise AssertionError(f"run did not finish: {phases(plan)}")
