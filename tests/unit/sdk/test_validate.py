"""`Pipeline.validate()`: the operator's checks offline, each problem at its step and field."""

from __future__ import annotations

import pytest

from kubedag.sdk import Pipeline, PipelineDefinitionError


def _pipeline() -> Pipeline:
    p = Pipeline("checks", params={"files": list, "n": 1})
    p.add_step("a", image="x", depends_on=["c"])
    p.add_step("b", image="x", depends_on=["a"], when="stages.a.outputs.count >")
    p.add_step("c", image="x", depends_on=["b"], args=["$(params.missing)"])
    p.add_step("d", image="x", depends_on=["ghost"], fan_out="$(params.n)")
    p.add_step("e", image="x", env={"X": "$(stages.d.outputs.k)"})
    return p


def test_graph_cel_references_and_params_are_reported_with_steps() -> None:
    report = _pipeline().validate()
    assert not report.ok
    lines = report.lines()
    expected = [
        "spec.stages[2].args[0] (step 'c'): unknown param 'missing'",
        "spec.stages[3].dependsOn[0] (step 'd'): unknown stage 'ghost'",
        "spec.stages[3].fanOut.itemsFrom (step 'd'): param 'n' must be of type array",
        "spec.stages[4].env[0].value (step 'e'): stage 'd' is not upstream of 'e'",
    ]
    for line in expected:
        assert any(actual.startswith(line) for actual in lines), (line, lines)
    # A cycle is named in run order, as people draw it.
    assert any("dependency cycle: a → b → c → a" in line for line in lines), lines
    assert any(line.startswith("spec.stages[1].when (step 'b'): invalid CEL expression")
               for line in lines), lines


def test_raise_for_errors_lists_every_problem() -> None:
    report = _pipeline().validate()
    with pytest.raises(PipelineDefinitionError) as caught:
        report.raise_for_errors()
    assert str(caught.value).startswith(f"pipeline 'checks' has {len(report.errors)} problem(s):")
    assert caught.value.errors == report.errors


def test_a_pipeline_whose_model_cannot_be_built_is_still_fully_checked() -> None:
    p = Pipeline("unbuildable")
    p.add_step("a", image="x", retry=1000, depends_on=["nope"])
    lines = p.validate().lines()
    assert "spec.stages[0].retry.limit (step 'a'): Input should be less than or equal to 100" \
        in lines
    assert "spec.stages[0].dependsOn[0] (step 'a'): unknown stage 'nope'" in lines


def test_a_valid_pipeline_reports_nothing_and_is_truthy() -> None:
    p = Pipeline("fine", params={"files": list})
    p.add_step("a", image="x", fan_out="$(params.files)", outputs=["k"])
    p.add_step("b", image="x", depends_on=["a"], when="stages.a.outputs.k > 0")
    report = p.validate()
    assert report.ok and report and report.errors == []
    assert str(report) == "pipeline 'fine' is valid"
    report.raise_for_errors()


def test_to_run_validates_and_checks_params() -> None:
    p = Pipeline("runs", params={"files": list, "lang": "en"}, namespace="team")
    p.add_step("a", image="x")
    run = p.to_run({"files": ["x.pdf"]})
    assert run.metadata == {"generateName": "runs-", "namespace": "team",
                            "labels": {"kubedag.io/pipeline": "runs"}}
    assert run.spec.params == {"files": ["x.pdf"]}
    assert run.spec.pipeline_spec == p.build()
    assert p.to_run({"files": []}, name="first").metadata["name"] == "first"
    with pytest.raises(PipelineDefinitionError,
                       match=r"spec\.params\.extra: not declared.*spec\.params\.files: required"):
        p.to_run({"extra": 1})
    p.add_step("b", image="x", depends_on=["zzz"])
    with pytest.raises(PipelineDefinitionError, match=r"unknown stage 'zzz'"):
        p.to_run({"files": []})
