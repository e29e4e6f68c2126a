"""What `submit`, `lint`, `graph` and `run --local` read: a YAML file or a Python reference.

A YAML file may hold Pipelines and at most one PipelineRun (the shape `kubectl apply` takes);
`pkg.module:attr` names a pipeline built in Python (an SDK `Pipeline`, or a `kubedag.api`
Pipeline). Every problem is collected with its field path, in the words `kubedag lint` uses,
so a broken file fails `submit` the same way it fails `lint`.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import yaml
from pydantic import ValidationError

from kubedag.api import Pipeline, PipelineRun, PipelineSpec
from kubedag.core.dag import FieldError
from kubedag.core.validation import validate_pipeline

PYTHON_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class LoadError(ValueError):
    """The reference cannot be read, or what it holds is not a valid pipeline."""

    def __init__(self, source: str, errors: Sequence[FieldError | str]) -> None:
        self.source = source
        self.errors = [str(e) for e in errors]
        super().__init__(f"{source}: " + "; ".join(self.errors))


@runtime_checkable
class BuildsPipeline(Protocol):
    """An SDK pipeline (anything that turns itself into the API model)."""

    def to_model(self) -> Pipeline: ...


@dataclass
class Loaded:
    """The documents of one reference: Pipelines, and the PipelineRun if it has one."""

    source: str
    pipelines: list[Pipeline] = field(default_factory=list)
    run: PipelineRun | None = None

    @property
    def spec(self) -> PipelineSpec | None:
        """The pipeline that a run of this reference executes (None: a pipelineRef to a
        Pipeline that is not in the file)."""
        if self.run is not None:
            if self.run.spec.pipeline_spec is not None:
                return self.run.spec.pipeline_spec
            wanted = self.run.spec.pipeline_ref.name if self.run.spec.pipeline_ref else None
            return next((p.spec for p in self.pipelines if p.metadata.get("name") == wanted),
                        None)
        return self.pipelines[0].spec if self.pipelines else None

    @property
    def name(self) -> str:
        """The pipeline's name, else the run's, for labels and generated run names."""
        for document in (*self.pipelines, self.run):
            if document is not None and document.metadata.get("name"):
                return str(document.metadata["name"])
        return "pipeline"


def load(reference: str) -> Loaded:
    """Read a YAML file or import `pkg.module:attr`; LoadError lists every problem."""
    path = Path(reference)
    if path.is_file():
        return _load_yaml(reference, path)
    if PYTHON_REFERENCE.match(reference):
        return _load_python(reference)
    raise LoadError(reference, ["no such file (nor a pkg.module:attr reference)"])


def _load_yaml(source: str, path: Path) -> Loaded:
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as error:
        raise LoadError(source, [" ".join(str(error).split())]) from None
    if not documents:
        raise LoadError(source, ["the file is empty"])
    loaded = Loaded(source)
    errors: list[FieldError | str] = []
    for position, document in enumerate(documents):
        where = f"document {position + 1}: " if len(documents) > 1 else ""
        kind = document.get("kind") if isinstance(document, dict) else None
        if kind == "Pipeline":
            model, problems = _checked(Pipeline, document, document.get("spec"), "spec")
            if isinstance(model, Pipeline):
                loaded.pipelines.append(model)
        elif kind == "PipelineRun":
            inline = (document.get("spec") or {}).get("pipelineSpec")
            model, problems = _checked(PipelineRun, document, inline, "spec.pipelineSpec")
            if loaded.run is not None:
                problems.append("a file may hold one PipelineRun")
            elif isinstance(model, PipelineRun):
                loaded.run = model
        else:
            problems = [f"kind: expected Pipeline or PipelineRun, got {kind!r}"]
        errors.extend(f"{where}{p}" for p in problems)
    if errors:
        raise LoadError(source, errors)
    return loaded


def _checked(model: type[Pipeline] | type[PipelineRun], document: dict[str, Any],
             spec: Any, spec_path: str) -> tuple[Pipeline | PipelineRun | None, list[str]]:
    """The model, and every problem: the pipeline's (graph, CEL, references) with paths,
    then the rest of the document's."""
    problems = ([str(e) for e in validate_pipeline(spec, path=spec_path)]
                if isinstance(spec, dict) else [])
    try:
        return model.model_validate(document), problems
    except ValidationError as error:
        for item in error.errors():
            path = _path(item["loc"])
            if problems and path.startswith(spec_path):
                continue  # the pipeline's own problems are already listed, with more detail
            problems.append(str(FieldError(path, item["msg"].removeprefix("Value error, "))))
        return None, list(dict.fromkeys(problems))


def _path(loc: Sequence[int | str]) -> str:
    """A pydantic error location as a field path: `spec.stages[0].name`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _load_python(reference: str) -> Loaded:
    module_name, _, attr = reference.partition(":")
    sys.path.insert(0, str(Path.cwd()))  # `kubedag submit -f mypipes:etl` next to mypipes.py
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise LoadError(reference, [f"cannot import {module_name}: {error}"]) from None
    finally:
        sys.path.remove(str(Path.cwd()))
    value = getattr(module, attr, None)
    if value is None:
        raise LoadError(reference, [f"module {module_name} has no attribute {attr!r}"])
    if isinstance(value, BuildsPipeline):
        value = value.to_model()
    if not isinstance(value, Pipeline):
        raise LoadError(reference, [f"{attr} is a {type(value).__name__}, not a pipeline"])
    errors = validate_pipeline(value.spec)
    if errors:
        raise LoadError(reference, errors)
    return Loaded(reference, pipelines=[value])
