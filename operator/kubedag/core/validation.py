"""`validate_pipeline`: every problem of a pipeline spec, each with the field path that causes it.

One entry point for the operator (to fail a run or mark a Pipeline invalid), tests and tools.
It goes beyond what the CRD can check at apply time: cycles, `when` expressions that do not
compile or read stages that may not have finished, and `$(...)` references to unknown params
or outputs. All errors are collected, so one round of fixes is enough.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx
from pydantic import BaseModel, ValidationError

from kubedag.api._base import to_k8s
from kubedag.api.params import ParamType
from kubedag.api.pipeline import PipelineSpec
from kubedag.core.dag import FieldError, Node, validate
from kubedag.core.expressions import (
    ExpressionError,
    References,
    compile_expression,
    substitution_references,
)
from kubedag.core.observe import FANOUT_OUTPUT_KEYS

__all__ = ["FieldError", "model_errors", "validate_pipeline"]


def validate_pipeline(
    spec: PipelineSpec | Mapping[str, Any], *, path: str = "spec"
) -> list[FieldError]:
    """All errors of a pipeline spec (a model, or the camelCase dict from the API server).

    `path` prefixes field paths: "spec" for a Pipeline, "spec.pipelineSpec" for an inline
    pipeline in a PipelineRun. Graph and expression checks also run when the schema check
    fails, on whatever part of the spec is well-formed.
    """
    if isinstance(spec, BaseModel):
        raw: Mapping[str, Any] = to_k8s(spec)
        errors: list[FieldError] = []
    else:
        raw = spec
        errors = _model_errors(spec, path)
    stages = _stage_list(raw.get("stages"))
    finals = _stage_list(raw.get("finally"))
    errors += _graph_errors(stages, finals, path)
    errors += _reference_errors(raw, stages, finals, path)
    return _dedupe(errors)


def _model_errors(spec: Mapping[str, Any], path: str) -> list[FieldError]:
    return model_errors(PipelineSpec, spec, path)


def model_errors(model: type[BaseModel], data: Any, path: str) -> list[FieldError]:
    """Schema errors of `data` read as `model` (e.g. a PipelineRun's spec), at field paths
    under `path` as kubectl shows them (`spec.stages[2].retry.limit`)."""
    try:
        model.model_validate(data)
    except ValidationError as error:
        return [
            FieldError(_loc_path(path, e["loc"]), e["msg"].removeprefix("Value error, "))
            for e in error.errors()
        ]
    return []


def _loc_path(prefix: str, loc: Sequence[int | str]) -> str:
    text = prefix
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _stage_list(value: Any) -> list[Mapping[str, Any]]:
    """The stages that are dicts; malformed entries were reported by the schema check."""
    if not isinstance(value, list):
        return []
    return [s if isinstance(s, Mapping) else {} for s in value]


def _name(stage: Mapping[str, Any]) -> str:
    name = stage.get("name")
    return name if isinstance(name, str) else ""


def _deps(stage: Mapping[str, Any]) -> list[str]:
    deps = stage.get("dependsOn")
    return [d for d in deps if isinstance(d, str)] if isinstance(deps, list) else []


def _graph_errors(
    stages: list[Mapping[str, Any]], finals: list[Mapping[str, Any]], path: str
) -> list[FieldError]:
    main_names = [_name(s) for s in stages]
    errors = validate([Node(_name(s), _deps(s)) for s in stages], path=f"{path}.stages")
    errors += validate(
        [Node(_name(s), _deps(s)) for s in finals],
        path=f"{path}.finally",
        external=main_names,
    )
    main_set = set(main_names)
    for i, stage in enumerate(finals):
        if _name(stage) in main_set:
            errors.append(
                FieldError(
                    f"{path}.finally[{i}].name",
                    f"stage name {_name(stage)!r} is already used in {path}.stages",
                )
            )
    return errors


def _upstream(
    stages: list[Mapping[str, Any]], finals: list[Mapping[str, Any]]
) -> dict[str, set[str]]:
    """Stage → stages guaranteed to have finished before it starts.

    Built leniently (unknown names dropped, cycles tolerated) so reference checks still run on
    a spec whose graph has errors; those errors are reported separately.
    """
    main_names = {_name(s) for s in stages}
    graph: nx.DiGraph = nx.DiGraph()
    for stage in [*stages, *finals]:
        graph.add_node(_name(stage))
        graph.add_edges_from((d, _name(stage)) for d in _deps(stage) if d != _name(stage))
    result: dict[str, set[str]] = {}
    for stage in stages:
        result[_name(stage)] = set(nx.ancestors(graph, _name(stage))) & main_names
    for stage in finals:
        # Every main stage is finished (one way or another) before any finally stage starts.
        result[_name(stage)] = set(nx.ancestors(graph, _name(stage))) | main_names
    return result


def _reference_errors(
    raw: Mapping[str, Any],
    stages: list[Mapping[str, Any]],
    finals: list[Mapping[str, Any]],
    path: str,
) -> list[FieldError]:
    params = _declared_params(raw.get("params"))
    declared_outputs = {
        # A fan-out stage also has the outputs kubedag adds to what its pods report.
        _name(s): {o.get("name") for o in s["outputs"] if isinstance(o, Mapping)}
        | (FANOUT_OUTPUT_KEYS if s.get("fanOut") else set())
        for s in [*stages, *finals]
        if isinstance(s.get("outputs"), list) and s["outputs"]
    }
    upstream = _upstream(stages, finals)
    context = _ReferenceContext(params, declared_outputs, upstream)
    errors: list[FieldError] = []
    for field, group in (("stages", stages), ("finally", finals)):
        for i, stage in enumerate(group):
            errors += context.check_stage(stage, f"{path}.{field}[{i}]")
    return errors


def _declared_params(value: Any) -> dict[str, str]:
    if not isinstance(value, list):
        return {}
    return {
        p["name"]: str(p.get("type", ParamType.STRING.value))
        for p in value
        if isinstance(p, Mapping) and isinstance(p.get("name"), str)
    }


class _ReferenceContext:
    """What one stage may reference: declared params, declared outputs, upstream stages."""

    def __init__(
        self,
        params: dict[str, str],
        declared_outputs: dict[str, set[Any]],
        upstream: dict[str, set[str]],
    ) -> None:
        self.params = params
        self.declared_outputs = declared_outputs
        self.upstream = upstream

    def check_stage(self, stage: Mapping[str, Any], where: str) -> list[FieldError]:
        name = _name(stage)
        errors: list[FieldError] = []
        when = stage.get("when")
        if isinstance(when, str):
            try:
                references = compile_expression(when).references
            except ExpressionError as error:
                errors.append(FieldError(f"{where}.when", str(error)))
            else:
                errors += self._check(references, name, f"{where}.when")
        for field, text in _substitutable_texts(stage):
            references, malformed = substitution_references(text)
            errors += [
                FieldError(
                    f"{where}.{field}",
                    f"{bad} is not a reference: use $(params.<name>) or "
                    "$(stages.<stage>.outputs.<key>), or write $$( for a literal $( "
                    "(a shell's command substitution)",
                )
                for bad in malformed
            ]
            errors += self._check(references, name, f"{where}.{field}")
        errors += self._check_fan_out(stage.get("fanOut"), f"{where}.fanOut.itemsFrom")
        fallback = stage.get("fallback")
        if isinstance(fallback, Mapping) and "fallback" not in fallback:
            # The fallback runs in the stage's place: it may read what the stage may (params,
            # and outputs of the stage's upstream stages), under its own field path.
            errors += self.check_stage({**fallback, "name": name}, f"{where}.fallback")
        return errors

    def _check(self, references: References, stage: str, where: str) -> list[FieldError]:
        errors = [
            FieldError(where, f"unknown param {param!r}")
            for param in sorted(references.params)
            if param not in self.params
        ]
        for source, key in sorted(references.outputs, key=lambda r: (r[0], r[1] or "")):
            if (error := self._stage_error(source, stage, where, "its outputs exist")):
                errors.append(error)
            elif key is not None and key not in self.declared_outputs.get(source, {key}):
                errors.append(FieldError(where, f"stage {source!r} declares no output {key!r}"))
        for source in sorted(references.statuses):
            if (error := self._stage_error(source, stage, where, "it has finished")):
                errors.append(error)
        errors += [
            FieldError(
                where,
                f"stages.{source}.{field} is not something a stage has: read "
                f"stages.{source}.outputs.<key>, stages.{source}.phase or stages.{source}.reason",
            )
            for source, field in sorted(references.unknown_fields)
        ]
        return errors

    def _stage_error(self, source: str, stage: str, where: str, why: str) -> FieldError | None:
        """The error when `stage` reads `source`, which is unknown or may not have finished."""
        if source not in self.upstream:
            return FieldError(where, f"unknown stage {source!r}")
        if source not in self.upstream.get(stage, set()):
            return FieldError(
                where,
                f"stage {source!r} is not upstream of {stage!r}: add it to dependsOn "
                f"(directly or through another stage) so {why} in time",
            )
        return None

    def _check_fan_out(self, fan_out: Any, where: str) -> list[FieldError]:
        if not isinstance(fan_out, Mapping) or not isinstance(fan_out.get("itemsFrom"), str):
            return []
        references, _ = substitution_references(fan_out["itemsFrom"])
        errors = []
        for param in sorted(references.params):
            if param not in self.params:
                errors.append(FieldError(where, f"unknown param {param!r}"))
            elif self.params[param] != ParamType.ARRAY.value:
                errors.append(FieldError(where, f"param {param!r} must be of type array"))
        return errors


def _substitutable_texts(stage: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field path, text) of every string where `$(...)` is substituted."""
    texts: list[tuple[str, str]] = []
    for field in ("command", "args"):
        values = stage.get(field)
        if isinstance(values, list):
            texts += [(f"{field}[{i}]", v) for i, v in enumerate(values) if isinstance(v, str)]
    env = stage.get("env")
    if isinstance(env, list):
        texts += [
            (f"env[{i}].value", e["value"])
            for i, e in enumerate(env)
            if isinstance(e, Mapping) and isinstance(e.get("value"), str)
        ]
    return texts


def _dedupe(errors: list[FieldError]) -> list[FieldError]:
    seen: set[FieldError] = set()
    unique = []
    for error in errors:
        if error not in seen:
            seen.add(error)
            unique.append(error)
    return unique
