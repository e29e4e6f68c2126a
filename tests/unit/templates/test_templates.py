"""kubedag.templates: the three built-ins are valid pipelines whose every stage is a real worker
processor, and the registry lists, describes, copies and overrides templates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kubedag import templates
from kubedag.core.validation import validate_pipeline
from kubedag.sdk import Pipeline
from kubedag.templates import (
    UnknownTemplateError,
    from_template,
    list_templates,
    register_template,
    template_info,
)
from kubedag.worker.loader import load_processor
from kubedag.worker.processors.vector_index import query
from tests.unit.worker.template_support import corpus_workspace, stage_context

PACKAGE_DIR = Path(templates.__file__).parent
BUILTINS = {
    "document-processing": ("documents",
                            ("ingest", "parse", "normalize", "extract", "embed", "build-kg")),
    "rag": ("retrieval", ("ingest", "chunk", "embed", "store")),
    "knowledge-graph": ("knowledge-graph", ("ingest", "extract-entities", "extract-relations",
                                            "deduplicate", "resolve-conflicts", "build-graph")),
}


@pytest.fixture
def registry() -> Iterator[None]:
    """Leave the registry as it was: templates registered by a test go away after it."""
    saved = dict(templates._templates())
    yield
    templates._registry.clear()
    templates._registry.update(saved)


def test_the_built_ins_are_listed_with_their_stages_in_order() -> None:
    listed = {info.name: (info.category, info.stages) for info in list_templates()}
    assert listed == BUILTINS
    assert [i.name for i in list_templates(category="retrieval")] == ["rag"]
    assert list_templates(category="no-such-category") == []


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_a_built_in_validates_clean_and_runs_only_real_processors(name: str) -> None:
    manifest = yaml.safe_load((PACKAGE_DIR / f"{name}.yaml").read_text())
    assert validate_pipeline(manifest["spec"]) == []
    pipeline = from_template(name)
    assert validate_pipeline(pipeline.build()) == []
    assert pipeline.validate().errors == []
    info = template_info(name)
    assert set(info.processors) == set(info.stages)  # no stage without a processor
    for reference in info.processors.values():
        assert reference.startswith("kubedag.worker.processors.")
        assert callable(load_processor(reference))
    assert info.description and info.source == f"kubedag/templates/{name}.yaml"
    assert {p.name for p in info.params} >= {"inputDir"}


def test_the_manifests_are_package_data() -> None:
    """Hatch ships every file of the package directory; the templates must sit inside it."""
    assert sorted(p.name for p in PACKAGE_DIR.glob("*.yaml")) == sorted(
        f"{name}.yaml" for name in BUILTINS)


def test_from_template_gives_a_new_pipeline_each_time_with_overrides() -> None:
    first = from_template("rag", name_as="docs-index",
                          embed={"resources": {"cpu": "2", "memory": "2Gi"}, "retry": 4})
    assert first.name == "docs-index"
    embed = next(s for s in first.build().stages if s.name == "embed")
    assert (embed.resources and str(embed.resources.cpu), embed.retry and embed.retry.limit) \
        == ("2", 4)
    untouched = next(s for s in from_template("rag").build().stages if s.name == "embed")
    assert untouched.retry is None and from_template("rag").name == "rag"
    graph = from_template("document-processing", build_kg={"timeout": 120})
    assert next(s for s in graph.build().stages if s.name == "build-kg").timeout_seconds == 120


def test_overrides_name_a_step_of_the_template() -> None:
    with pytest.raises(ValueError, match="has no step 'summarize'; its steps: ingest, chunk"):
        from_template("rag", summarize={"retry": 1})
    with pytest.raises(UnknownTemplateError, match=r"no template 'ragg'; there are: .*rag"):
        from_template("ragg")


@pytest.mark.usefixtures("registry")
def test_registered_templates_from_a_factory_a_pipeline_or_yaml(tmp_path: Path) -> None:
    def factory() -> Pipeline:
        pipeline = Pipeline("hello", image="busybox:1.36")
        pipeline.add_step("say", command=["echo", "hi"])
        return pipeline

    register_template("hello", factory, category="examples", description="Says hi.")
    made = from_template("hello")
    made.override_step("say", args=["there"])
    assert from_template("hello").build().stages[0].args is None  # the template is unchanged
    assert template_info("hello").stages == ("say",)
    assert template_info("hello").description == "Says hi."

    register_template("hello-copy", factory(), category="examples", description="A copy.")
    assert from_template("hello-copy").to_yaml() == factory().to_yaml()

    manifest = tmp_path / "hello.yaml"
    manifest.write_text(factory().to_yaml())
    register_template("hello-file", manifest, category="examples", description="From a file.")
    register_template("hello-text", factory().to_yaml(), category="examples",
                      description="From text.")
    assert from_template("hello-file").to_yaml() == from_template("hello-text").to_yaml()
    assert [i.name for i in list_templates(category="examples")] == [
        "hello", "hello-copy", "hello-file", "hello-text"]


@pytest.mark.usefixtures("registry")
def test_registration_refuses_taken_and_malformed_names() -> None:
    with pytest.raises(ValueError, match="already exists"):
        register_template("rag", lambda: Pipeline("x"), category="c", description="d")
    register_template("rag", lambda: from_template("knowledge-graph"), category="c",
                      description="replaced", replace=True)
    assert template_info("rag").description == "replaced"
    with pytest.raises(ValueError, match="DNS-1123"):
        register_template("My_Template", lambda: Pipeline("x"), category="c", description="d")


@pytest.mark.parametrize(
    ("name", "last_outputs"),
    [
        ("document-processing", {"nodes": 17, "edges": 29, "entities": 11, "similar": 1,
                                 "conflicts": 2}),
        ("rag", {"documents": 3, "vectors": 5, "dims": 256, "index": "index"}),
        ("knowledge-graph", {"nodes": 14, "edges": 12, "components": 3}),
    ],
)
def test_a_template_runs_end_to_end_on_the_sample_corpus(
    tmp_path: Path, name: str, last_outputs: dict[str, object]
) -> None:
    """The template's own stages, processors and param defaults, in order, as pods would run
    them (the counts are worked out in tests/unit/worker/test_*_stages.py)."""
    spec = from_template(name).build()
    params = {p.name: p.default for p in spec.params or ()}
    workspace = corpus_workspace(tmp_path)
    done: set[str] = set()
    outputs: dict[str, object] = {}
    for stage in spec.stages:
        assert set(stage.depends_on or ()) <= done, f"{stage.name} listed before its inputs"
        assert stage.processor is not None
        context = stage_context(workspace, params, stage=stage.name)
        outputs = load_processor(stage.processor)(context)
        done.add(stage.name)
    assert {key: outputs[key] for key in last_outputs} == last_outputs
    if name == "rag":
        (best,) = query(workspace / "index", "battery cathode chemistry", k=1)
        assert best["doc"] == "globex.txt" and "lithium iron phosphate" in best["text"]
