"""The operator's view of pipeline validation: errors as text, and `when` evaluation that
turns a runtime CEL error into a message instead of an exception."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from kubedag.api import PipelineSpec, Stage
from kubedag.core.expressions import (
    ExpressionError,
    References,
    StageStatus,
    compile_expression,
    substitution_references,
)
from kubedag.core.validation import validate_pipeline


def check_pipeline(pipeline: PipelineSpec) -> list[str]:
    """Every problem of the pipeline, each naming its field (``spec.stages[2].when: ...``)."""
    return [str(error) for error in validate_pipeline(pipeline)]


def evaluate_when(
    expression: str,
    params: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any] | None],
    statuses: Mapping[str, StageStatus] | None = None,
) -> bool | str:
    """True/False, or the error message when the expression cannot be evaluated."""
    try:
        return compile_expression(expression).evaluate(params, outputs, statuses)
    except ExpressionError as error:
        return str(error)


def stages_read_by(stage: Stage) -> frozenset[str]:
    """Upstream stages whose outputs this stage reads, in `when` or `$(...)` substitutions."""
    return references_of(stage).stages


def params_read_by(stage: Stage) -> frozenset[str]:
    """Params this stage names: in `when`, in `$(...)` substitutions, and `fanOut.itemsFrom`."""
    return references_of(stage).params


def references_of(stage: Stage) -> References:
    """Everything a stage's definition references by name, in `when` and `$(...)` texts."""
    params: set[str] = set()
    outputs: set[tuple[str, str | None]] = set()
    if stage.when:
        # A broken expression is reported by validation, and evaluating it fails the stage.
        with contextlib.suppress(ExpressionError):
            found = compile_expression(stage.when).references
            params |= found.params
            outputs |= found.outputs
    texts = [*(stage.command or []), *(stage.args or []), *(v.value for v in stage.env or [])]
    if stage.fan_out is not None and stage.fan_out.items_from:
        texts.append(stage.fan_out.items_from)
    for text in texts:
        found = substitution_references(text)[0]
        params |= found.params
        outputs |= found.outputs
    return References(frozenset(params), frozenset(outputs))


def stages_watched_by(stage: Stage) -> frozenset[str]:
    """Upstream stages whose `phase` or `reason` this stage's `when` reads.

    Such a stage decides for itself what an upstream failure means (a clean-up branch, an
    alternative path), so it waits for them to finish whatever the outcome instead of being
    skipped with UpstreamFailed.
    """
    if not stage.when:
        return frozenset()
    with contextlib.suppress(ExpressionError):
        return compile_expression(stage.when).references.statuses
    return frozenset()
