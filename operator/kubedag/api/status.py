"""PipelineRun status: the run's phase and a compact checkpoint per stage.

The checkpoints are what makes a restart or a resumed run skip finished stages, so they hold
everything a later decision needs and nothing more: a 1,000-stage run must stay far below
etcd's 1.5 MiB object limit (serialise with `kubedag.api.to_k8s`, which drops unset fields).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field, field_serializer

from kubedag.api._base import ATOMIC, OPAQUE, ApiModel
from kubedag.api.cache import StageCacheStatus
from kubedag.api.conditions import Condition
from kubedag.api.pipeline import PipelineSpec
from kubedag.api.workspace import WorkspaceStatus


class RunPhase(StrEnum):
    """Lifecycle phase of a PipelineRun."""

    PENDING = "Pending"
    RUNNING = "Running"
    PAUSED = "Paused"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        """Terminal phases never change again."""
        return self in _FINISHED_RUN_PHASES


_FINISHED_RUN_PHASES = frozenset({RunPhase.SUCCEEDED, RunPhase.FAILED, RunPhase.CANCELLED})


class StagePhase(StrEnum):
    """Lifecycle phase of one stage within a run.

    Pending covers both "not started yet" and "started, but waiting" (an attempt's Job
    exists; the checkpoint's `job` is set and its reason says what it waits for: `Queued`
    for Kueue's admission, `Unschedulable` for a node); `StageCheckpoint.in_flight` tells
    them apart.
    """

    PENDING = "Pending"
    RUNNING = "Running"
    RETRYING = "Retrying"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    CANCELLED = "Cancelled"

    @property
    def done(self) -> bool:
        """Done for dependants: a skipped stage lets its dependants proceed, as in Tekton."""
        return self in (StagePhase.SUCCEEDED, StagePhase.SKIPPED)

    @property
    def finished(self) -> bool:
        """Terminal: no further attempt will be made."""
        return self in _FINISHED_STAGE_PHASES


_FINISHED_STAGE_PHASES = frozenset(
    {StagePhase.SUCCEEDED, StagePhase.FAILED, StagePhase.SKIPPED, StagePhase.CANCELLED}
)


# The reason of a Pending stage whose Job waits for Kueue's admission (kubedag.core.reasons
# re-exports it with the other reasons).
QUEUED = "Queued"


class ResourceUsage(ApiModel):
    """What the stage's last attempt consumed, as its worker reported it.

    The GPU fields are set only when the worker was given GPUs (NVIDIA_VISIBLE_DEVICES or
    CUDA_VISIBLE_DEVICES) and could read them through NVML: absent means "not measured", never
    zero. For a fan-out stage they describe one pod, like ``peakRssBytes``: the largest peak and
    device count of any pod, the mean of the pods' mean utilizations, the highest peak.
    """

    cpu_seconds: float | None = Field(default=None, ge=0, description="CPU time, in seconds.")
    peak_rss_bytes: int | None = Field(
        default=None, ge=0, description="Peak resident memory, in bytes."
    )
    gpu_devices: int | None = Field(
        default=None, ge=0, description="GPUs measured: those the worker's pod was given."
    )
    gpu_memory_peak_bytes: int | None = Field(
        default=None, ge=0,
        description="Peak GPU memory in use above what was in use before the attempt started, "
        "summed over its GPUs (the CUDA context included), in bytes.",
    )
    gpu_utilization_mean: float | None = Field(
        default=None, ge=0, le=1,
        description="Mean GPU utilization over the attempt (0 to 1): the share of time a kernel "
        "was running, as NVML reports it, averaged over its GPUs.",
    )
    gpu_utilization_peak: float | None = Field(
        default=None, ge=0, le=1, description="Highest GPU utilization seen on any of its GPUs "
        "(0 to 1).",
    )


class FanOutStatus(ApiModel):
    """Counts of a fan-out stage's pods (completion indexes)."""

    succeeded: int = Field(default=0, ge=0, description="Indexes that succeeded.")
    failed: int = Field(default=0, ge=0, description="Indexes that failed.")
    total: int = Field(default=0, ge=0, description="Number of indexes (batches).")


class FallbackCheckpoint(ApiModel):
    """The recorded state of a stage's fallback, beside the stage's own (Failed) state.

    A model of its own, not a nested StageCheckpoint: a CRD schema cannot recurse.
    """

    phase: StagePhase = Field(
        default=StagePhase.PENDING,
        description="Pending (about to start, or its Job waits), Running, Retrying, then "
        "Succeeded (the stage is recovered: dependants read these outputs), Failed or "
        "Cancelled.")
    attempts: int | None = Field(default=None, ge=0, description="Fallback attempts started.")
    job: str | None = Field(default=None, description="Name of the current or last fallback Job.")
    reason: str | None = Field(
        default=None, max_length=64,
        description="CamelCase reason of the fallback's phase, as a stage's `reason`.")
    message: str | None = Field(default=None, max_length=4096, description="Why, for people.")
    exit_code: int | None = Field(
        default=None, description="Exit code of the fallback's last failed attempt.")
    outputs: dict[str, Any] | None = Field(
        default=None, description="The fallback's outputs: the stage's, once it is recovered.")
    start_time: datetime | None = Field(
        default=None, description="When the first fallback attempt was created.")
    finish_time: datetime | None = Field(
        default=None, description="When the fallback finished.")
    next_retry_time: datetime | None = Field(
        default=None, description="When the fallback's next attempt may start (Retrying).")

    @property
    def in_flight(self) -> bool:
        """A fallback attempt's Job exists and has not ended (see StageCheckpoint.in_flight)."""
        return self.job is not None and self.phase in (StagePhase.RUNNING, StagePhase.PENDING)


class StageCheckpoint(ApiModel):
    """The recorded state of one stage: enough to resume without re-running finished work."""

    phase: StagePhase = Field(
        default=StagePhase.PENDING,
        description="Stage phase. Pending: not started yet or, with `job` set, started and "
        "waiting: for Kueue to admit its Job (reason `Queued`, the message is Kueue's) or for "
        "its pod to be placed (reason `Unschedulable`: no node can take it now, the message "
        "is the scheduler's); Running once admitted and a pod is placed.",
    )
    attempts: int | None = Field(
        default=None, ge=0, description="Attempts started so far (1 for the first run)."
    )
    job: str | None = Field(default=None, description="Name of the current or last Job.")
    start_time: datetime | None = Field(
        default=None,
        description="When the first attempt began running (with a Kueue queue: when Kueue "
        "admitted it).")
    queued_time: datetime | None = Field(
        default=None,
        description="While the current attempt's Job waits for Kueue to admit it (phase "
        "Pending, reason `Queued`): since when.")
    queue_seconds: int | None = Field(
        default=None, ge=0,
        description="Seconds the stage's attempts waited for Kueue admission in all, counted "
        "when each was admitted: the stage's queue time, apart from its run time.")
    finish_time: datetime | None = Field(default=None, description="When the stage finished.")
    exit_code: int | None = Field(
        default=None,
        description="Exit code of the last failed attempt (unset after a success: it is 0).",
    )
    reason: str | None = Field(
        default=None,
        max_length=64,
        description="CamelCase reason of the phase, for tools. Failed (or Retrying): "
        "`ExitCode` (non-zero exit, see exitCode), `DeadlineExceeded` (timeoutSeconds), "
        "`OOMKilled`, `ImagePullFailed`, `ContainerConfigError` (e.g. a missing Secret or "
        "ConfigMap), `PodLost` (pod deleted or evicted), `JobLost`, `JobFailed`, "
        "`JobRejected`, `OutputTooLarge`, `InvalidReference`, `WhenEvaluationFailed`, "
        "`Unschedulable` (unschedulableTimeoutSeconds passed, or a dry run found no node that "
        "fits). Pending with a Job: `Queued` (its Job waits for Kueue to admit it, see "
        "spec.queueName) or `Unschedulable`. "
        "Skipped: `WhenFalse` (lets dependants run), `UpstreamFailed`, `UpstreamSkipped`, "
        "or, for a stage that never started when the run ended, `RunFailed`, `RunCancelled`, "
        "`RunTimedOut`. Cancelled (was running when the run ended): `RunCancelled`, "
        "`RunTimedOut`. `StageReused` for a stage taken over from spec.resumeFrom. Succeeded: "
        "`Cached` (its result came from the stage cache, see `cache`).",
    )
    message: str | None = Field(
        default=None,
        max_length=4096,
        description="Why the stage is in this phase (error, skip reason), for people; while "
        "a pod cannot start its container, what the kubelet says (e.g. `ImagePullBackOff: "
        "Back-off pulling image ...`); while Queued, what Kueue says about its Workload.",
    )
    outputs: dict[str, Any] | None = Field(
        default=None,
        description="Outputs the stage reported; read by `when` and `$(stages.<name>.outputs.k)`.",
    )
    progress: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Fraction done (0 to 1) while running, as the worker last reported; "
        "unset once the stage has finished.",
    )
    usage: ResourceUsage | None = Field(default=None, description="Resources used.")
    next_retry_time: datetime | None = Field(
        default=None, description="When the next attempt may start (phase Retrying)."
    )
    fan_out: FanOutStatus | None = Field(default=None, description="Fan-out pod counts.")
    fallback: FallbackCheckpoint | None = Field(
        default=None,
        description="The stage's fallback, once the stage has failed for good and has one: "
        "while it is not finished the stage counts as in flight; once it Succeeded the stage "
        "counts as done (recovered) with the fallback's outputs; once it Failed the stage "
        "fails as without a fallback.")
    cache: StageCacheStatus | None = Field(
        default=None, description="A cacheable stage's cache hit, or its miss and why.")

    @property
    def queued(self) -> bool:
        """The current attempt's Job exists but waits for Kueue's admission: an attempt in
        flight that is not running yet (Pending, unlike a stage that has no Job)."""
        return self.phase == StagePhase.PENDING and self.reason == QUEUED and self.job is not None

    @property
    def in_flight(self) -> bool:
        """An attempt's Job exists and has not ended: Running, or Pending while Kueue has not
        admitted it or its pods wait to be placed. Such a stage is observed, counts against
        `maxParallelStages`, and is never started again."""
        return self.job is not None and self.phase in (StagePhase.RUNNING, StagePhase.PENDING)


class RunProgress(ApiModel):
    """How far the run is, counted in finished stages."""

    completed: int = Field(default=0, ge=0, description="Stages finished (any outcome).")
    total: int = Field(default=0, ge=0, description="Stages in the run, finally included.")
    percent: int = Field(default=0, ge=0, le=100, description="completed / total, in percent.")

    @classmethod
    def of(cls, completed: int, total: int) -> RunProgress:
        """Progress with the percentage rounded down, so 100 means really everything."""
        return cls(
            completed=completed, total=total, percent=(100 * completed // total) if total else 0
        )


class PipelineRunStatus(ApiModel):
    """Observed state of a PipelineRun, written only by the operator (status subresource)."""

    phase: RunPhase = Field(default=RunPhase.PENDING, description="Run phase.")
    conditions: list[Condition] | None = Field(
        default=None,
        description="`Succeeded` (True/False/Unknown), as in Tekton: "
        "`kubectl wait --for=condition=Succeeded pipelinerun/<name>`.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this status describes."
    )
    start_time: datetime | None = Field(default=None, description="When the run started.")
    completion_time: datetime | None = Field(default=None, description="When the run finished.")
    progress: RunProgress | None = Field(default=None, description="Finished stages so far.")
    eta: datetime | None = Field(
        default=None,
        description="Estimated completion time, from the critical path of the remaining stages.",
    )
    pipeline_spec: PipelineSpec | None = Field(
        default=None,
        description="The pipeline this run executes, copied at start so later edits of the "
        "Pipeline do not change a running run.",
        json_schema_extra={**OPAQUE, **ATOMIC},
    )
    workspace: WorkspaceStatus | None = Field(
        default=None, description="The PersistentVolumeClaim mounted at /workspace, if any."
    )
    # Opaque to the API server, like the snapshot above: only the operator writes it, from
    # validated models, and the API server had walked the schema of every checkpoint on every
    # status write. A merge patch of 6 checkpoints of a 900-stage run (244 KB) cost the API
    # server 202-221 ms of CPU with the checkpoints' schema and 81-83 ms without it. Tekton and
    # Argo Workflows keep their whole status schemaless, for the same reason.
    stages: dict[str, StageCheckpoint] | None = Field(
        default=None,
        description="Checkpoint of every stage that has started, by stage name: phase, "
        "reason, message, attempts, job, startTime, finishTime, exitCode, outputs and the "
        "rest of kubedag's StageCheckpoint (written by the operator only, so not validated "
        "again by the API server).",
        json_schema_extra={**OPAQUE, **ATOMIC},
    )

    @field_serializer("pipeline_spec")
    def _compact_snapshot(self, spec: PipelineSpec | None) -> dict[str, Any] | None:
        return None if spec is None else compact_snapshot(spec)


def compact_snapshot(spec: PipelineSpec) -> dict[str, Any]:
    """`status.pipelineSpec` as stored: without default values, since half the size of a
    1,000-stage run's status is otherwise `critical: true`, `priority: 0` and the like, which
    parsing restores anyway."""
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
