"""A Pipeline's own status: is it valid (with every problem named), and how many stages.

Validating when the Pipeline is applied, not when it first runs, tells its author at once:
`kubectl get kdp` shows the Valid column and `kubectl describe` the field paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kubedag.api import (
    CONDITION_VALID,
    Condition,
    ConditionStatus,
    PipelineStatus,
    set_condition,
    to_k8s,
)
from kubedag.core import reasons
from kubedag.core.validation import validate_pipeline


def pipeline_status(spec: Mapping[str, Any], generation: int,
                    old: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
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
    status = PipelineStatus(
        observed_generation=generation,
        stage_count=stages,
        conditions=set_condition(list(previous.conditions or []), valid),
    )
    return to_k8s(status)
