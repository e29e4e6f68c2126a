"""CamelCase reasons of conditions and Events, in one place so dashboards and alerts can rely
on them."""

from typing import Final

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
RUN_STOPPED: Final = "RunStopped"
JOB_LOST: Final = "JobLost"

# Condition types besides Succeeded
CONDITION_DEGRADED: Final = "Degraded"
