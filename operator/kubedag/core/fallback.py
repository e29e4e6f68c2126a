"""Stage fallbacks: another way to compute a stage's result, once the stage failed for good.

The stage's checkpoint keeps phase Failed with its cause (reason, message, exit code of its own
attempts); the fallback's state lives beside it, in `StageCheckpoint.fallback`. Whatever asks
what a stage means to the rest of the run (dependants, `when`, maxParallelStages, the run's
completion and progress) reads its *effective* phase:

    stage     fallback                    effective
    Failed    Pending, Running, Retrying  Running: still in flight, dependants wait
    Failed    Succeeded                   Succeeded: recovered, the fallback's outputs are its
    Failed    Failed, Cancelled           Failed: as if it had no fallback
    any other phase, or no fallback       the stage's own phase

decide() calls in at a few named points: `start_fallback` when a stage has failed for good
(the circuit breaker may call it too, to run a fallback at once instead of waiting),
`start_due_fallbacks` where stages start (within maxParallelStages), `apply_fallback_result`
for what the fallback's Job and pods say, and `stop_fallback` when the run ends early.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from kubedag.api import (
    Fallback,
    FallbackCheckpoint,
    PipelineSpec,
    RetryPolicy,
    Stage,
    StageCheckpoint,
    StagePhase,
)
from kubedag.core import reasons
from kubedag.core.observe import AttemptResult, JobSummary, Outcome
from kubedag.core.plan import Plan, clip


class Pass(Protocol):
    """What the fallback hooks use of decide()'s state of one reconcile pass."""

    now: datetime
    pipeline: PipelineSpec
    checkpoints: dict[str, StageCheckpoint]
    plan: Plan

    @property
    def stamp(self) -> datetime: ...

    def event(self, type_: str, reason: str, message: str) -> None: ...

    def wake_at(self, when: datetime) -> None: ...

    def build_job(self, stage: Stage, attempt: int,
                  outputs: Mapping[str, Mapping[str, Any] | None] | None = None, *,
                  fallback: bool = False) -> dict[str, Any]: ...


# --- what the rest of the run sees ---------------------------------------------------------

def effective_phase(cp: StageCheckpoint) -> StagePhase:
    """The stage's phase as dependants and the run see it (see the module's table)."""
    fallback = cp.fallback
    if cp.phase != StagePhase.FAILED or fallback is None:
        return cp.phase
    if fallback.phase == StagePhase.SUCCEEDED:
        return StagePhase.SUCCEEDED
    return StagePhase.FAILED if fallback.phase.finished else StagePhase.RUNNING


def recovered(cp: StageCheckpoint) -> bool:
    """The stage failed and its fallback succeeded."""
    return (cp.phase == StagePhase.FAILED and cp.fallback is not None
            and cp.fallback.phase == StagePhase.SUCCEEDED)


def effective_outputs(cp: StageCheckpoint) -> dict[str, Any] | None:
    """The outputs dependants read: the fallback's once it recovered the stage."""
    if recovered(cp):
        assert cp.fallback is not None
        return cp.fallback.outputs
    return cp.outputs


def effective_reason(cp: StageCheckpoint) -> str | None:
    """`stages.<name>.reason` as `when` reads it: RecoveredByFallback for a recovered stage,
    so that a hand-written branch can still tell it from one that succeeded by itself."""
    return reasons.RECOVERED_BY_FALLBACK if recovered(cp) else cp.reason


def fallback_active(cp: StageCheckpoint) -> bool:
    """The stage's fallback has not finished: the stage is in flight, not finished."""
    return cp.fallback is not None and not cp.fallback.phase.finished


def fallback_in_flight(cp: StageCheckpoint) -> bool:
    """The fallback's Job exists and has not ended: it holds a place in maxParallelStages."""
    return cp.fallback is not None and cp.fallback.in_flight


def recovered_stages(stages: Sequence[Stage],
                     checkpoints: Mapping[str, StageCheckpoint]) -> list[str]:
    """`extract (primary failed: OOMKilled)` for each recovered stage, for the run's Degraded
    condition and its closing Event."""
    return [f"{s.name} (primary failed: {cp.reason or reasons.EXIT_CODE})"
            for s in stages if (cp := checkpoints.get(s.name)) is not None and recovered(cp)]


def failure_note(cp: StageCheckpoint) -> str:
    """What a failed stage's fallback adds to the run's Failed message ("" without one)."""
    fallback = cp.fallback
    if fallback is None or fallback.phase != StagePhase.FAILED:
        return ""
    detail = fallback.reason or reasons.EXIT_CODE
    if fallback.message:
        detail += f": {clip(fallback.message, 300)}"
    return f"; its fallback failed too ({detail})"


def fallback_stage(stage: Stage) -> Stage:
    """The fallback as a stage to build a Job from: the stage's name, dependencies,
    criticality and priority, the fallback's way to run. What the fallback leaves unset it
    does not inherit: an alternative usually differs in image, processor and resources, and
    half of one and half of the other would be neither."""
    assert stage.fallback is not None
    how = {name: getattr(stage.fallback, name) for name in Fallback.model_fields}
    return stage.model_copy(update={**how, "fallback": None, "when": None})


# --- decide()'s hooks ------------------------------------------------------------------------

def start_fallback(p: Pass, stage: Stage, cause: str) -> bool:
    """Give a stage that failed for good its fallback, if it has one (and it has not run):
    the fallback's Job is created where stages start, in the same pass when there is room.
    ``cause``: why the stage failed (its reason), for people. The stage's checkpoint must
    already say Failed with that cause; the circuit breaker, which fails a stage at once
    while its circuit is open, may call this too. Returns whether a fallback was set up."""
    cp = p.checkpoints.get(stage.name)
    if stage.fallback is None or cp is None or cp.fallback is not None:
        return False
    p.checkpoints[stage.name] = cp.model_copy(update={"fallback": FallbackCheckpoint(
        message=f"waiting to start: the stage failed ({cause})")})
    return True


def settle_unstarted_fallbacks(p: Pass, stopping: bool) -> None:
    """A critical failure elsewhere stops new work: a fallback that has not started (or
    waits to retry) fails, as a stage's pending retry does."""
    if not stopping:
        return
    for name, cp in list(p.checkpoints.items()):
        fallback = cp.fallback
        if fallback is None or fallback.phase.finished or fallback.in_flight:
            continue
        _finish(p, name, cp, {"phase": StagePhase.FAILED, "reason": reasons.RUN_FAILED,
                              "message": "not run: a critical stage failed",
                              "next_retry_time": None})


def start_due_fallbacks(p: Pass, room: int | None) -> int | None:
    """Create the Jobs of fallbacks that are due (first attempts, retries whose time has
    come), at most ``room`` of them (None: no limit); returns the room left for stages."""
    stages = {s.name: s for s in p.pipeline.all_stages()}
    for name, cp in list(p.checkpoints.items()):
        fallback = cp.fallback
        if (fallback is None or fallback.phase not in (StagePhase.PENDING, StagePhase.RETRYING)
                or fallback.in_flight or name not in stages):
            continue
        if fallback.next_retry_time is not None and fallback.next_retry_time > p.now:
            p.wake_at(fallback.next_retry_time)
            continue
        if room is not None and room <= 0:
            continue
        if _create(p, stages[name], cp, fallback) and room is not None:
            room -= 1
    return room


def _create(p: Pass, stage: Stage, cp: StageCheckpoint, fallback: FallbackCheckpoint) -> bool:
    attempt = (fallback.attempts or 0) + 1
    try:
        manifest = p.build_job(fallback_stage(stage), attempt, fallback=True)
    except ValueError as error:
        _finish(p, stage.name, cp, {"phase": StagePhase.FAILED,
                                    "reason": reasons.INVALID_REFERENCE,
                                    "message": clip(str(error)), "next_retry_time": None})
        return False
    p.plan.create_jobs.append(manifest)
    _set(p, stage.name, cp, {
        "phase": StagePhase.RUNNING, "attempts": attempt, "job": manifest["metadata"]["name"],
        "start_time": fallback.start_time or p.stamp, "next_retry_time": None,
        "message": None, "reason": None})
    again = "" if attempt == 1 else f" (attempt {attempt})"
    p.event("Normal", reasons.FALLBACK_STARTED,
            f"Stage {stage.name} failed ({cp.reason or reasons.EXIT_CODE}): running its "
            f"fallback{again}")
    return True


def adopt_fallback(p: Pass, stage: Stage, newest: JobSummary) -> None:
    """``newest``, the stage's latest fallback Job, is newer than the checkpoint knows: this
    operator created it but crashed before recording it. Adopt it, never create it again
    (as decide._adopt does for a stage's own Jobs)."""
    cp = p.checkpoints.get(stage.name)
    if (cp is None or cp.fallback is None or cp.fallback.phase.finished
            or newest.attempt <= (cp.fallback.attempts or 0)):
        return
    _set(p, stage.name, cp, {
        "phase": StagePhase.RUNNING, "attempts": newest.attempt, "job": newest.name,
        "start_time": cp.fallback.start_time or p.stamp, "next_retry_time": None})


def apply_fallback_result(p: Pass, stage: Stage, result: AttemptResult,
                          too_large: str | None) -> None:
    """Fold the verdict on the fallback's current attempt into its checkpoint: progress,
    success (the stage is recovered), a retry under the fallback's own policy, or failure.
    ``too_large``: why the attempt's outputs cannot be kept, if they cannot."""
    cp = p.checkpoints[stage.name]
    fallback = cp.fallback
    assert fallback is not None and stage.fallback is not None
    if result.outcome in (Outcome.RUNNING, Outcome.PENDING):
        phase = StagePhase.PENDING if result.outcome is Outcome.PENDING else StagePhase.RUNNING
        update: dict[str, Any] = {"phase": phase, "message": clip(result.message),
                                  "reason": result.reason if phase == StagePhase.PENDING
                                  else None}
        if any(getattr(fallback, key) != value for key, value in update.items()):
            _set(p, stage.name, cp, update)
        return
    if result.outcome is Outcome.SUCCEEDED and not too_large:
        _finish(p, stage.name, cp, {"phase": StagePhase.SUCCEEDED, "outputs": result.outputs,
                                    "exit_code": None, "message": None, "reason": None},
                result.finished)
        return
    reason = reasons.OUTPUT_TOO_LARGE if too_large else (result.reason or reasons.EXIT_CODE)
    message = too_large or result.message
    update = {"exit_code": None if too_large else result.exit_code, "reason": reason,
              "message": clip(message)}
    policy = stage.fallback.retry or RetryPolicy()
    attempts = fallback.attempts or 1
    retryable = (not too_large and policy.is_retryable(result.exit_code)
                 and reason not in reasons.NOT_RETRIED)
    if attempts <= policy.limit and retryable:
        retry_at = p.now + timedelta(seconds=policy.delay_seconds(attempts))
        _set(p, stage.name, cp, {**update, "phase": StagePhase.RETRYING,
                                 "next_retry_time": retry_at})
        p.wake_at(retry_at)
        p.event("Warning", reasons.FALLBACK_RETRYING,
                f"Fallback of stage {stage.name} attempt {attempts} failed ({reason}: "
                f"{message}); retry {attempts}/{policy.limit} at {retry_at.isoformat()}")
        return
    _finish(p, stage.name, cp, {**update, "phase": StagePhase.FAILED}, result.finished)


def stop_fallback(p: Pass, name: str, reason: str, message: str,
                  jobs: Mapping[str, JobSummary]) -> None:
    """The run ends now (cancel, timeout): a running fallback's Job is deleted (unless
    ``jobs``, the observed ones, say it is already going) and the fallback is Cancelled,
    like a running stage."""
    cp = p.checkpoints.get(name)
    if cp is None or cp.fallback is None or cp.fallback.phase.finished:
        return
    job = cp.fallback.job
    if cp.fallback.in_flight and job and not (job in jobs and jobs[job].deleting):
        p.plan.delete_jobs.append(job)
    _set(p, name, cp, {"phase": StagePhase.CANCELLED, "reason": reason, "message": message,
                       "finish_time": p.stamp, "next_retry_time": None})


def reject_fallback(cp: StageCheckpoint, message: str, now: datetime) -> StageCheckpoint | None:
    """The API server refused a Job of this stage: when the stage's fallback was being
    started, it is the fallback's Job, and the fallback fails (not the stage again); None
    when the Job was the stage's own."""
    if cp.fallback is None or cp.fallback.phase.finished:
        return None
    return cp.model_copy(update={"fallback": cp.fallback.model_copy(update={
        "phase": StagePhase.FAILED, "finish_time": now, "reason": reasons.JOB_REJECTED,
        "message": clip(f"the API server rejected the fallback's Job: {message}")})})


def _set(p: Pass, name: str, cp: StageCheckpoint, update: dict[str, Any]) -> StageCheckpoint:
    assert cp.fallback is not None
    fallback = FallbackCheckpoint.model_validate({**cp.fallback.model_dump(), **update})
    new = cp.model_copy(update={"fallback": fallback})
    p.checkpoints[name] = new
    return new


def _finish(p: Pass, name: str, cp: StageCheckpoint, update: dict[str, Any],
            finished: datetime | None = None) -> None:
    """The fallback ended: Succeeded (the stage is recovered) or Failed (the stage stays
    Failed, and now for good); one Event either way."""
    new = _set(p, name, cp, {**update, "finish_time": finished or p.stamp})
    assert new.fallback is not None
    cause = cp.reason or reasons.EXIT_CODE
    if new.fallback.phase == StagePhase.SUCCEEDED:
        p.event("Normal", reasons.FALLBACK_SUCCEEDED,
                f"Stage {name} recovered by its fallback (primary failed: {cause})")
    else:
        p.event("Warning", reasons.FALLBACK_FAILED,
                f"Fallback of stage {name} failed ({new.fallback.reason}): "
                f"{new.fallback.message}; the stage stays Failed ({cause})")
