"""Ready-made pipelines (document processing, RAG, knowledge graph) to start from.

    from kubedag.templates import from_template, list_templates
    for info in list_templates():
        print(info.name, info.category, info.stages)
    p = from_template("rag", name_as="docs-index",
                      embed={"resources": {"cpu": "2", "memory": "2Gi"}, "retry": 2})
    p.run_local(params={"inputDir": "/data/docs"})

A template is a function that returns a fresh `kubedag.sdk.Pipeline`, so a caller can change
it (`override_step`, `add_step`) without changing the template. The built-in ones are Pipeline
manifests shipped with the package (``kubedag/templates/*.yaml``): readable, `kubectl apply`-able
as they are, and described by their own metadata (the ``kubedag.io/template-category`` label
and the ``kubedag.io/description`` annotation). Every stage of a built-in runs a processor of
the worker image (``kubedag.worker.processors``) that does the real work on the run's
workspace; the processors' modules document what each stage reads and writes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from kubedag import api
from kubedag.sdk import Pipeline

__all__ = [
    "TemplateInfo",
    "UnknownTemplateError",
    "from_template",
    "list_templates",
    "register_template",
    "template_info",
]

CATEGORY_LABEL = "kubedag.io/template-category"
TEMPLATE_LABEL = "kubedag.io/template"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # a Pipeline name (DNS-1123 label)

_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

Factory = Callable[[], Pipeline]


@dataclass(frozen=True)
class TemplateInfo:
    """What a template makes, without making it: for `kubedag templates ls|show`."""

    name: str
    category: str
    description: str
    stages: tuple[str, ...]  # in the order the template lists them
    processors: Mapping[str, str]  # stage → "module:function" (processor stages only)
    params: tuple[api.ParamSpec, ...]
    source: str  # the manifest of a built-in, else "registered"


class UnknownTemplateError(LookupError):
    """No template of that name; the message lists the ones there are."""


@dataclass(frozen=True)
class _Entry:
    factory: Factory
    category: str
    description: str
    source: str


_registry: dict[str, _Entry] = {}
_builtins_loaded = False


def _templates() -> dict[str, _Entry]:
    """The registry, with the built-ins loaded on first use (reading YAML costs time that
    `import kubedag.templates` should not)."""
    global _builtins_loaded  # noqa: PLW0603 - the registry is module state by design
    if not _builtins_loaded:
        _builtins_loaded = True
        for manifest in sorted(resources.files(__name__).iterdir(), key=lambda f: f.name):
            if manifest.name.endswith(".yaml"):
                _register_builtin(manifest.read_text(), manifest.name)
    return _registry


def _register_builtin(text: str, file_name: str) -> None:
    pipeline = Pipeline.from_yaml(text)
    labels = pipeline.metadata().get("labels") or {}
    _registry.setdefault(pipeline.name, _Entry(
        factory=lambda: Pipeline.from_yaml(text),
        category=str(labels.get(CATEGORY_LABEL, "other")),
        description=pipeline.description or "",
        source=f"kubedag/templates/{file_name}",
    ))


def register_template(
    name: str,
    factory_or_yaml: Factory | Pipeline | str | Path,
    *,
    category: str,
    description: str,
    replace: bool = False,
) -> None:
    """Make a template available to `from_template` (and `kubedag templates`).

    ``factory_or_yaml``: a function returning a new Pipeline on every call; a Pipeline (copied
    on every `from_template`, so changes to the copy never reach the template); or a Pipeline
    manifest as YAML text or a path to one (a Path, or a string ending in .yaml, .yml or
    .json). A name already taken (a built-in included) is an error unless ``replace=True``.
    """
    if not _NAME.match(name):
        raise ValueError(f"template name {name!r} must be a DNS-1123 label (lowercase letters, "
                         "digits and '-', at most 63 characters), as a Pipeline name is")
    if len(name) > 63:
        raise ValueError(f"template name {name!r} is longer than 63 characters")
    templates = _templates()
    if name in templates and not replace:
        raise ValueError(f"template {name!r} already exists ({templates[name].source}); "
                         "pass replace=True to replace it")
    templates[name] = _Entry(_factory_of(factory_or_yaml), category, description, "registered")


def _factory_of(source: Factory | Pipeline | str | Path) -> Factory:
    if isinstance(source, Pipeline):
        model = source.to_model()  # checked now, not at first use
        return lambda: Pipeline.from_model(model)
    if isinstance(source, Path) or (
        isinstance(source, str) and "\n" not in source and source.endswith(_MANIFEST_SUFFIXES)
    ):
        text = Path(source).read_text()
        Pipeline.from_yaml(text)  # a broken manifest fails at registration
        return lambda: Pipeline.from_yaml(text)
    if isinstance(source, str):
        Pipeline.from_yaml(source)
        return lambda: Pipeline.from_yaml(source)
    if callable(source):
        return source
    raise TypeError(f"expected a function returning a Pipeline, a Pipeline, or YAML; got "
                    f"{type(source).__name__}")


def _entry(name: str) -> _Entry:
    templates = _templates()
    if name not in templates:
        raise UnknownTemplateError(f"no template {name!r}; there are: "
                                   f"{', '.join(sorted(templates))}")
    return templates[name]


def from_template(name: str, *, name_as: str | None = None,
                  **step_overrides: Mapping[str, Any]) -> Pipeline:
    """A new Pipeline made from template ``name``, named ``name_as`` if given, with the fields of
    some steps changed: ``step=dict(field=value, ...)``, the fields `Pipeline.override_step`
    takes (`resources`, `retry`, `timeout`, `image`, `fan_out`, ...). A step name with '-' is
    written with '_' (`build_kg={...}` for step `build-kg`).
    """
    entry = _entry(name)
    pipeline = entry.factory()
    if not isinstance(pipeline, Pipeline):
        raise TypeError(f"template {name!r} made a {type(pipeline).__name__}, not a Pipeline")
    if name_as is not None:
        pipeline.name = name_as
    steps = {step.name for step in pipeline.steps}
    for step, fields in step_overrides.items():
        target = step if step in steps else step.replace("_", "-")
        if target not in steps:
            raise ValueError(f"template {name!r} has no step {step!r}; its steps: "
                             f"{', '.join(s.name for s in pipeline.steps)}")
        if not isinstance(fields, Mapping):
            raise TypeError(f"override of step {step!r} must be a dict of fields, got "
                            f"{type(fields).__name__}")
        pipeline.override_step(target, **fields)
    return pipeline


def template_info(name: str) -> TemplateInfo:
    """The template's category, description, stages, processors and params."""
    entry = _entry(name)
    spec = entry.factory().build()
    return TemplateInfo(
        name=name,
        category=entry.category,
        description=entry.description,
        stages=tuple(stage.name for stage in spec.all_stages()),
        processors={s.name: s.processor for s in spec.all_stages() if s.processor},
        params=tuple(spec.params or ()),
        source=entry.source,
    )


def list_templates(category: str | None = None) -> list[TemplateInfo]:
    """Every template (of ``category``, if given), by name."""
    return [template_info(name) for name, entry in sorted(_templates().items())
            if category is None or entry.category == category]
