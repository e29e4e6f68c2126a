"""The Pipeline resource: a reusable DAG of stages plus run-wide settings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from kubedag.api._base import MAX_SHORT_TEXT, ApiModel, LabelledName, cel_rule
from kubedag.api.breaker import StageBreaker
from kubedag.api.cache import StageCache
from kubedag.api.conditions import Condition
from kubedag.api.params import ParamSpec
from kubedag.api.resources import Toleration
from kubedag.api.stage import Stage
from kubedag.api.workspace import Workspace
from kubedag.contract import API_GROUP, API_VERSION

# Bounds that keep the CRD's CEL rules within the API server's cost budget (and a run's status
# well below etcd's 1.5 MiB object limit).
MAX_STAGES = 1000
MAX_FINALLY_STAGES = 20
MAX_PARAMS = 64
# CEL: the set of main stage names, as a map for constant-cost `in` lookups.
_STAGE_NAMES = "self.stages.transformMapEntry(i, s, {s.name: true})"
# CEL: true when two main stages share a name (then _STAGE_NAMES would fail to evaluate).
_HAS_DUPLICATES = "size(self.stages.map(s, s.name).distinct()) != size(self.stages)"


class PipelineDefaults(ApiModel):
    """Settings applied to every stage's pod unless the stage overrides them."""

    service_account_name: str | None = Field(
        default=None,
        max_length=253,
        description="ServiceAccount the stage pods run as (default: the namespace's `default`).",
    )
    image_pull_secrets: list[str] | None = Field(
        default=None,
        max_length=16,
        description="Names of Secrets used to pull stage images.",
    )
    labels: dict[str, str] | None = Field(
        default=None, description="Extra labels put on every Job and pod of the run."
    )
    image: str | None = Field(
        default=None,
        max_length=MAX_SHORT_TEXT,
        description="Worker image for stages that set a processor and no image, e.g. "
        "`ghcr.io/kubedag/worker:0.1.0`.",
    )
    node_selector: dict[str, str] | None = Field(
        default=None, description="Node labels every stage pod must match."
    )
    pod_annotations: dict[str, str] | None = Field(
        default=None, description="Annotations put on every stage pod."
    )
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=32, description="Tolerations of every stage pod."
    )
    unschedulable_timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        description="The `unschedulableTimeoutSeconds` of stages that set none: how long an "
        "attempt may wait for a node before it fails with reason `Unschedulable`.",
    )
    workspace: Workspace | None = Field(
        default=None,
        description="The workspace of runs that set no `spec.workspace` of their own, e.g. "
        "a volumeClaimTemplate so that every run gets its own volume.",
    )
    queue_name: LabelledName | None = Field(
        default=None,
        description="The Kueue LocalQueue of runs that set no `spec.queueName` of their own "
        "(see PipelineRun `spec.queueName`).",
    )
    cache: StageCache | None = Field(
        default=None,
        description="The `cache` of every stage, merged field by field under each stage's own "
        "(`cache: {enabled: false}` on a stage opts it out).",
    )
    breaker: StageBreaker | None = Field(
        default=None,
        description="Circuit breaker settings of every stage, field by field under the "
        "stage's own `breaker` (e.g. `enabled: false` to opt the whole pipeline out).",
    )


class PipelineSpec(ApiModel):
    """A DAG of stages, its parameters and run-wide limits."""

    model_config = ConfigDict(
        json_schema_extra={
            # `[expr].all(names, ...)` binds `names` once (CRD CEL has no cel.bind): a map
            # lookup per dependency keeps the estimated cost linear in the number of stages.
            # `transformMapEntry` fails on a repeated key, so each rule lets duplicate names
            # through (`excused_when`; CEL's `||` absorbs an error when the other side is
            # true): the list's map keys already reject them with "Duplicate value" at the
            # right index, and a second, misleading message about dependsOn helps nobody. The
            # duplicate check (quadratic) comes second so that a valid pipeline never pays for
            # it, and a run's admission policy leaves it out (it sees no duplicates). A
            # messageExpression naming the missing stage is beyond the API server's cost
            # budget for 1,000 stages; `kubedag lint` and the Pipeline's Valid condition do.
            "x-kubernetes-validations": [
                cel_rule(
                    f"[{_STAGE_NAMES}].all(names, self.stages.all(s, "
                    f"!has(s.dependsOn) || s.dependsOn.all(d, d in names)))",
                    "every dependsOn must name a stage in stages (`kubedag lint` names the "
                    "stage and the missing dependency)",
                    field_path=".stages",
                    excused_when=_HAS_DUPLICATES,
                ),
                cel_rule(
                    f"!has(self.finally) || [{_STAGE_NAMES}].all(names, "
                    "self.finally.all(f, !(f.name in names)))",
                    "finally stage names must differ from the names in stages",
                    field_path=".finally",
                    excused_when=_HAS_DUPLICATES,
                ),
                cel_rule(
                    f"!has(self.finally) || [{_STAGE_NAMES}].all(names, "
                    "self.finally.all(f, !has(f.dependsOn) || f.dependsOn.all(d, "
                    "d in names || self.finally.exists(g, g.name == d))))",
                    "every dependsOn of a finally stage must name a stage in stages or finally",
                    field_path=".finally",
                    excused_when=_HAS_DUPLICATES,
                ),
            ]
        }
    )

    params: list[ParamSpec] | None = Field(
        default=None,
        max_length=MAX_PARAMS,
        description="Declared parameters; a PipelineRun sets their values in `spec.params`.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    stages: list[Stage] = Field(
        min_length=1,
        max_length=MAX_STAGES,
        description="The stages. A stage starts when every stage in its dependsOn is done; "
        "stages without dependencies start at once.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    finally_: list[Stage] | None = Field(
        default=None,
        alias="finally",
        max_length=MAX_FINALLY_STAGES,
        description="Stages run once all `stages` are done, whatever their outcome (clean-up, "
        "notification). They may depend on each other and read every stage's outputs.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    max_parallel_stages: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="At most this many stages run at once; default: no limit.",
    )
    timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Deadline of the whole run; when it passes, running stages are stopped and "
        "the run fails. A PipelineRun may override it.",
    )
    stage_timeout_multiplier: float = Field(
        default=1.0,
        ge=1.0,
        le=100.0,
        description="Factor applied to every stage's timeoutSeconds (e.g. 2 on a slow cluster).",
    )
    defaults: PipelineDefaults | None = Field(
        default=None, description="Pod settings applied to every stage."
    )

    def all_stages(self) -> list[Stage]:
        """Main stages then finally stages: the order field paths and status use."""
        return [*self.stages, *(self.finally_ or [])]


class PipelineStatus(ApiModel):
    """What the operator observed about a Pipeline: whether it is valid, and its size."""

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this status describes."
    )
    stage_count: int | None = Field(
        default=None, description="Number of stages, including finally stages."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="`Valid`: whether the DAG, CEL expressions and references check out. "
        "`Fits`: whether every stage's pod fits at least one node now (requests against "
        "allocatable, nodeSelector, taints); False (reason `NoNodeFits`) names each stage that "
        "fits none and the largest node's allocatable. Nodes change, so a Pipeline that fits no "
        "node is still valid and may run (its stages wait, phase Pending, reason "
        "`Unschedulable`).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class Pipeline(ApiModel):
    """A reusable pipeline definition, run by creating PipelineRuns that reference it."""

    api_version: str = Field(default=f"{API_GROUP}/{API_VERSION}", description="API version.")
    kind: Literal["Pipeline"] = Field(default="Pipeline", description="Pipeline")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: PipelineSpec = Field(
        description="The DAG of stages, its parameters, defaults for every stage pod and "
        "run-wide limits."
    )
    status: PipelineStatus | None = Field(default=None, description="Observed state.")
