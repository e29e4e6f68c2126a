"""The operator's view of pipeline validation: errors as text, and `when` evaluation that
turns a runtime CEL error into a message instead of an exception."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubedag.api import PipelineSpec
from kubedag.api.validation import validate_pipeline
from kubedag.core.expressions import ExpressionError, compile_expression


def check_pipeline(pipeline: PipelineSpec) -> list[str]:
    """Every problem of the pipeline, each naming its field (``spec.stages[2].when: ...``)."""
    return [str(error) for error in validate_pipeline(pipeline)]


def evaluate_when(
    expression: str, params: Mapping[str, Any], outputs: Mapping[str, Mapping[str, Any] | None]
) -> bool | str:
    """True/False, or the error message when the expression cannot be evaluated."""
    try:
        return compile_expression(expression).evaluate(params, outputs)
    except ExpressionError as error:
        return str(error)
