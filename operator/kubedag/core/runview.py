"""A read-only view of a run for people and programs: what `kubedag get`, `RunHandle.wait()`
and `run_local()` return.

The run's status is written for the operator's next decision (compact checkpoints, camelCase,
times instead of durations). People ask other questions: which stages ran in which order, how
long each waited for a slot versus ran, how many attempts of how many allowed, and what the
process exit code of "wait for this run" should be. This module answers them from the status
alone, with no I/O, so the CLI, the SDK and local runs show the same thing.

Exit codes (the same for `kubedag submit --wait`, `--watch` and `kubedag watch`):

    ====  ===================  =========================================================
    code  constant             meaning
    ====  ===================  =========================================================
    0     EXIT_SUCCEEDED       the run succeeded (also when Degraded: a non-critical
                               stage failed)
    1     EXIT_FAILED          the run failed (a critical stage failed, invalid pipeline)
    2     EXIT_CANCELLED       the run was cancelled (spec.cancel)
    3     EXIT_TIMED_OUT       the run hit its timeoutSeconds, or the caller stopped
                               waiting before it ended (`--timeout`)
    4     EXIT_USAGE           usage or client error: bad flags, file not found, invalid
                               pipeline, API errors (NotFound, Forbidden, ...)
    ====  ===================  =========================================================
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pydantic.alias_generators import to_camel

from kubedag.api import (
    CONDITION_SUCCEEDED,
    PipelineRunStatus,
    PipelineSpec,
    RunPhase,
    Stage,
    StageCheckpoint,
    StagePhase,
    find_condition,
)
from kubedag.core import reasons
from kubedag.core.fallback import effective_outputs
from kubedag.core.stageorder import in_dag_order

EXIT_SUCCEEDED: Final = 0
EXIT_FAILED: Final = 1
EXIT_CANCELLED: Final = 2
EXIT_TIMED_OUT: Final = 3
EXIT_USAGE: Final = 4

EXIT_CODES_HELP: Final = (
    "Exit codes: 0 succeeded, 1 failed, 2 cancelled, 3 timed out (the run's timeout, or "
    "--timeout passed), 4 usage or client error (bad flags, file not found, invalid pipeline, "
    "API error)."
)


@dataclass(frozen=True)
class StageResult:
    """One stage as people read it.

    `wait_seconds` is the time between the stage becoming ready (its last dependency done, or
    the run's start) and its first attempt starting: a long wait means a full stage budget or
    `maxParallelStages`, not a slow stage. `run_seconds` runs from the first attempt's start to
    the finish (or to `now` while running), so it includes retries and their back-off.
    `queue_seconds` (runs with a Kueue queue) is how long its attempts waited for Kueue's
    admission, the current wait included; the first one is part of `wait_seconds`, since a
    stage starts when it is admitted.
    """

    name: str
    phase: StagePhase
    reason: str | None
    message: str | None
    attempts: int
    max_attempts: int
    wait_seconds: float | None
    run_seconds: float | None
    outputs: dict[str, Any]
    fanout_done: int | None
    fanout_total: int | None
    is_finally: bool
    queue_seconds: float | None = None
    # The phase of the stage's fallback, once the stage failed for good and has one; a
    # recovered stage (Failed, fallback Succeeded) reports the fallback's outputs.
    fallback_phase: StagePhase | None = None

    @property
    def recovered(self) -> bool:
        """Failed by itself, recovered by its fallback: done for its dependants."""
        return self.phase == StagePhase.FAILED and self.fallback_phase == StagePhase.SUCCEEDED


@dataclass(frozen=True)
class RunResult:
    """A run as people read it; `stages` is in DAG order (main stages, then finally)."""

    name: str
    namespace: str | None
    phase: RunPhase
    message: str | None
    stages: dict[str, StageResult]
    duration_seconds: float | None
    reason: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the run has ended (its phase never changes again)."""
        return self.phase.finished

    @property
    def timed_out(self) -> bool:
        """The run ended because its timeoutSeconds passed (phase Failed, reason RunTimeout)."""
        return self.phase == RunPhase.FAILED and self.reason == reasons.RUN_TIMEOUT

    @property
    def exit_code(self) -> int:
        """The process exit code of "wait for this run" (see the module's table).

        A run that has not finished maps to EXIT_TIMED_OUT: asking for the exit code of a
        running run means the caller stopped waiting for it.
        """
        if self.phase == RunPhase.SUCCEEDED:
            return EXIT_SUCCEEDED
        if self.phase == RunPhase.CANCELLED:
            return EXIT_CANCELLED
        if self.phase == RunPhase.FAILED:
            return EXIT_TIMED_OUT if self.timed_out else EXIT_FAILED
        return EXIT_TIMED_OUT

    def outputs(self, stage: str) -> dict[str, Any]:
        """The outputs a stage reported; KeyError naming the known stages if there is none."""
        try:
            return self.stages[stage].outputs
        except KeyError:
            known = ", ".join(self.stages) or "none"
            raise KeyError(f"run {self.name} has no stage {stage!r} (stages: {known})") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (`-o json|yaml`), with the exit code a waiter would get."""
        data = asdict(self)
        data["exitCode"] = self.exit_code
        # Through JSON once, so that phases are plain strings for any serialiser (YAML too).
        plain: dict[str, Any] = json.loads(json.dumps(_camel_keys(data)))
        return plain

    @classmethod
    def from_status(
        cls,
        name: str,
        namespace: str | None,
        status: PipelineRunStatus | None,
        spec: PipelineSpec | None = None,
        *,
        now: datetime | None = None,
    ) -> RunResult:
        """Build the view. `spec` gives DAG order, retry limits and finally flags; without it
        the pipeline snapshot in the status is used. `now` (default: the current time) ends
        the durations of what is still running."""
        status = status or PipelineRunStatus()
        spec = spec or status.pipeline_spec
        now = now or datetime.now(UTC)
        checkpoints = status.stages or {}
        condition = find_condition(status.conditions, CONDITION_SUCCEEDED)
        stages: dict[str, StageResult] = {}
        if spec is not None:
            main = in_dag_order(spec.stages)
            finals = in_dag_order(spec.finally_ or [])
            main_names = [s.name for s in spec.stages]
            final_names = {s.name for s in finals}
            for stage in [*main, *finals]:
                is_finally = stage.name in final_names
                deps = [*(stage.depends_on or []), *(main_names if is_finally else [])]
                stages[stage.name] = _stage_result(
                    stage.name, checkpoints.get(stage.name), stage, is_finally,
                    _ready_time(deps, checkpoints, status.start_time), now)
        # Stages the spec does not know (a status without its snapshot): by start time.
        unknown = sorted((n for n in checkpoints if n not in stages),
                         key=lambda n: (_sort_time(checkpoints[n].start_time), n))
        for stage_name in unknown:
            stages[stage_name] = _stage_result(
                stage_name, checkpoints[stage_name], None, False, None, now)
        return cls(
            name=name,
            namespace=namespace,
            phase=status.phase,
            message=condition.message if condition is not None else None,
            reason=condition.reason if condition is not None else None,
            stages=stages,
            duration_seconds=_seconds_between(status.start_time,
                                              status.completion_time or now),
        )


def _stage_result(name: str, checkpoint: StageCheckpoint | None, stage: Stage | None,
                  is_finally: bool, ready: datetime | None, now: datetime) -> StageResult:
    cp = checkpoint or StageCheckpoint()
    started = cp.start_time
    fan_out = cp.fan_out  # unset until a fan-out stage starts and its item count is known
    return StageResult(
        name=name,
        phase=cp.phase,
        reason=cp.reason,
        message=cp.message,
        attempts=cp.attempts or (1 if started is not None else 0),
        max_attempts=1 + (stage.retry.limit if stage is not None and stage.retry else 0),
        wait_seconds=(_seconds_between(ready, started)
                      if started is not None and cp.reason != reasons.STAGE_REUSED else None),
        run_seconds=(_seconds_between(started, cp.finish_time or now)
                     if started is not None else None),
        outputs=dict(effective_outputs(cp) or {}),
        fanout_done=fan_out.succeeded if fan_out is not None else None,
        fanout_total=fan_out.total if fan_out is not None else None,
        is_finally=is_finally,
        queue_seconds=_queue_seconds(cp, now),
        fallback_phase=cp.fallback.phase if cp.fallback is not None else None,
    )


def _queue_seconds(cp: StageCheckpoint, now: datetime) -> float | None:
    """Admission waits so far: those counted at each admission, plus the current one."""
    waiting = _seconds_between(cp.queued_time, now) if cp.queued else None
    if cp.queue_seconds is None and waiting is None:
        return None
    return (cp.queue_seconds or 0) + (waiting or 0)


def _ready_time(deps: list[str], checkpoints: dict[str, StageCheckpoint],
                run_start: datetime | None) -> datetime | None:
    """When a stage could first have started: its last dependency's finish, else run start."""
    finishes = [checkpoints[d].finish_time for d in deps if d in checkpoints]
    known = [t for t in finishes if t is not None]
    return max(known, default=run_start)


def _seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from start to end, never negative (clocks of different writers may disagree)."""
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def _camel_keys(data: dict[str, Any]) -> dict[str, Any]:
    """camelCase keys as everywhere else in kubedag's JSON; stage names and outputs untouched."""
    result = {to_camel(k): v for k, v in data.items() if k != "stages"}
    result["stages"] = {name: {to_camel(k): v for k, v in stage.items()}
                        for name, stage in data["stages"].items()}
    return result


def _sort_time(value: datetime | None) -> datetime:
    return value or datetime.max.replace(tzinfo=UTC)


def phase_glyph(phase: StagePhase | RunPhase) -> str:
    """One character per phase, for trees, tables and transition lines."""
    return _GLYPHS.get(phase.value, "?")


_GLYPHS: Final[dict[str, str]] = {
    "Pending": "○",
    "Running": "◐",
    "Retrying": "↻",
    "Paused": "‖",
    "Succeeded": "✔",
    "Failed": "✘",
    "Skipped": "⊘",
    "Cancelled": "■",
}


def format_seconds(seconds: float | None) -> str:
    """Compact durations for tables: `0.4s`, `12s`, `3m05s`, `1h02m`; `-` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
