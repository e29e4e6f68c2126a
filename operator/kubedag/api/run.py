"""The PipelineRun resource: one execution of a Pipeline with concrete parameter values."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from kubedag.api._base import ATOMIC, ApiModel, LabelledName, StageName, cel_rule
from kubedag.api.cache import RunCacheMode
from kubedag.api.pipeline import MAX_STAGES, PipelineSpec
from kubedag.api.status import PipelineRunStatus
from kubedag.api.workspace import Workspace
from kubedag.contract import API_GROUP, API_VERSION


class PipelineRef(ApiModel):
    """A Pipeline in the run's namespace."""

    name: str = Field(
        min_length=1,
        max_length=253,
        description="Name of the Pipeline to run (same namespace as the PipelineRun).",
    )


class PipelineRunSpec(ApiModel):
    """Which pipeline to run, with which parameters, and how."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel_rule(
                    "has(self.pipelineRef) != has(self.pipelineSpec)",
                    "set exactly one of pipelineRef or pipelineSpec",
                ),
                cel_rule(
                    "!has(self.rerunStages) || has(self.resumeFrom)",
                    "rerunStages needs resumeFrom (the run whose other stages are reused)",
                    field_path=".rerunStages",
                ),
            ]
        }
    )

    pipeline_ref: PipelineRef | None = Field(
        default=None,
        description="The Pipeline to run. Exactly one of pipelineRef or pipelineSpec.",
    )
    pipeline_spec: PipelineSpec | None = Field(
        default=None,
        description="An inline pipeline, for one-off runs. Exactly one of pipelineRef or "
        "pipelineSpec.",
        json_schema_extra=ATOMIC,
    )
    params: dict[str, Any] | None = Field(
        default=None,
        description="Parameter values by name; any JSON value matching the declared type. "
        "Unset parameters take their default.",
    )
    suspend: bool = Field(
        default=False,
        description="While true no new stage starts (running ones finish); phase is Paused. "
        "Set back to false to continue.",
    )
    cancel: bool = Field(
        default=False,
        description="Set to true to stop the run: running stages' Jobs are deleted (their pods get "
        "SIGTERM and the pod's termination grace period to exit) and the stages end "
        "Cancelled, stages that never started end Skipped with reason `RunCancelled`, and "
        "the run ends Cancelled. Cannot be undone.",
    )
    dry_run: bool = Field(
        default=False,
        description="Validate and plan only: the status shows the stages that would run, "
        "and no Job is created.",
    )
    resume_from: str | None = Field(
        default=None,
        max_length=253,
        description="Name of an earlier PipelineRun (same namespace) whose Succeeded stages "
        "are reused, with their outputs, instead of being run again.",
    )
    rerun_stages: list[StageName] | None = Field(
        default=None,
        max_length=MAX_STAGES,
        description="With resumeFrom: stages that run again even though they succeeded in that "
        "run, and with them every stage downstream of them (finally stages too), as "
        "`kubedag retry --from STAGE` asks. An unknown name fails the run.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    priority: int = Field(
        default=0,
        ge=-1000,
        le=1000,
        description="Place in line for the operator-wide stage budget (the operator's "
        "`maxRunningStages`): when it is full, ready stages of higher-priority runs start "
        "first, then those of older runs.",
    )
    queue_name: LabelledName | None = Field(
        default=None,
        description="The Kueue LocalQueue (in the run's namespace) that admits the run's stages; "
        "default: the pipeline's `defaults.queueName`; unset: no Kueue. Every stage Job gets the "
        "label `kueue.x-k8s.io/queue-name` and is created suspended; until Kueue admits it (and "
        "unsuspends it) the stage is Pending with reason `Queued` and Kueue's message (e.g. "
        "`couldn't assign flavors to pod set main: insufficient quota for nvidia.com/gpu in "
        "flavor default, 8 more needed`), then Running. The time spent waiting is the stage's "
        "`queueSeconds`, not part of its run time, and its `timeoutSeconds` counts from "
        "admission: the Job controller starts a Job's activeDeadlineSeconds timer (its "
        "status.startTime) only when the Job is unsuspended, and restarts it if Kueue evicts and "
        "later re-admits the Job. A fan-out stage is one Indexed Job, hence one Kueue Workload: "
        "Kueue reserves quota for all its parallel pods at once or for none, so half a fan-out "
        "never holds quota while waiting for the rest. Stages of a run with a queue are not "
        "counted against the operator's `maxRunningStages` (Kueue's quota is their budget); "
        "the pipeline's `maxParallelStages` still counts queued stages.",
    )
    priority_class_name: LabelledName | None = Field(
        default=None,
        description="With a queue: the Kueue WorkloadPriorityClass of the run's stage Jobs "
        "(label `kueue.x-k8s.io/priority-class`): Kueue admits higher-priority Workloads "
        "first, and may preempt lower ones if the ClusterQueue allows it. Unrelated to "
        "`priority`, which orders runs for the operator's own stage budget.",
    )
    timeout_seconds: int | None = Field(
        default=None, ge=1, description="Overrides the pipeline's timeoutSeconds for this run."
    )
    workspace: Workspace | None = Field(
        default=None,
        description="The volume mounted at /workspace in every stage pod of this run, fan-out "
        "pods included: exactly one of volumeClaimTemplate (a claim created for the run and "
        "deleted with it) or persistentVolumeClaim (an existing claim). Default: the "
        "pipeline's `defaults.workspace`; without either, each pod gets its own empty "
        "/workspace (an emptyDir) and stages share nothing but their outputs.",
    )
    cache: RunCacheMode = Field(
        default=RunCacheMode.ENABLED,
        description="How the run uses the stage cache (see a stage's `cache`): `Enabled` "
        "reuses and stores results of cacheable stages; `Disabled` neither reads nor writes "
        "it; `Overwrite` runs every stage and replaces the entries it finds (e.g. after a "
        "tag moved to a new image).",
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        description="Delete the finished run (and its Jobs) this many seconds after it ends.",
    )

    @model_validator(mode="after")
    def _one_pipeline(self) -> PipelineRunSpec:
        if (self.pipeline_ref is None) == (self.pipeline_spec is None):
            raise ValueError("set exactly one of pipelineRef or pipelineSpec")
        if self.rerun_stages and self.resume_from is None:
            raise ValueError("rerunStages needs resumeFrom (the run whose other stages are "
                             "reused)")
        return self


class PipelineRun(ApiModel):
    """One execution of a pipeline; its status checkpoints every stage."""

    api_version: str = Field(default=f"{API_GROUP}/{API_VERSION}", description="API version.")
    kind: Literal["PipelineRun"] = Field(default="PipelineRun", description="PipelineRun")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: PipelineRunSpec = Field(
        description="What to run: a Pipeline (by reference or inline), parameter values, and "
        "controls to suspend, cancel, dry-run or resume the run."
    )
    status: PipelineRunStatus | None = Field(default=None, description="Observed state.")
