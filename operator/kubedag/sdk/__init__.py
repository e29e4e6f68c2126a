"""The Python SDK: write a pipeline in Python, check it offline, run it locally or submit it.

It builds the same pydantic models the CRDs are generated from (`kubedag.api`) and validates
with the same core the operator uses (`kubedag.core.validation`): no second object model.

    p = Pipeline("etl", image="ghcr.io/me/etl:1", params={"day": str})

    @p.task()
    def extract(ctx: Context) -> dict[str, Any]: ...

    @p.task()
    def transform(ctx: Context, extract: dict[str, Any]) -> dict[str, Any]: ...

    p.validate().raise_for_errors(); print(p.to_yaml()); run = p.submit(params={"day": "mon"})

Importing `Pipeline` (and decorating with it) needs the standard library only: a stage's pod
imports the module that defines the pipeline, in an image without pydantic. The names that
need the API models (`Estimate`, `validate_document`) load them on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubedag.sdk.errors import PipelineDefinitionError
from kubedag.sdk.loading import load_pipeline
from kubedag.sdk.pipeline import Pipeline, Step
from kubedag.sdk.report import Report

if TYPE_CHECKING:
    from kubedag.core.estimate import Estimate
    from kubedag.sdk.manifest import validate_document

__all__ = [
    "Estimate",
    "Pipeline",
    "PipelineDefinitionError",
    "Report",
    "Step",
    "load_pipeline",
    "validate_document",
]


def __getattr__(name: str) -> Any:
    """The names that import pydantic, loaded when first used (see the module docstring)."""
    if name == "Estimate":
        from kubedag.core.estimate import Estimate  # noqa: PLC0415

        return Estimate
    if name == "validate_document":
        from kubedag.sdk.manifest import validate_document  # noqa: PLC0415

        return validate_document
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
