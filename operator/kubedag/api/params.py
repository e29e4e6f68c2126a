"""Pipeline parameters: the typed inputs a PipelineRun fills in."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from kubedag.api._base import MAX_DESCRIPTION, ApiModel, Identifier


class ParamType(StrEnum):
    """The JSON type a parameter's value must have."""

    STRING = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    ARRAY = "array"
    OBJECT = "object"


def matches_param_type(value: Any, param_type: ParamType) -> bool:
    """Whether a JSON value fits a declared type; bool is not an int here, unlike in Python."""
    if param_type is ParamType.STRING:
        return isinstance(value, str)
    if param_type is ParamType.BOOL:
        return isinstance(value, bool)
    if param_type is ParamType.INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if param_type is ParamType.FLOAT:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if param_type is ParamType.ARRAY:
        return isinstance(value, list)
    return isinstance(value, dict)


class ParamSpec(ApiModel):
    """A declared parameter of a Pipeline."""

    name: Identifier = Field(
        description="Parameter name, referenced as `params.<name>` in `when` expressions and as "
        "`$(params.<name>)` in command, args, env values and `fanOut.itemsFrom`."
    )
    type: ParamType = Field(
        default=ParamType.STRING,
        description="JSON type of the value: string, int, float, bool, array or object. "
        "A run whose value has another type is rejected before any stage starts.",
    )
    default: Any = Field(
        default=None,
        description="Value used when a PipelineRun does not set this parameter. Without a "
        "default the parameter is required.",
    )
    description: str | None = Field(
        default=None,
        max_length=MAX_DESCRIPTION,
        description="What the parameter means, for people writing PipelineRuns.",
    )

    @property
    def required(self) -> bool:
        """A parameter without a default must be given by every run."""
        return self.default is None

    @model_validator(mode="after")
    def _default_has_declared_type(self) -> ParamSpec:
        if self.default is not None and not matches_param_type(self.default, self.type):
            raise ValueError(
                f"default {self.default!r} of parameter {self.name!r} is not of type {self.type}"
            )
        return self
