"""Conditions in the metav1.Condition shape, so `kubectl wait --for=condition=...` works."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from kubedag.api._base import ApiModel

# Condition types. `Succeeded` follows Tekton/Knative: True when done well, False when failed
# or cancelled, Unknown while running.
CONDITION_SUCCEEDED = "Succeeded"
CONDITION_VALID = "Valid"


class ConditionStatus(StrEnum):
    """metav1.ConditionStatus."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """One aspect of an object's state (metav1.Condition)."""

    type: str = Field(
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        description="Condition type in CamelCase, e.g. `Succeeded`.",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="Machine-readable CamelCase reason of the last transition, e.g. `StageFailed`.",
    )
    message: str = Field(
        default="", max_length=32768, description="Human-readable details of the transition."
    )
    last_transition_time: datetime = Field(
        description="When status last changed (not when the condition was last checked)."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this condition was set for."
    )


def set_condition(conditions: list[Condition], new: Condition) -> list[Condition]:
    """Return `conditions` with `new` in place of the condition of its type.

    The old lastTransitionTime is kept while the status does not change, as metav1 requires;
    re-setting an unchanged condition therefore does not change the object and costs no write.
    """
    result: list[Condition] = []
    replaced = False
    for old in conditions:
        if old.type != new.type:
            result.append(old)
            continue
        replaced = True
        if old.status == new.status:
            new = new.model_copy(update={"last_transition_time": old.last_transition_time})
        result.append(new)
    if not replaced:
        result.append(new)
    return result


def find_condition(conditions: list[Condition] | None, type_: str) -> Condition | None:
    """The condition of this type, if present."""
    return next((c for c in conditions or [] if c.type == type_), None)
