"""Pipelines as data: the manifest `kubectl apply` takes, read and written losslessly.

Written documents are block-style YAML (or indented JSON) with keys in the API models' field
order, which is the order people write them in (a stage starts with its name, then what it
runs, then its dependencies), and without values equal to their defaults: a diff shows what
the author changed, not `critical: true` and `priority: 0` on every stage. Reading it back
restores the defaults, so `from_yaml(to_yaml(p))` builds an equal model. Otherwise it is what
`kubedag.api.to_k8s` produces: camelCase names, no nulls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from kubedag import api, contract
from kubedag.api._base import DNS1123_SUBDOMAIN
from kubedag.core.dag import FieldError
from kubedag.core.params import resolve_params
from kubedag.core.validation import model_errors, validate_pipeline
from kubedag.sdk.errors import PipelineDefinitionError
from kubedag.sdk.loading import MANIFEST_SUFFIXES
from kubedag.sdk.report import Report, step_names_by_path

API_VERSION = f"{contract.API_GROUP}/{contract.API_VERSION}"


# --- building ------------------------------------------------------------------------------

def plain(value: Any) -> Any:
    """JSON values only (models serialised with `to_k8s`), as the graph and reference checks of
    `validate_pipeline` read a manifest."""
    if isinstance(value, BaseModel):
        return api.to_k8s(value)
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def _camel_case(model: type[BaseModel], fields: Mapping[str, Any]) -> dict[str, Any]:
    """Field names → the manifest's (`depends_on` → `dependsOn`); unknown names kept, so the
    model reports them as not permitted."""
    return {
        (model.model_fields[key].alias or key) if key in model.model_fields else key: plain(value)
        for key, value in fields.items()
    }


def _stage(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A stage's fields → the manifest's, its fallback's included (a model of its own)."""
    raw = _camel_case(api.Stage, fields)
    if isinstance(fields.get("fallback"), Mapping):
        raw["fallback"] = _camel_case(api.Fallback, fields["fallback"])
    return raw


def raw_spec(
    *,
    params: Sequence[Any],
    stages: Sequence[Mapping[str, Any]],
    finals: Sequence[Mapping[str, Any]],
    spec_fields: Mapping[str, Any],
    image: str | None,
) -> dict[str, Any]:
    """The camelCase spec of a draft pipeline, unchecked."""
    raw: dict[str, Any] = {}
    if params:
        raw["params"] = plain(list(params))
    raw["stages"] = [_stage(stage) for stage in stages]
    if finals:
        raw["finally"] = [_stage(stage) for stage in finals]
    raw.update(_camel_case(api.PipelineSpec, spec_fields))
    if image is not None:
        defaults = raw.get("defaults")
        raw["defaults"] = {**(defaults if isinstance(defaults, Mapping) else {}), "image": image}
    return raw


def build_spec(raw: Mapping[str, Any], pipeline: str) -> api.PipelineSpec:
    """The model, or PipelineDefinitionError listing every problem with its step and path."""
    try:
        return api.PipelineSpec.model_validate(raw)
    except ValidationError:
        errors = validate_pipeline(raw) or model_errors(api.PipelineSpec, raw, "spec")
        report = Report(pipeline, errors, step_names_by_path(raw))
        raise PipelineDefinitionError(str(report), errors) from None


# --- writing -------------------------------------------------------------------------------

def compact(model: BaseModel) -> dict[str, Any]:
    """`to_k8s` without values equal to their defaults (see the module docstring)."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)


def document(pipeline: api.Pipeline) -> dict[str, Any]:
    """The Pipeline manifest: apiVersion, kind, metadata, spec (status is the operator's)."""
    return {"apiVersion": pipeline.api_version, "kind": pipeline.kind,
            "metadata": plain(pipeline.metadata), "spec": compact(pipeline.spec)}


class _BlockDumper(yaml.SafeDumper):
    """Block style throughout, list items indented under their key (as kubectl and the
    examples write them); multi-line strings (scripts, long CEL) as `|` literals."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_BlockDumper.add_representer(str, _represent_text)


def dump_yaml(data: Mapping[str, Any]) -> str:
    # A huge width keeps each value on one line: a wrapped line shows up as two changed ones.
    return yaml.dump(dict(data), Dumper=_BlockDumper, sort_keys=False,
                     default_flow_style=False, allow_unicode=True, width=1 << 20)


def dump_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


# --- reading -------------------------------------------------------------------------------

def _text_of(text_or_path: str | Path) -> str:
    """A Path, a file name ending in .yaml/.yml/.json, or the manifest text itself."""
    if isinstance(text_or_path, Path) or (
        "\n" not in text_or_path and text_or_path.endswith(MANIFEST_SUFFIXES)
    ):
        return Path(text_or_path).read_text(encoding="utf-8")
    return text_or_path


def load_yaml(text_or_path: str | Path) -> dict[str, Any]:
    """The one kubedag document of a YAML stream (empty documents ignored)."""
    try:
        documents = [d for d in yaml.safe_load_all(_text_of(text_or_path)) if d is not None]
    except yaml.YAMLError as error:
        raise PipelineDefinitionError(f"not valid YAML: {error}") from error
    if len(documents) != 1:
        raise PipelineDefinitionError(
            f"expected one Pipeline or PipelineRun document, found {len(documents)}"
        )
    return _mapping(documents[0])


def load_json(text_or_path: str | Path) -> dict[str, Any]:
    try:
        return _mapping(json.loads(_text_of(text_or_path)))
    except json.JSONDecodeError as error:
        raise PipelineDefinitionError(f"not valid JSON: {error}") from error


def _mapping(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise PipelineDefinitionError(
            f"expected a Pipeline or PipelineRun object, found {type(data).__name__}"
        )
    return data


def parse_document(data: Mapping[str, Any]) -> api.Pipeline | api.PipelineRun:
    """The model of a Pipeline or PipelineRun manifest; schema errors listed with their paths.

    Only the schema must hold: a pipeline with a cycle loads (to be fixed in Python), and
    `validate()` reports it.
    """
    model: type[api.Pipeline | api.PipelineRun]
    kind = data.get("kind")
    if kind == "Pipeline":
        model = api.Pipeline
    elif kind == "PipelineRun":
        model = api.PipelineRun
    else:
        raise PipelineDefinitionError(f"kind: expected Pipeline or PipelineRun, got {kind!r}")
    try:
        return model.model_validate(data)
    except ValidationError:
        validate_document(data).raise_for_errors()
        raise


def pipeline_parts(
    model: api.Pipeline | api.PipelineRun,
) -> tuple[str, dict[str, Any], api.PipelineSpec]:
    """(name, metadata without the name, spec) of a Pipeline, or of a run's inline pipeline."""
    metadata = dict(model.metadata)
    if isinstance(model, api.Pipeline):
        name = metadata.pop("name", None)
        if not isinstance(name, str) or not name:
            raise PipelineDefinitionError("metadata.name: a Pipeline needs a name")
        return name, metadata, model.spec
    run_name = metadata.get("name") or str(metadata.get("generateName") or "").rstrip("-")
    if model.spec.pipeline_spec is None:
        ref = model.spec.pipeline_ref.name if model.spec.pipeline_ref else "?"
        raise PipelineDefinitionError(
            f"PipelineRun {run_name!r} runs the Pipeline {ref!r} (pipelineRef) and has no "
            "inline pipelineSpec; load that Pipeline's manifest instead"
        )
    labels = metadata.get("labels") or {}
    name = labels.get(contract.LABEL_PIPELINE) or run_name
    if not name:
        raise PipelineDefinitionError("metadata: the PipelineRun has no name or generateName")
    # A run's labels, annotations and name are the run's; only its namespace carries over.
    kept = {"namespace": metadata["namespace"]} if "namespace" in metadata else {}
    return name, kept, model.spec.pipeline_spec


# --- checking ------------------------------------------------------------------------------

def validate_document(data: Any) -> Report:
    """Every problem of a Pipeline or PipelineRun manifest, offline (see Pipeline.validate)."""
    if not isinstance(data, Mapping):
        return Report("?", [FieldError("(document)", "expected a Pipeline or PipelineRun object")])
    metadata = data.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    name = str(metadata.get("name") or metadata.get("generateName") or "?")
    errors: list[FieldError] = []
    if data.get("apiVersion") != API_VERSION:
        errors.append(FieldError("apiVersion", f"expected {API_VERSION!r}, "
                                               f"got {data.get('apiVersion')!r}"))
    errors += _metadata_errors(data.get("kind"), data.get("metadata"))
    spec = data.get("spec")
    if not isinstance(spec, Mapping):
        return Report(name, [*errors, FieldError("spec", "required: an object")])
    kind = data.get("kind")
    step_names: dict[str, str] = {}
    if kind == "Pipeline":
        errors += validate_pipeline(spec, path="spec")
        step_names = step_names_by_path(spec, "spec")
    elif kind == "PipelineRun":
        inline = spec.get("pipelineSpec")
        run_errors = model_errors(api.PipelineRunSpec, spec, "spec")
        if isinstance(inline, Mapping):
            # The inline pipeline gets the full check below; its schema errors would repeat.
            run_errors = [e for e in run_errors if not e.path.startswith("spec.pipelineSpec")]
            run_errors += validate_pipeline(inline, path="spec.pipelineSpec")
            step_names = step_names_by_path(inline, "spec.pipelineSpec")
        errors += run_errors
    else:
        errors.append(FieldError("kind", f"expected Pipeline or PipelineRun, got {kind!r}"))
    return Report(name, errors, step_names)


def _metadata_errors(kind: Any, metadata: Any) -> list[FieldError]:
    if not isinstance(metadata, Mapping):
        return [FieldError("metadata", "required: an object with a name")]
    name = metadata.get("name")
    if name is None and kind == "PipelineRun" and metadata.get("generateName"):
        return []
    if not isinstance(name, str) or not re.match(DNS1123_SUBDOMAIN, name) or len(name) > 253:
        return [FieldError("metadata.name", f"{name!r} is not a valid name: lower-case "
                                            "letters, digits, '-' and '.', starting and "
                                            "ending with a letter or digit")]
    return []


# --- running -------------------------------------------------------------------------------

def run_of(
    spec: api.PipelineSpec,
    *,
    pipeline: str,
    params: Mapping[str, Any] | None,
    name: str | None,
    namespace: str | None,
) -> api.PipelineRun:
    """A PipelineRun with the pipeline inline, labelled with the pipeline's name (which past
    runs' durations are found by); PipelineDefinitionError for params the pipeline rejects."""
    _, errors = resolve_params(spec, params)
    if errors:
        raise PipelineDefinitionError(
            f"params of pipeline {pipeline!r}: " + "; ".join(errors),
            [FieldError(*e.split(": ", 1)) for e in errors],
        )
    metadata: dict[str, Any] = {"name": name} if name else {"generateName": f"{pipeline}-"}
    if namespace:
        metadata["namespace"] = namespace
    metadata["labels"] = {contract.LABEL_PIPELINE: pipeline}
    return api.PipelineRun(
        metadata=metadata,
        spec=api.PipelineRunSpec(pipeline_spec=spec, params=dict(params) if params else None),
    )
