"""Scheduling inputs of a stage's pod: resources, node selection, tolerations."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from kubedag.api._base import MAX_NAME, MAX_SHORT_TEXT, QUANTITY, ApiModel, cel_rule

Quantity = Annotated[
    str,
    Field(
        max_length=64,
        pattern=QUANTITY,
        description="A Kubernetes quantity such as `500m`, `2`, `512Mi` or `1Gi`.",
    ),
]
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"


class Resources(ApiModel):
    """What a stage's container requests; the operator sets requests and, for GPUs, limits."""

    cpu: Quantity | None = Field(
        default=None, description="CPU request, e.g. `500m` or `2` (cores)."
    )
    memory: Quantity | None = Field(
        default=None,
        description="Memory request and limit, e.g. `512Mi`; a stage above it is OOM-killed.",
    )
    ephemeral_storage: Quantity | None = Field(
        default=None, description="Local scratch disk request, e.g. `10Gi`."
    )
    gpu: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description="Number of GPUs; set as both request and limit of `gpuResourceName`, which "
        "also steers the pod onto GPU nodes.",
    )
    gpu_resource_name: str = Field(
        default=DEFAULT_GPU_RESOURCE,
        max_length=MAX_SHORT_TEXT,
        pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$",
        description="Extended resource name of the GPU, e.g. `nvidia.com/gpu` or `amd.com/gpu`.",
    )


class TolerationOperator(StrEnum):
    """How a toleration matches a taint's value (as in core/v1 Toleration)."""

    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(StrEnum):
    """Which taint effect a toleration tolerates; empty means all (as in core/v1)."""

    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(ApiModel):
    """A pod toleration, with the same fields and meaning as core/v1 Toleration."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel_rule(
                    "!has(self.operator) || self.operator != 'Exists' || "
                    "!has(self.value) || self.value == ''",
                    "a toleration with operator Exists must not set a value",
                ),
            ]
        }
    )

    key: str | None = Field(
        default=None,
        max_length=MAX_SHORT_TEXT,
        description="Taint key to tolerate; empty with operator Exists tolerates every taint.",
    )
    operator: TolerationOperator | None = Field(
        default=None,
        description="`Exists` (any value) or `Equal` (the default: value must match).",
    )
    value: str | None = Field(
        default=None,
        max_length=MAX_NAME,
        description="Taint value to match when operator is Equal.",
    )
    effect: TaintEffect | None = Field(
        default=None,
        description="Taint effect to tolerate (NoSchedule, PreferNoSchedule, NoExecute); "
        "empty tolerates all effects.",
    )
    toleration_seconds: int | None = Field(
        default=None,
        description="For NoExecute: how long the pod stays bound after the taint appears.",
    )

    @model_validator(mode="after")
    def _exists_has_no_value(self) -> Toleration:
        if self.operator is TolerationOperator.EXISTS and self.value:
            raise ValueError("a toleration with operator Exists must not set a value")
        return self
