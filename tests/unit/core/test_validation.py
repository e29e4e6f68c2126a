"""validate_pipeline: schema, graph, `when` and reference errors together, each with its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubedag.api import PipelineSpec
from kubedag.core.validation import FieldError, validate_pipeline

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
WORKER = "ghcr.io/kubedag/worker:0.1.0"


def stage(name: str, *deps: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": WORKER, "dependsOn": list(deps), **fields}


def messages(spec: dict[str, Any]) -> list[str]:
    return [str(e) for e in validate_pipeline(spec)]


def test_valid_spec_as_dict_and_model() -> None:
    spec = {
        "params": [{"name": "translate", "type": "bool", "default": False}],
        "stages": [
            stage("extract", outputs=[{"name": "scanned_pages"}]),
            stage("ocr", "extract", when="stages.extract.outputs.scanned_pages > 0"),
            stage("translate", "ocr", when="params.translate"),
        ],
        "finally": [stage("report", args=["$(stages.translate.outputs.anything)"])],
    }
    assert validate_pipeline(spec) == []
    assert validate_pipeline(PipelineSpec.model_validate(spec)) == []


def test_all_kinds_of_errors_at_once() -> None:
    spec = {
        "params": [{"name": "files", "type": "string"}],
        "stages": [
            stage("a", "c"),
            stage("b", "a", when="stages.c.outputs.x > 0"),
            stage("c", "b", "ghost"),
            stage("d", when="params.nope && stages.a.outputs.k"),
            stage("e", "a", args=["$(params.files)", "$(param.typo)"], when="1 +"),
            stage("f", fanOut={"itemsFrom": "$(params.files)"}),
            {"name": "g", "command": ["x"]},
        ],
    }
    assert messages(spec) == [
        "spec.stages[6]: a stage with a command needs an image",
        "spec.stages[2].dependsOn[1]: unknown stage 'ghost'",
        "spec.stages[0].dependsOn[0]: dependency cycle: a → b → c → a",
        "spec.stages[3].when: unknown param 'nope'",
        "spec.stages[3].when: stage 'a' is not upstream of 'd': add it to dependsOn "
        "(directly or through another stage) so its outputs exist in time",
        "spec.stages[4].when: invalid CEL expression `1 +`: 1 + ^",
        "spec.stages[4].args[1]: $(param.typo) is not a reference: use $(params.<name>) or "
        "$(stages.<stage>.outputs.<key>), or write $$( for a literal $( (a shell's command "
        "substitution)",
        "spec.stages[5].fanOut.itemsFrom: param 'files' must be of type array",
    ]


def test_when_may_read_transitive_upstream_but_not_siblings() -> None:
    spec = {
        "stages": [
            stage("a"),
            stage("b", "a"),
            stage("c", "b", when="stages.a.outputs.ok"),
            stage("d", "a", when="stages.b.outputs.ok"),
        ]
    }
    assert [e.path for e in validate_pipeline(spec)] == ["spec.stages[3].when"]


def test_when_may_read_the_phase_and_reason_of_upstream_stages_only() -> None:
    spec = {
        "stages": [
            stage("a"),
            stage("b", "a", when="stages.a.phase == 'Failed' && stages.a.reason != ''"),
            stage("c", "a", when="stages.b.phase == 'Failed'"),
            stage("d", "a", when="stages.ghost.reason == ''"),
            stage("e", "a", when="stages.a.foo == 1"),
        ]
    }
    assert messages(spec) == [
        "spec.stages[2].when: stage 'b' is not upstream of 'c': add it to dependsOn "
        "(directly or through another stage) so it has finished in time",
        "spec.stages[3].when: unknown stage 'ghost'",
        "spec.stages[4].when: stages.a.foo is not something a stage has: read "
        "stages.a.outputs.<key>, stages.a.phase or stages.a.reason",
    ]


def test_declared_outputs_are_a_contract() -> None:
    spec = {
        "stages": [
            stage("a", outputs=[{"name": "pages"}]),
            stage("b", "a", env=[{"name": "N", "value": "$(stages.a.outputs.page)"}]),
        ]
    }
    assert validate_pipeline(spec) == [
        FieldError("spec.stages[1].env[0].value", "stage 'a' declares no output 'page'")
    ]


def test_a_fan_out_stage_also_has_the_outputs_kubedag_adds() -> None:
    spec = {
        "stages": [
            stage("a", outputs=[{"name": "pages"}], fanOut={"items": [1, 2]}),
            stage("b", "a", when="stages.a.outputs.count > 1 && stages.a.outputs.pages > 0",
                  env=[{"name": "R", "value": "$(stages.a.outputs.results)"},
                       {"name": "T", "value": "$(stages.a.outputs.total)"}]),
        ]
    }
    assert validate_pipeline(spec) == [
        FieldError("spec.stages[1].env[1].value", "stage 'a' declares no output 'total'")
    ]


def test_finally_rules() -> None:
    spec = {
        "stages": [stage("a")],
        "finally": [stage("a"), stage("z", "a", "y"), stage("y", "z")],
    }
    assert messages(spec) == [
        "spec.finally[2].dependsOn[0]: dependency cycle: y → z → y",
        "spec.finally[0].name: stage name 'a' is already used in spec.stages",
    ]


def test_main_stage_cannot_depend_on_finally() -> None:
    spec = {"stages": [stage("a", "z")], "finally": [stage("z")]}
    assert messages(spec) == ["spec.stages[0].dependsOn[0]: unknown stage 'z'"]


def test_inline_path_prefix() -> None:
    errors = validate_pipeline({"stages": [stage("a", "a")]}, path="spec.pipelineSpec")
    assert [e.path for e in errors] == ["spec.pipelineSpec.stages[0].dependsOn[0]"]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    spec = doc["spec"] if doc["kind"] == "Pipeline" else doc["spec"].get("pipelineSpec")
    if spec is not None:
        assert validate_pipeline(spec) == []


@pytest.mark.parametrize(
    "path", sorted((EXAMPLES / "invalid").glob("*.yaml")), ids=lambda p: p.name
)
def test_invalid_examples_say_what_is_wrong_and_are_caught(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("# INVALID:")
    doc = yaml.safe_load(text)
    if doc["kind"] == "Pipeline":
        assert validate_pipeline(doc["spec"]) != []
