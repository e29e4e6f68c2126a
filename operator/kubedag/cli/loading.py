"""What `submit`, `lint`, `graph` and `run --local` read: a YAML file or a Python reference.

A YAML file may hold Pipelines and at most one PipelineRun (the shape `kubectl apply` takes);
`pkg.module:attr` names a pipeline built in Python (an SDK `Pipeline`, or a function without
arguments that returns one). Both are checked by the SDK (`validate_document`,
`Pipeline.validate`: the operator's own checks plus the CRD schema), every problem with its
field path and step, so a broken file fails `submit` the same way it fails `lint`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kubedag.api import Pipeline, PipelineRun, PipelineSpec
from kubedag.core.dag import FieldError
from kubedag.sdk import PipelineDefinitionError, load_pipeline
from kubedag.sdk.manifest import parse_document, validate_document
from kubedag.templates import from_template

TEMPLATE_PREFIX = "template:"  # `template:rag`: a built-in or registered template
PYTHON_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class LoadError(ValueError):
    """The reference cannot be read, or what it holds is not a valid pipeline."""

    def __init__(self, source: str, errors: Sequence[FieldError | str]) -> None:
        self.source = source
        self.errors = [str(e) for e in errors]
        super().__init__(f"{source}: " + "; ".join(self.errors))


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
    """Read a YAML file, a template (`template:NAME`) or `pkg.module:attr`; LoadError lists
    every problem."""
    path = Path(reference)
    if path.is_file():
        return _load_yaml(reference, path)
    if reference.startswith(TEMPLATE_PREFIX):
        return _load_template(reference)
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
    errors: list[str] = []
    for position, document in enumerate(documents):
        where = f"document {position + 1}: " if len(documents) > 1 else ""
        # The SDK's check of a manifest: schema, DAG, CEL, references, params, metadata.
        report = validate_document(document)
        if not report.ok:
            errors.extend(f"{where}{line}" for line in report.lines())
            continue
        model = parse_document(document)
        if isinstance(model, Pipeline):
            loaded.pipelines.append(model)
        elif loaded.run is not None:
            errors.append(f"{where}a file may hold one PipelineRun")
        else:
            loaded.run = model
    if errors:
        raise LoadError(source, errors)
    return loaded


def _load_template(reference: str) -> Loaded:
    try:
        pipeline = from_template(reference.removeprefix(TEMPLATE_PREFIX))
    except (LookupError, PipelineDefinitionError) as error:
        raise LoadError(reference, [str(error)]) from None
    return Loaded(reference, pipelines=[pipeline.to_model()])


def _load_python(reference: str) -> Loaded:
    sys.path.insert(0, str(Path.cwd()))  # `kubedag submit -f mypipes:etl` next to mypipes.py
    try:
        pipeline = load_pipeline(reference)
        report = pipeline.validate()
        if not report.ok:
            raise LoadError(reference, report.lines())
        return Loaded(reference, pipelines=[pipeline.to_model()])
    except PipelineDefinitionError as error:
        raise LoadError(reference, [str(error)]) from None
    finally:
        sys.path.remove(str(Path.cwd()))
