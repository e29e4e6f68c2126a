"""Pipelines as data: what `to_yaml` writes is what `kubectl apply` takes, reads back equal,
and every example round-trips; invalid manifests are reported offline at the right field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubedag import api
from kubedag.sdk import Pipeline, PipelineDefinitionError, validate_document
from tests.unit.sdk.test_builder import IMAGE

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _holds_a_pipeline(path: Path) -> bool:
    """One kubedag document holding a pipeline (other examples hold Kueue's queues, say)."""
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return len(documents) == 1 and documents[0]["apiVersion"].startswith("kubedag.io/") and (
        documents[0]["kind"] == "Pipeline" or "pipelineSpec" in documents[0]["spec"])


# Chosen, not skipped: invalid examples are tested below, runs of a referenced Pipeline hold none.
ROUND_TRIP = [p for p in sorted(EXAMPLES.rglob("*.yaml"))
              if "invalid" not in p.parts and _holds_a_pipeline(p)]
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))


def test_every_kind_of_example_is_covered() -> None:
    names = {p.name for p in ROUND_TRIP}
    assert {"document-pipeline.yaml", "hello-run.yaml", "workspace-run.yaml",
            "document-run.yaml"} <= names


@pytest.mark.parametrize("path", ROUND_TRIP, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_round_trip_is_lossless(path: Path) -> None:
    pipeline = Pipeline.from_yaml(path)
    text = pipeline.to_yaml()
    again = Pipeline.from_yaml(text)
    assert again.to_model() == pipeline.to_model()
    assert again.to_yaml() == text  # a fixed point: writing twice changes nothing
    assert Pipeline.from_json(pipeline.to_json()).to_model() == pipeline.to_model()
    original = yaml.safe_load(path.read_text())
    spec = original["spec"] if original["kind"] == "Pipeline" else original["spec"]["pipelineSpec"]
    assert pipeline.build() == api.PipelineSpec.model_validate(spec)


def test_a_run_gives_its_inline_pipeline_named_by_label_or_name() -> None:
    pipeline = Pipeline.from_yaml(EXAMPLES / "hello-run.yaml")
    assert pipeline.name == "hello"
    assert [s.name for s in pipeline.steps] == ["hello", "world", "there"]
    run = pipeline.to_run({"greeting": "hey"})
    assert Pipeline.from_model(run).name == "hello"  # from the kubedag.io/pipeline label
    with pytest.raises(PipelineDefinitionError, match=r"runs the Pipeline 'document-pipeline' "
                                                      r"\(pipelineRef\).*load that Pipeline"):
        Pipeline.from_yaml(EXAMPLES / "document-pipeline-run.yaml")


def test_yaml_is_block_style_in_model_order_without_defaults() -> None:
    p = Pipeline("ordered", namespace="team", image=IMAGE, description="Line one.\nLine two.",
                 params={"n": 3})
    p.add_step("b", processor="pkg.m:b", retry=1, critical=True)
    p.add_step("a", command=["sh", "-c", "echo 1\necho 2"], depends_on=["b"])
    text = p.to_yaml()
    assert text == """\
apiVersion: kubedag.io/v1alpha1
kind: Pipeline
metadata:
  name: ordered
  namespace: team
  annotations:
    kubedag.io/description: |-
      Line one.
      Line two.
spec:
  params:
    - name: n
      type: int
      default: 3
  stages:
    - name: b
      processor: pkg.m:b
      retry:
        limit: 1
    - name: a
      image: ghcr.io/kubedag/worker:0.1.0
      command:
        - sh
        - -c
        - |-
          echo 1
          echo 2
      dependsOn:
        - b
  defaults:
    image: ghcr.io/kubedag/worker:0.1.0
"""
    assert json.loads(p.to_json()) == yaml.safe_load(text)
    loaded = Pipeline.from_yaml(text)
    assert (loaded.name, loaded.namespace, loaded.description) == (
        "ordered", "team", "Line one.\nLine two.")


def test_reading_reports_schema_errors_with_paths_and_refuses_other_things() -> None:
    with pytest.raises(PipelineDefinitionError,
                       match=r"spec\.stages\[0\]\.retry\.limit \(step 'a'\)"):
        Pipeline.from_yaml("kind: Pipeline\napiVersion: kubedag.io/v1alpha1\nmetadata: {name: x}\n"
                           "spec: {stages: [{name: a, image: b, retry: {limit: -1}}]}\n")
    with pytest.raises(PipelineDefinitionError, match=r"expected Pipeline or PipelineRun, got "
                                                      r"'Deployment'"):
        Pipeline.from_yaml("kind: Deployment\n")
    with pytest.raises(PipelineDefinitionError, match=r"found 2"):
        Pipeline.from_yaml("kind: Pipeline\n---\nkind: Pipeline\n")


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_every_invalid_example_is_reported_offline_naming_its_field(path: Path) -> None:
    """The CRD's CEL rules that pydantic cannot run are the model validators' and the core's
    checks: every manifest the API server rejects is caught here, at the same field."""
    text = path.read_text()
    expected = re.search(r"^# expect-field: (\S+)$", text, re.MULTILINE)
    assert expected, path
    report = validate_document(yaml.safe_load(text))
    assert not report.ok
    assert any(e.path.startswith(expected.group(1)) for e in report.errors), report.lines()
    with pytest.raises(PipelineDefinitionError, match=re.escape(expected.group(1))):
        report.raise_for_errors()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"apiVersion": "v1", "kind": "Pipeline", "metadata": {"name": "a"},
          "spec": {"stages": [{"name": "s", "image": "x"}]}}, "apiVersion: expected"),
        ({"apiVersion": "kubedag.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": "Bad_Name"},
          "spec": {"stages": [{"name": "s", "image": "x"}]}}, "metadata.name: 'Bad_Name' is not"),
        ({"apiVersion": "kubedag.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": "a"}},
         "spec: required"),
        ("text", "expected a Pipeline or PipelineRun object"),
    ],
)
def test_document_envelope_errors(document: Any, message: str) -> None:
    assert any(message in line for line in validate_document(document).lines())
