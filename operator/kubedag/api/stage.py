"""A stage: one unit of work of a Pipeline, run as a Kubernetes Job."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from kubedag.api._base import (
    DNS1123_SUBDOMAIN,
    MAX_DESCRIPTION,
    MAX_EXPRESSION,
    MAX_SHORT_TEXT,
    ApiModel,
    Identifier,
    StageName,
    about_the_stage,
    cel_rule,
)
from kubedag.api.breaker import StageBreaker
from kubedag.api.cache import StageCache
from kubedag.api.resources import Resources, Toleration
from kubedag.api.retry import RetryPolicy

# A C-identifier-like env var name, as core/v1 EnvVar validation allows.
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
PROCESSOR = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
PARAM_REFERENCE = r"^\$\(params\.[A-Za-z_][A-Za-z0-9_]*\)$"
MAX_STAGE_DEPENDENCIES = 64
MAX_ARGS = 64
MAX_OUTPUTS = 32
MAX_FANOUT_ITEMS = 1000


class StageType(StrEnum):
    """What a stage does; informational for people and dashboards, scheduling is the same."""

    PROCESSOR = "processor"
    VALIDATOR = "validator"
    TRANSFORMER = "transformer"
    ROUTER = "router"
    AGGREGATOR = "aggregator"


class KeySelector(ApiModel):
    """One key of a Secret or ConfigMap in the run's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN,
                      description="Name of the Secret or ConfigMap.")
    key: str = Field(min_length=1, max_length=253, description="The key to read.")
    optional: bool | None = Field(
        default=None,
        description="When true a missing object or key leaves the variable unset; otherwise "
        "the stage fails with reason `ContainerConfigError` after the operator's start-failure "
        "grace period.")


class EnvVarSource(ApiModel):
    """Where a variable's value comes from: exactly one of secretKeyRef or configMapKeyRef."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        cel_rule("has(self.secretKeyRef) != has(self.configMapKeyRef)",
                 "set exactly one of secretKeyRef or configMapKeyRef"),
    ]})

    secret_key_ref: KeySelector | None = Field(
        default=None, description="A key of a Secret (credentials stay out of the spec).")
    config_map_key_ref: KeySelector | None = Field(
        default=None, description="A key of a ConfigMap.")

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvVarSource:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise ValueError("set exactly one of secretKeyRef or configMapKeyRef")
        return self


class EnvVar(ApiModel):
    """An environment variable of the stage's container."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        cel_rule("!(has(self.valueFrom) && has(self.value) && self.value != '')",
                 "set value or valueFrom, not both"),
    ]})

    name: str = Field(
        min_length=1, max_length=MAX_SHORT_TEXT, pattern=ENV_NAME, description="Variable name."
    )
    value: str = Field(
        default="",
        max_length=MAX_DESCRIPTION,
        description="Value; `$(params.<name>)` and `$(stages.<stage>.outputs.<key>)` are "
        "substituted before the Job is created.",
    )
    value_from: EnvVarSource | None = Field(
        default=None,
        description="Read the value from a Secret or ConfigMap key when the pod starts "
        "(instead of value).",
    )

    @model_validator(mode="after")
    def _value_or_source(self) -> EnvVar:
        if self.value_from is not None and self.value:
            raise ValueError("set value or valueFrom, not both")
        return self


class FanOut(ApiModel):
    """Run one stage over many items as one Indexed Job, `batchSize` items per pod."""

    # No CEL rule for "exactly one of items/itemsFrom": CEL cannot see untyped (free-form)
    # fields such as `items`, so the operator's validation reports it instead.

    items: list[Any] | None = Field(
        default=None,
        max_length=MAX_FANOUT_ITEMS,
        description="The items, any JSON values. Exactly one of items or itemsFrom.",
    )
    items_from: str | None = Field(
        default=None,
        max_length=MAX_SHORT_TEXT,
        pattern=PARAM_REFERENCE,
        description="An array parameter holding the items, written `$(params.<name>)`.",
    )
    parallelism: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="At most this many pods at once (the Job's parallelism); default: all.",
    )
    batch_size: int = Field(
        default=1, ge=1, le=10000, description="Items handed to each pod (completion index)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> FanOut:
        if (self.items is None) == (self.items_from is None):
            raise ValueError("fanOut needs exactly one of items or itemsFrom")
        return self


class OutputSpec(ApiModel):
    """A declared output of a stage, so downstream `when` expressions and docs can rely on it."""

    name: Identifier = Field(
        description="Output key, read downstream as `stages.<stage>.outputs.<name>`."
    )
    description: str | None = Field(
        default=None, max_length=MAX_DESCRIPTION, description="What the output holds."
    )


def _stage_rule(rule: str, message: str, *, field_path: str | None = None) -> dict[str, Any]:
    """A rule on one stage whose message names the stage (the API server's field path only
    has its index)."""
    return cel_rule(rule, message, field_path=field_path,
                    message_expression=about_the_stage(message))


# How a stage (or its fallback) runs: a processor without a command, or an image, with or
# without a command. One rule instead of three, and the fallback's rule stops at
# `!has(self.fallback)`: on a status write the API server checks every CEL rule of the whole
# object again (the spec included), and each field a rule reads costs it an allocation per
# property of the stage's schema. With three rules each and the fallback's read three times, a
# 20-stage run's status write spent 9-12 ms of the API server's CPU in CEL (of 34-47 ms).
# The message names the first thing wrong, in the order the three rules had.
_NOT_BOTH = "set either command or processor, not both"
_COMMAND_NEEDS_IMAGE = "a stage with a command needs an image"
_PROCESSOR_OR_IMAGE = "set processor, or image (with or without command)"
_FALLBACK_COMMAND_NEEDS_IMAGE = "a fallback with a command needs an image"


def _one_way_to_run_rule(of: str, prefix: str, command_needs_image: str,
                         field_path: str | None = None) -> dict[str, Any]:
    """The rule for the object at ``of`` (``self`` or ``self.fallback``); ``prefix`` starts
    each message after the stage's name."""
    guard = "" if of == "self" else f"!has({of}) || "
    rule = f"{guard}(has({of}.processor) ? !has({of}.command) : has({of}.image))"
    which = (f"(has({of}.processor) ? '{_NOT_BOTH}' : has({of}.command) ? "
             f"'{command_needs_image}' : '{_PROCESSOR_OR_IMAGE}')")
    return cel_rule(rule, f"{prefix}{_NOT_BOTH}; {command_needs_image}; {_PROCESSOR_OR_IMAGE}",
                    field_path=field_path,
                    message_expression=f"'stage ' + self.name + ': {prefix}' + {which}")


class Fallback(ApiModel):
    """How else to compute a stage's result when the stage has failed for good.

    The fields mean what they mean on a stage; what the fallback does not set, it does not
    inherit (an alternative is usually another image or processor with its own resources),
    except the stage's name, dependencies and criticality, which stay the stage's.
    """

    image: str | None = Field(
        default=None, max_length=MAX_SHORT_TEXT,
        description="Container image, as a stage's `image` (required with command).")
    command: list[str] | None = Field(
        default=None, max_length=MAX_ARGS,
        description="Container command; mutually exclusive with processor.")
    args: list[str] | None = Field(
        default=None, max_length=MAX_ARGS,
        description="Arguments, as a stage's `args`: `$(params.x)` and "
        "`$(stages.s.outputs.k)` of the stage's own dependencies are substituted.")
    processor: str | None = Field(
        default=None, max_length=MAX_SHORT_TEXT, pattern=PROCESSOR,
        description="A Python callable `package.module:function` the worker image runs.")
    env: list[EnvVar] | None = Field(
        default=None, max_length=MAX_ARGS, description="Environment variables.")
    resources: Resources | None = Field(default=None, description="The fallback pod's resources.")
    node_selector: dict[str, str] | None = Field(
        default=None, description="Node labels, merged over `spec.defaults.nodeSelector`.")
    pod_annotations: dict[str, str] | None = Field(
        default=None, description="Pod annotations, merged over `spec.defaults.podAnnotations`.")
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=32, description="Tolerations, added to the defaults'.")
    retry: RetryPolicy | None = Field(
        default=None, description="Retries of the fallback's own failed attempts; default: none.")
    timeout_seconds: int | None = Field(
        default=None, ge=1, description="Deadline of one fallback attempt, as a stage's.")
    fan_out: FanOut | None = Field(
        default=None, description="Run the fallback over items, as a stage's `fanOut`; its "
        "outputs are then a fan-out's (count, results, totals).")

    @model_validator(mode="after")
    def _one_way_to_run(self) -> Fallback:
        _check_one_way_to_run(self.command, self.processor, self.image,
                              _FALLBACK_COMMAND_NEEDS_IMAGE)
        return self


class Stage(ApiModel):
    """One step of the DAG, run as a Kubernetes Job once its dependencies are done."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _one_way_to_run_rule("self", "", _COMMAND_NEEDS_IMAGE),
                _stage_rule(
                    "!has(self.dependsOn) || !(self.name in self.dependsOn)",
                    "a stage cannot depend on itself",
                    field_path=".dependsOn",
                ),
                # A fallback's rules sit on the stage, so that their messages can name it (a
                # CRD schema cannot recurse, so Fallback is a model of its own).
                _one_way_to_run_rule("self.fallback", "fallback: ", _FALLBACK_COMMAND_NEEDS_IMAGE,
                                     field_path=".fallback"),
            ]
        }
    )

    name: StageName = Field(
        description="Stage name, unique within the Pipeline (including `finally`): a DNS-1123 "
        "label of at most 63 characters. Used in dependsOn, CEL and Job names."
    )
    type: StageType = Field(
        default=StageType.PROCESSOR,
        description="Kind of work: processor, validator, transformer, router or aggregator. "
        "Informational; every type runs the same way.",
    )
    image: str | None = Field(
        default=None,
        max_length=MAX_SHORT_TEXT,
        description="Container image. For a stage with a processor it defaults to "
        "`spec.defaults.image`, else the operator's worker image; required with command, or "
        "alone to run the image's own entrypoint.",
    )
    command: list[str] | None = Field(
        default=None,
        max_length=MAX_ARGS,
        description="Container command (entrypoint). Mutually exclusive with processor.",
    )
    args: list[str] | None = Field(
        default=None,
        max_length=MAX_ARGS,
        description="Arguments to the command or entrypoint; for a processor, its "
        "`context.args`. `$(params.x)` and `$(stages.s.outputs.k)` are substituted.",
    )
    processor: str | None = Field(
        default=None,
        max_length=MAX_SHORT_TEXT,
        pattern=PROCESSOR,
        description="A Python callable `package.module:function` that the worker image runs; "
        "mutually exclusive with command.",
    )
    env: list[EnvVar] | None = Field(
        default=None, max_length=MAX_ARGS, description="Extra environment variables."
    )
    depends_on: list[StageName] | None = Field(
        default=None,
        max_length=MAX_STAGE_DEPENDENCIES,
        description="Stages that must be done (Succeeded or Skipped) before this one starts.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    when: str | None = Field(
        default=None,
        max_length=MAX_EXPRESSION,
        description="A CEL condition over `params` and, of upstream stages, "
        "`stages.<name>.outputs`, `stages.<name>.phase` (Succeeded, Failed, Skipped, Cancelled) "
        "and `stages.<name>.reason` (\"\" when none); when false the stage is Skipped (and "
        "counts as done). A stage whose `when` reads a dependency's phase or reason waits for "
        "that dependency to finish whatever its outcome (Failed or Skipped included) instead of "
        "being skipped with UpstreamFailed, so a clean-up or alternative branch can follow a "
        "non-critical stage's failure (a critical failure still stops new work). Reading the "
        "outputs of a Skipped stage still skips the stage with UpstreamSkipped. "
        "Examples: `stages.extract.outputs.scanned_pages > 0`, `stages.train.phase == 'Failed'`.",
    )
    resources: Resources | None = Field(
        default=None, description="CPU, memory, scratch storage and GPUs of the stage's pod."
    )
    node_selector: dict[str, str] | None = Field(
        default=None,
        description="Node labels the pod must match; merged over `spec.defaults.nodeSelector`.",
    )
    pod_annotations: dict[str, str] | None = Field(
        default=None,
        description="Annotations of the stage's pod, merged over "
        "`spec.defaults.podAnnotations` (e.g. for a service mesh or a log shipper).",
    )
    tolerations: list[Toleration] | None = Field(
        default=None,
        max_length=32,
        description="Tolerations of the pod, added to `spec.defaults.tolerations`.",
    )
    retry: RetryPolicy | None = Field(
        default=None, description="Retries after a failed attempt; default: no retry."
    )
    timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Deadline of one attempt (the Job's activeDeadlineSeconds), multiplied by "
        "`spec.stageTimeoutMultiplier`. A timed-out attempt may be retried. With a Kueue "
        "queue it counts from admission, not from the Job's creation: the Job controller "
        "starts the timer when the suspended Job is unsuspended, so time spent `Queued` never "
        "uses it up.",
    )
    unschedulable_timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        description="How long an attempt may wait with none of its pods placed on a node while "
        "the scheduler says `Unschedulable` (no node has the room, labels or tolerations it "
        "needs), counted from the scheduler's first such verdict; then the attempt fails with "
        "reason `Unschedulable` and its Job is deleted. Not retried: another attempt would "
        "wait for the same nodes. Default: `spec.defaults.unschedulableTimeoutSeconds`, else "
        "wait for as long as it takes (a cluster autoscaler may add a node); either way the "
        "stage shows phase Pending, reason `Unschedulable` and the scheduler's message.",
    )
    estimated_seconds: int | None = Field(
        default=None,
        ge=0,
        le=7 * 24 * 3600,
        description="How long one attempt is expected to take, in seconds. Used only by the "
        "SDK's and the CLI's performance estimate (critical-path time) before any run has "
        "measured the stage; never enforced (see timeoutSeconds).",
    )
    critical: bool = Field(
        default=True,
        description="If false, the stage's failure does not fail the run: it is recorded and "
        "dependents of a failed non-critical stage are skipped.",
    )
    fan_out: FanOut | None = Field(
        default=None,
        description="Run the stage once per item (in batches) as an Indexed Job. Its outputs "
        "are then `count` (the number of pods, one per batch), `results` (each pod's "
        "outputs, in index order; left out, with `truncated: true`, past 16 KiB) and, for "
        "each output every pod reports as a number, its total over the pods (e.g. `pages`). "
        "With a Kueue queue the Indexed Job is one Workload, admitted all-or-nothing.",
    )
    priority: int = Field(
        default=0,
        ge=-1000,
        le=1000,
        description="Among ready stages, higher priority starts first when `maxParallelStages` "
        "limits concurrency.",
    )
    cache: StageCache | None = Field(
        default=None,
        description="Reuse the stage's result from an earlier run when nothing it depends on "
        "changed: its image digest, command, args or processor after substitution, the params "
        "it reads, its upstream stages' outputs, its env and `cache.version`. A hit makes the "
        "stage Succeeded with reason `Cached` and the stored outputs, without a Job; a miss "
        "says why in the stage's `cache` status. Only Succeeded stages are stored; a fan-out "
        "stage is cached as a whole. Merged field by field over `spec.defaults.cache`.",
    )
    breaker: StageBreaker | None = Field(
        default=None,
        description="The stage's circuit breaker: attempts of stages that share a key (this "
        "`key`, else the processor, else the image) in a namespace share one CircuitBreaker. "
        "Infrastructure failures (OOMKilled, PodLost, ImagePullFailed, DeadlineExceeded, "
        "JobLost) and exit code 75 count; after `consecutiveFailures` in a row, or a "
        "`failureRatio` over the window, it opens and new attempts stay Pending with reason "
        "`CircuitOpen` (using neither retries nor timeoutSeconds) until a probe attempt "
        "succeeds. Unset fields: `spec.defaults.breaker`, then the defaults; "
        "`enabled: false` opts the stage out.",
    )
    outputs: list[OutputSpec] | None = Field(
        default=None,
        max_length=MAX_OUTPUTS,
        description="Outputs the stage reports in its termination message (documentation and "
        "a contract for downstream `when` expressions).",
    )

    fallback: Fallback | None = Field(
        default=None,
        description="Another way to compute the same result, run when the stage has failed "
        "for good (after its retries): its own image or processor, command, args, env, "
        "resources, retry and timeout; it depends on, and may read, what the stage may. "
        "Dependants then read the fallback's outputs as the stage's own. The stage's "
        "checkpoint keeps phase Failed with the cause and records the fallback beside it "
        "(`fallback`); the run goes on and ends Succeeded with a `Degraded` condition naming "
        "what was recovered. A failed fallback fails the stage as before (critical or not).",
    )

    @model_validator(mode="after")
    def _one_way_to_run(self) -> Stage:
        _check_one_way_to_run(self.command, self.processor, self.image, _COMMAND_NEEDS_IMAGE)
        return self


def _check_one_way_to_run(command: list[str] | None, processor: str | None, image: str | None,
                          command_needs_image: str) -> None:
    """The Python side of the CEL rule on a stage and on its fallback (`_one_way_to_run_rule`)."""
    if command is not None and processor is not None:
        raise ValueError(_NOT_BOTH)
    if command is not None and image is None:
        raise ValueError(command_needs_image)
    if command is None and processor is None and image is None:
        raise ValueError(_PROCESSOR_OR_IMAGE)
