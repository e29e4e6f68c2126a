"""The run-level parts of status: phase, the Succeeded condition, progress and ETA."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from kubedag.api import (
    CONDITION_SUCCEEDED,
    Condition,
    ConditionStatus,
    PipelineRunStatus,
    PipelineSpec,
    RunPhase,
    RunProgress,
    StageCheckpoint,
    StagePhase,
    find_condition,
    set_condition,
)
from kubedag.core import reasons
from kubedag.core.fallback import effective_phase, recovered_stages
from kubedag.core.memo import WeakMemo
from kubedag.core.plan import Event
from kubedag.core.stageorder import all_in_order

_ETA_MIN_FINISHED = 1


def _eta_walk(pipeline: PipelineSpec) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each stage with what it waits for, in the order the ETA walks them: main stages first
    in DAG order, then finally stages, which wait for the whole main DAG too."""
    main_names = tuple(s.name for s in pipeline.stages)
    finals = {s.name for s in pipeline.finally_ or []}
    return tuple((stage.name, tuple(stage.depends_on or ()) + (
        main_names if stage.name in finals else ())) for stage in all_in_order(pipeline))


_eta_walks = WeakMemo(_eta_walk)


def _set(status: PipelineRunStatus, type_: str, value: ConditionStatus, reason: str,
         message: str, generation: int, now: datetime) -> None:
    status.conditions = set_condition(list(status.conditions or []), Condition(
        type=type_, status=value, reason=reason, message=message[:32768],
        last_transition_time=now, observed_generation=generation))


def finish_run(status: PipelineRunStatus, phase: RunPhase, reason: str, message: str,
               generation: int, now: datetime) -> None:
    status.phase = phase
    status.completion_time = now
    status.start_time = status.start_time or now
    status.observed_generation = generation
    status.eta = None
    value = ConditionStatus.TRUE if phase == RunPhase.SUCCEEDED else ConditionStatus.FALSE
    _set(status, CONDITION_SUCCEEDED, value, reason, message, generation, now)
    if status.pipeline_spec is not None:
        status.progress = _progress(status.pipeline_spec, status.stages or {})


def refresh_run_status(
    status: PipelineRunStatus,
    pipeline: PipelineSpec | None,
    suspended: bool,
    generation: int,
    now: datetime,
    events: Sequence[Event],
    waiting: tuple[str, str] | None = None,
    queued: int = 0,
) -> None:
    """Phase, condition, progress and ETA of a run that is not finished (or just finished)."""
    status.observed_generation = generation
    if status.phase.finished:
        _degraded(status, pipeline, generation, now)
        return
    if waiting is not None:
        status.phase = RunPhase.PENDING
        _set(status, CONDITION_SUCCEEDED, ConditionStatus.UNKNOWN, *waiting, generation, now)
        return
    assert pipeline is not None
    stages = status.stages or {}
    before = status.progress
    status.progress = _progress(pipeline, stages)
    _schedulable(status, stages, generation, now)
    if suspended:
        status.phase = RunPhase.PAUSED
        _set(status, CONDITION_SUCCEEDED, ConditionStatus.UNKNOWN, reasons.PAUSED,
             "Paused by spec.suspend: no new stages start", generation, now)
    else:
        status.phase = RunPhase.RUNNING
        done = status.progress
        message = f"{done.completed}/{done.total} stages done"
        if queued:
            message += f"; {queued} ready stage(s) waiting for the operator's stage budget"
        in_kueue = sum(1 for cp in stages.values() if cp.queued)
        if in_kueue:
            message += f"; {in_kueue} stage(s) queued for Kueue's admission"
        _set(status, CONDITION_SUCCEEDED, ConditionStatus.UNKNOWN, reasons.RUNNING, message,
             generation, now)
    if (before is None or status.progress.percent != before.percent or status.eta is None
            or status.eta <= now):
        # The ETA is estimated again at each percent of progress (at each finished stage on
        # runs of up to 100): in between it stands, as now plus the remaining path is about
        # constant. Walking a 900-stage DAG on every pass for it was a fifth of decide()'s CPU
        # on `make bench`'s lattice (py-spy), and still a fifth when walked at each finished
        # stage, as the lattice's and the fan-out's passes each see one or two finish.
        status.eta = _steady(status.eta, _eta(pipeline, stages, now))
    _degraded(status, pipeline, generation, now)


ETA_TOLERANCE = timedelta(seconds=5)


def _steady(old: datetime | None, new: datetime | None) -> datetime | None:
    """Keep the previous ETA while the new estimate is close: an estimate that moved by a few
    milliseconds on every pass would cost a status write per pod event."""
    if old is not None and new is not None and abs(new - old) < ETA_TOLERANCE:
        return old
    return new.replace(microsecond=0) if new is not None else None


def _progress(pipeline: PipelineSpec, stages: dict[str, StageCheckpoint]) -> RunProgress:
    total = len(pipeline.all_stages())
    # A stage whose fallback runs is not finished yet.
    completed = sum(1 for cp in stages.values() if effective_phase(cp).finished)
    return RunProgress.of(min(completed, total), total)


def _schedulable(status: PipelineRunStatus, stages: dict[str, StageCheckpoint],
                 generation: int, now: datetime) -> None:
    """`Schedulable` False while started stages wait for a node, naming them with the
    scheduler's word; True again once they are placed. Never added to a run that had no such
    wait: a condition on every run would be one more field on every status for nothing."""
    waiting = [(name, cp.message) for name, cp in stages.items()
               if cp.phase == StagePhase.PENDING and cp.reason == reasons.UNSCHEDULABLE]
    if waiting:
        shown = "; ".join(f"{name}: {message}" for name, message in waiting[:10])
        more = f"; and {len(waiting) - 10} more" if len(waiting) > 10 else ""
        _set(status, reasons.CONDITION_SCHEDULABLE, ConditionStatus.FALSE,
             reasons.STAGES_UNSCHEDULABLE,
             f"{len(waiting)} stage(s) wait for a node: {shown}{more}", generation, now)
    elif find_condition(status.conditions, reasons.CONDITION_SCHEDULABLE) is not None:
        _set(status, reasons.CONDITION_SCHEDULABLE, ConditionStatus.TRUE,
             reasons.STAGES_SCHEDULED, "Every started stage's pods have been placed on nodes",
             generation, now)


def _degraded(status: PipelineRunStatus, pipeline: PipelineSpec | None, generation: int,
              now: datetime) -> None:
    if pipeline is None:
        return
    stages = status.stages or {}
    if not any(cp.phase == StagePhase.FAILED for cp in stages.values()):
        return  # both kinds below failed (on nearly every pass, nothing has)
    failed = [s.name for s in pipeline.all_stages() if not s.critical and effective_phase(
        stages.get(s.name, StageCheckpoint())) == StagePhase.FAILED]
    recovered = recovered_stages(pipeline.all_stages(), stages)
    parts = []
    if failed:
        parts.append(f"Non-critical stage(s) failed, their dependents were skipped: "
                     f"{', '.join(failed)}")
    if recovered:
        parts.append(f"recovered by fallback: {', '.join(recovered)}")
    if parts:
        reason = reasons.NON_CRITICAL_STAGE_FAILED if failed else reasons.RECOVERED_BY_FALLBACK
        _set(status, reasons.CONDITION_DEGRADED, ConditionStatus.TRUE, reason,
             "; ".join(parts), generation, now)


def _eta(pipeline: PipelineSpec, stages: dict[str, StageCheckpoint],
         now: datetime) -> datetime | None:
    """Now plus the longest remaining path, each unfinished stage costing the mean duration
    of the finished ones (a running stage: what is left of that mean)."""
    durations = [(cp.finish_time - cp.start_time).total_seconds() for cp in stages.values()
                 if cp.phase == StagePhase.SUCCEEDED and cp.start_time and cp.finish_time]
    if len(durations) < _ETA_MIN_FINISHED:
        return None
    mean = sum(durations) / len(durations)
    remaining: dict[str, float] = {}
    longest = 0.0
    for name, waits_for in _eta_walks(pipeline):
        cp = stages.get(name)
        if cp is not None and effective_phase(cp).finished:
            # Nothing is left on a path through a finished stage: what is left upstream of it
            # (a dependency still running beside one that failed and skipped it) is counted on
            # that dependency's own paths. Not walking its dependencies halves the walk.
            remaining[name] = 0.0
            continue
        if cp is not None and cp.phase == StagePhase.RUNNING and cp.start_time:
            cost = max(mean - (now - cp.start_time).total_seconds(), 0.0)
        else:
            cost = mean
        left = cost + max([remaining.get(d, 0.0) for d in waits_for], default=0.0)
        remaining[name] = left
        longest = max(longest, left)
    return now + timedelta(seconds=round(longest, 1))

