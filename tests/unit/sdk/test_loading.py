"""`load_pipeline`: the CLI's way to name a pipeline, a manifest file or `module:attribute`."""

from __future__ import annotations

from pathlib import Path

import pytest
from examples.sdk import etl

from kubedag.sdk import Pipeline, PipelineDefinitionError, load_pipeline

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_manifest_files_yaml_and_json(tmp_path: Path) -> None:
    assert load_pipeline(str(EXAMPLES / "document-pipeline.yaml")).name == "document-pipeline"
    assert load_pipeline(EXAMPLES / "hello-run.yaml").name == "hello"
    as_json = tmp_path / "etl.json"
    as_json.write_text(etl.pipeline.to_json())
    assert load_pipeline(str(as_json)).to_model() == etl.pipeline.to_model()


def test_python_references_to_a_pipeline_or_a_factory() -> None:
    assert load_pipeline("examples.sdk.etl:pipeline") is etl.pipeline
    built = load_pipeline("examples.sdk.builder:build")
    assert isinstance(built, Pipeline) and built.name == "documents-builder"


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("missing.yaml", r"missing\.yaml: no such file"),
        ("no_such_module_xyz:p", r"cannot import 'no_such_module_xyz'"),
        ("examples.sdk.etl:nothing", r"module 'examples\.sdk\.etl' has no 'nothing'"),
        ("examples.sdk.etl:extract", r"is a function that needs arguments \(ctx\)"),
        ("examples.sdk.etl:__doc__", r"is a str, not a kubedag\.sdk\.Pipeline"),
        ("just-a-name", r"give a manifest file .* or 'package\.module:attribute'"),
    ],
)
def test_bad_references_say_what_is_expected(reference: str, message: str) -> None:
    with pytest.raises(PipelineDefinitionError, match=message):
        load_pipeline(reference)
