"""The API objects as the client reads them: resource names, parsing, and the people's view."""

from __future__ import annotations

from typing import Any, Final

from kubedag import contract
from kubedag.api import PipelineRun
from kubedag.core.runview import RunResult

PLURAL_RUNS: Final = "pipelineruns"
PLURAL_PIPELINES: Final = "pipelines"
# Ordinary calls give up after this long: a dead API server must not hang `kubedag get`.
REQUEST_TIMEOUT_SECONDS: Final = 30.0
# Who owns the fields the client applies (server-side apply), as `kubectl` names itself.
FIELD_MANAGER: Final = "kubedag-client"
_TOP_LEVEL_FIELDS: Final = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})


def as_object(value: object) -> dict[str, Any]:
    """A custom-object response as the JSON object it is (the generated client types these
    responses as `object`); anything else is a broken server or proxy."""
    if not isinstance(value, dict):
        raise TypeError(f"the API server answered {type(value).__name__}, not a JSON object")
    return value


def without_server_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The object without top-level fields our models do not declare: none today, but the
    models reject unknown fields (`extra="forbid"`), which must not break reading objects a
    newer server decorates."""
    return {k: v for k, v in body.items() if k in _TOP_LEVEL_FIELDS}


def parse_run(body: dict[str, Any]) -> PipelineRun:
    """A PipelineRun from the API server's JSON."""
    return PipelineRun.model_validate(without_server_fields(body))


def pipeline_name(run: PipelineRun) -> str | None:
    """The pipeline a run belongs to: its pipelineRef, else the `kubedag.io/pipeline` label
    that `kubedag submit` and the SDK put on runs of an inline pipeline."""
    if run.spec.pipeline_ref is not None:
        return run.spec.pipeline_ref.name
    labels = run.metadata.get("labels") or {}
    name = labels.get(contract.LABEL_PIPELINE)
    return str(name) if name else None


def result_of(run: PipelineRun) -> RunResult:
    """The people's view of a run object; the inline spec orders stages before it starts
    (after that, the pipeline snapshot in the status does, pipelineRef runs included)."""
    return RunResult.from_status(run.metadata.get("name", ""), run.metadata.get("namespace"),
                                 run.status, run.spec.pipeline_spec)
