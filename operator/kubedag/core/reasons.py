"""CamelCase reasons of conditions and Events, in one place so dashboards and alerts can rely
on them."""

from typing import Final

from kubedag.api.status import QUEUED as _QUEUED

# Run-level (condition Succeeded and run Events)
RUN_STARTED: Final = "RunStarted"
RUNNING: Final = "Running"
PAUSED: Final = "Paused"
RESUMED: Final = "Resumed"
SUCCEEDED: Final = "Succeeded"
FAILED: Final = "Failed"
STAGE_FAILED: Final = "StageFailed"
CANCELLED: Final = "Cancelled"
RUN_TIMEOUT: Final = "RunTimeout"
WORKSPACE_FAILED: Final = "WorkspaceFailed"  # the API server refused the workspace's claim
INVALID_PIPELINE: Final = "InvalidPipeline"
PIPELINE_NOT_FOUND: Final = "PipelineNotFound"
DRY_RUN_SUCCEEDED: Final = "DryRunSucceeded"
DRY_RUN_FAILED: Final = "DryRunFailed"
RESUMED_FROM: Final = "ResumedFrom"
NON_CRITICAL_STAGE_FAILED: Final = "NonCriticalStageFailed"

# Stage-level (Events; skip reasons in checkpoints)
STAGE_STARTED: Final = "StageStarted"
STAGE_SUCCEEDED: Final = "StageSucceeded"
STAGE_RETRYING: Final = "StageRetrying"
STAGE_SKIPPED: Final = "StageSkipped"
STAGE_REUSED: Final = "StageReused"
WHEN_FALSE: Final = "WhenFalse"
UPSTREAM_FAILED: Final = "UpstreamFailed"
UPSTREAM_SKIPPED: Final = "UpstreamSkipped"
STAGE_QUEUED: Final = "StageQueued"  # Jobs created suspended, waiting for Kueue's admission
STAGE_EVICTED: Final = "StageEvicted"  # Kueue took an admitted stage's quota back (preemption)
STAGE_CACHED: Final = "StageCached"  # stages whose result came from the stage cache
# A Succeeded stage whose result came from the stage cache (the checkpoint's reason).
CACHED: Final = "Cached"
# A Pending stage waiting for an identical stage (same cache key) of another run to finish.
WAITING_FOR_CACHE: Final = "WaitingForCache"
# Why a cacheable stage missed (its checkpoint's cache.missReason, and the `reason` label of
# kubedag_cache_lookups_total).
CACHE_NO_ENTRY: Final = "NoEntry"
CACHE_CHANGED: Final = "Changed"
CACHE_NO_DIGEST: Final = "NoDigest"
CACHE_EXPIRED: Final = "Expired"
CACHE_DISABLED: Final = "Disabled"
CACHE_OVERWRITE: Final = "Overwrite"
# A resumed run's stage that succeeded in spec.resumeFrom's run but runs again: its definition
# or inputs changed (the Event says which).
STAGE_CHANGED: Final = "StageChanged"
# A Pending stage whose Job waits for Kueue to admit it (the checkpoint's reason).
QUEUED: Final = _QUEUED

# A stage's fallback (Events; RecoveredByFallback is also the Degraded condition's reason and
# what `when` reads as `stages.<name>.reason` of a recovered stage).
FALLBACK_STARTED: Final = "FallbackStarted"
FALLBACK_RETRYING: Final = "FallbackRetrying"
FALLBACK_SUCCEEDED: Final = "FallbackSucceeded"
FALLBACK_FAILED: Final = "FallbackFailed"
RECOVERED_BY_FALLBACK: Final = "RecoveredByFallback"

# Why a stage failed: its checkpoint's `reason`, the `reason` label of
# kubedag_stage_failures_total, and named in its StageFailed / StageRetrying Event.
EXIT_CODE: Final = "ExitCode"  # the container exited non-zero (checkpoint.exitCode has the code)
DEADLINE_EXCEEDED: Final = "DeadlineExceeded"  # the stage's timeoutSeconds passed
OOM_KILLED: Final = "OOMKilled"  # the container went over its memory limit
IMAGE_PULL_FAILED: Final = "ImagePullFailed"  # ErrImagePull, ImagePullBackOff, InvalidImageName
CONTAINER_CONFIG_ERROR: Final = "ContainerConfigError"  # CreateContainer(Config)Error
POD_LOST: Final = "PodLost"  # the pod was deleted, evicted or preempted before it finished
JOB_LOST: Final = "JobLost"  # the Job vanished
JOB_FAILED: Final = "JobFailed"  # the Job controller failed the Job for another reason
JOB_REJECTED: Final = "JobRejected"  # the API server refused to create the Job
OUTPUT_TOO_LARGE: Final = "OutputTooLarge"  # outputs over the stage's share of the status
INVALID_REFERENCE: Final = "InvalidReference"  # a $(...) or itemsFrom that does not resolve
WHEN_EVALUATION_FAILED: Final = "WhenEvaluationFailed"  # the `when` expression raised an error
# The scheduler finds no node for the stage's pod (the pod's PodScheduled condition's reason):
# the reason of a Pending stage waiting for a node, of one that waited longer than its
# unschedulableTimeoutSeconds (Failed), and of its Warning Event.
UNSCHEDULABLE: Final = "Unschedulable"
# Failures of this kind are not retried: the same spec fails the same way (an Unschedulable
# attempt would wait for the same nodes again: its timeout is the time to wait).
NOT_RETRIED: Final = frozenset({IMAGE_PULL_FAILED, CONTAINER_CONFIG_ERROR, JOB_REJECTED,
                                OUTPUT_TOO_LARGE, INVALID_REFERENCE, WHEN_EVALUATION_FAILED,
                                UNSCHEDULABLE})

# Why a stage ended without finishing by itself: the run ended first. Stages that never
# started are Skipped, stages that were running are Cancelled, with the same reason.
RUN_FAILED: Final = "RunFailed"  # a critical stage failed
RUN_CANCELLED: Final = "RunCancelled"  # spec.cancel
RUN_TIMED_OUT: Final = "RunTimedOut"  # the run's timeoutSeconds passed

# Condition types besides Succeeded
CONDITION_DEGRADED: Final = "Degraded"
# A run's: False while a started stage's pods wait for a node (reason StagesUnschedulable),
# True again (StagesScheduled) once they are placed; absent while that never happened.
CONDITION_SCHEDULABLE: Final = "Schedulable"
STAGES_UNSCHEDULABLE: Final = "StagesUnschedulable"
STAGES_SCHEDULED: Final = "StagesScheduled"
# A Pipeline's: does every stage's pod fit some node now (requests, nodeSelector, taints)?
CONDITION_FITS: Final = "Fits"
NO_NODE_FITS: Final = "NoNodeFits"
STAGES_FIT: Final = "StagesFit"

# Circuit breakers (kubedag.core.breaker). A stage held by an open breaker: the checkpoint's
# reason (phase Pending, or Retrying for a held retry) and the run's Warning Event.
CIRCUIT_OPEN: Final = "CircuitOpen"
# Transitions of a CircuitBreaker: the reason of its `Open` condition and of its Events.
CIRCUIT_TRIPPED: Final = "Tripped"  # counted failures reached a threshold: Closed -> Open
CIRCUIT_HALF_OPENED: Final = "HalfOpened"  # openSeconds passed: one probe may run
CIRCUIT_PROBE_SUCCEEDED: Final = "ProbeSucceeded"  # -> Closed, held attempts released in waves
CIRCUIT_PROBE_FAILED: Final = "ProbeFailed"  # -> Open again, openSeconds doubled
CIRCUIT_RELEASE_FAILED: Final = "ReleaseFailed"  # a counted failure during the waves: -> Open
CIRCUIT_RELEASED: Final = "Released"  # the waves are over: attempts run without limit
CIRCUIT_FORCED_OPEN: Final = "ForcedOpen"  # spec.forceState: Open
CIRCUIT_FORCED_CLOSED: Final = "ForcedClosed"  # spec.forceState: Closed
CIRCUIT_FORCE_LIFTED: Final = "ForceLifted"  # spec.forceState removed
