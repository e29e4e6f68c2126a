"""Resolve a run's parameter values against the Pipeline's declarations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubedag.api import PipelineSpec, matches_param_type


def resolve_params(
    pipeline: PipelineSpec, given: Mapping[str, Any] | None
) -> tuple[dict[str, Any], list[str]]:
    """(values, errors): declared defaults overlaid with the run's values, every problem named."""
    given = dict(given or {})
    values: dict[str, Any] = {}
    errors: list[str] = []
    declared = {p.name: p for p in pipeline.params or []}
    for name in sorted(set(given) - set(declared)):
        errors.append(f"spec.params.{name}: not declared by the pipeline")
    for name, spec in declared.items():
        if name in given:
            value = given[name]
            if not matches_param_type(value, spec.type):
                errors.append(f"spec.params.{name}: expected {spec.type.value}, "
                              f"got {type(value).__name__}")
                continue
            values[name] = value
        elif spec.default is not None:
            values[name] = spec.default
        else:
            errors.append(f"spec.params.{name}: required (the pipeline declares no default)")
    return values, errors
