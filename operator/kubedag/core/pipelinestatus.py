"""A Pipeline's own status: is it valid (with every problem named), how many stages, and does
every stage fit a node.

Validating when the Pipeline is applied, not when it first runs, tells its author at once:
`kubectl get kdp` shows the Valid column and `kubectl describe` the field paths. Fit is a
separate condition, `Fits`: nodes come and go (an autoscaler may add the GPU node a stage
needs), so a Pipeline that fits no node today is not invalid, and its runs may still start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from kubedag.api import (
    CONDITION_VALID,
    Condition,
    ConditionStatus,
    PipelineSpec,
    PipelineStatus,
    set_condition,
    to_k8s,
)
from kubedag.core import reasons
from kubedag.core.estimate import NodeCapacity, unschedulable_stages
from kubedag.core.validation import validate_pipeline


def pipeline_status(spec: Mapping[str, Any], generation: int,
                    old: Mapping[str, Any] | None, now: datetime,
                    nodes: Sequence[NodeCapacity] | None = None) -> dict[str, Any]:
    """The status of a Pipeline with this spec; `nodes` (None: unknown, e.g. the operator may
    not list nodes) adds the `Fits` condition."""
    previous = PipelineStatus.model_validate(old or {})
    errors = validate_pipeline(spec)
    stages = len(spec.get("stages") or []) + len(spec.get("finally") or [])
    valid = Condition(
        type=CONDITION_VALID,
        status=ConditionStatus.FALSE if errors else ConditionStatus.TRUE,
        reason=reasons.INVALID_PIPELINE if errors else "Valid",
        message="; ".join(str(e) for e in errors)[:32768] if errors
        else f"{stages} stages, no cycles, expressions compile",
        last_transition_time=now,
        observed_generation=generation,
    )
    conditions = set_condition(list(previous.conditions or []), valid)
    if nodes is not None and not errors:
        conditions = set_condition(conditions, fits_condition(
            PipelineSpec.model_validate(spec), nodes, generation, now))
    status = PipelineStatus(
        observed_generation=generation,
        stage_count=stages,
        conditions=conditions,
    )
    return to_k8s(status)


def fits_condition(spec: PipelineSpec, nodes: Sequence[NodeCapacity], generation: int,
                   now: datetime) -> Condition:
    """`Fits`: True when every stage's pod fits at least one node (core.estimate's check);
    False naming each stage that fits none, with the largest node's allocatable."""
    unfit = unschedulable_stages(spec, nodes)
    return Condition(
        type=reasons.CONDITION_FITS,
        status=ConditionStatus.FALSE if unfit else ConditionStatus.TRUE,
        reason=reasons.NO_NODE_FITS if unfit else reasons.STAGES_FIT,
        message=("Fits no node: " + "; ".join(str(u) for u in unfit))[:32768] if unfit
        # No node count: a node joining or leaving then costs no write on every Pipeline.
        else "Every stage fits at least one node",
        last_transition_time=now,
        observed_generation=generation,
    )
