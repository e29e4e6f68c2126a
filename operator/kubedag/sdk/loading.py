"""`load_pipeline`: a pipeline from a manifest file or from Python, as the CLI names it."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from kubedag.sdk.errors import PipelineDefinitionError
from kubedag.sdk.pipeline import Pipeline

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def load_pipeline(reference: str | Path) -> Pipeline:
    """`"pipeline.yaml"` (a Pipeline, or a PipelineRun with an inline pipelineSpec), or
    `"package.module:attribute"` naming a Pipeline (or a function without arguments that
    returns one, e.g. a template factory)."""
    text = str(reference)
    if isinstance(reference, Path) or text.endswith(MANIFEST_SUFFIXES) or Path(text).is_file():
        path = Path(text)
        if not path.is_file():
            raise PipelineDefinitionError(f"{text}: no such file")
        if path.suffix == ".json":
            return Pipeline.from_json(path)
        return Pipeline.from_yaml(path)
    module_name, colon, attribute = text.partition(":")
    if not colon or not module_name or not attribute:
        raise PipelineDefinitionError(
            f"{text!r}: give a manifest file (.yaml, .yml, .json) or 'package.module:attribute'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise PipelineDefinitionError(
            f"{text!r}: cannot import {module_name!r}: {error}") from error
    value = getattr(module, attribute, None)
    if value is None:
        raise PipelineDefinitionError(f"{text!r}: module {module_name!r} has no {attribute!r}")
    if callable(value) and not isinstance(value, Pipeline):
        required = [p.name for p in inspect.signature(value).parameters.values()
                    if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if required:
            raise PipelineDefinitionError(
                f"{text!r} is a function that needs arguments ({', '.join(required)}); name a "
                "Pipeline or a function without arguments that returns one"
            )
        value = value()
    if not isinstance(value, Pipeline):
        raise PipelineDefinitionError(
            f"{text!r} is a {type(value).__name__}, not a kubedag.sdk.Pipeline"
        )
    return value
