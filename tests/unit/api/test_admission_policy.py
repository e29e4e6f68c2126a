"""A run's inline-pipeline rules move from its CRD into an admission policy (the API server's
evaluation of the result: tests/integration/test_crds.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kubedag.api.admissionpolicy import (
    EACH_ITEM,
    PlacedRule,
    Step,
    holds,
    names_the_failure,
    take_rules,
)
from kubedag.api.crd import KINDS, admission_policy, crd

RUN = next(kind for kind in KINDS if kind.kind == "PipelineRun")
PIPELINE = next(kind for kind in KINDS if kind.kind == "Pipeline")


def rules(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        for entry in node.get("x-kubernetes-validations", ()):
            yield path, entry
        for name, child in node.items():
            yield from rules(child, f"{path}.{name}")
    elif isinstance(node, list):
        for child in node:
            yield from rules(child, path)


def spec_schema(kind_crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = kind_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]


def test_the_runs_crd_keeps_no_rule_of_its_inline_pipeline() -> None:
    spec = spec_schema(crd(RUN))
    assert list(rules(spec["properties"]["pipelineSpec"])) == []
    assert [e["message"] for _, e in rules(spec) if "pipelineRef" in e["rule"]] == [
        "set exactly one of pipelineRef or pipelineSpec"]


def test_the_policy_checks_every_rule_the_pipeline_crd_has() -> None:
    """One source: the same model's rules, at the same places, in both."""
    pipeline_rules = sorted(e["rule"] for _, e in rules(spec_schema(crd(PIPELINE)))
                            if "pipelineRef" not in e["rule"])
    policy = admission_policy(RUN)[0]
    assert len(policy["spec"]["validations"]) == len(pipeline_rules) > 20
    checked = " ".join(v["expression"] for v in policy["spec"]["validations"])
    for rule in pipeline_rules:
        assert rule.split(" || size(")[0] in checked, rule


def test_no_kubedag_key_reaches_a_crd() -> None:
    for kind in KINDS:
        for path, entry in rules(crd(kind)):
            assert set(entry) <= {"rule", "message", "messageExpression", "fieldPath"}, path


def test_the_duplicate_names_excuse_stays_in_the_crd_only() -> None:
    """The schema refuses duplicate stage names before admission runs, and the quadratic check
    would exceed a policy expression's cost limit on a failing 1,000-stage pipeline."""
    crd_rules = [e["rule"] for _, e in rules(spec_schema(crd(PIPELINE)))]
    assert sum("distinct()" in rule for rule in crd_rules) == 3
    policy = admission_policy(RUN)[0]
    assert not any("distinct()" in v["expression"] for v in policy["spec"]["validations"])


def test_bound_to_runs_alone_not_their_status_and_only_for_a_new_pipeline() -> None:
    policy, binding = admission_policy(RUN)
    rule = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule == [{"apiGroups": ["kubedag.io"], "apiVersions": ["*"],
                     "operations": ["CREATE", "UPDATE"], "resources": ["pipelineruns"]}]
    assert policy["spec"]["failurePolicy"] == "Fail"
    [condition] = policy["spec"]["matchConditions"]
    assert "object.spec.pipelineSpec != oldObject.spec.pipelineSpec" in condition["expression"]
    assert binding["spec"] == {"policyName": policy["metadata"]["name"],
                               "validationActions": ["Deny"]}


LIST_IN_LIST = (Step("pipelineSpec"), Step("stages", required=True), EACH_ITEM,
                Step("env"), EACH_ITEM)


def test_a_rule_holds_at_every_place_it_reaches() -> None:
    """Lists are walked with `all(self, ...)`; an absent optional field holds."""
    assert holds("object.spec", LIST_IN_LIST, "self.x") == (
        "(!has(object.spec.pipelineSpec) || object.spec.pipelineSpec.stages.all(self, "
        "(!has(self.env) || self.env.all(self, self.x))))")
    assert holds("object.spec", (Step("defaults"), Step("workspace")), "self.y") == (
        "(!has(object.spec.defaults) || (!has(object.spec.defaults.workspace) || "
        "[object.spec.defaults.workspace].all(self, self.y)))")


def test_the_message_names_the_first_failing_index_at_each_level() -> None:
    placed = PlacedRule(LIST_IN_LIST, "self.x", "x is wrong", None, ".value")
    assert names_the_failure("object.spec", ["spec"], LIST_IN_LIST, placed) == (
        "[object.spec.pipelineSpec.stages.transformList(i0, self, "
        "!((!has(self.env) || self.env.all(self, self.x))), i0)[0]].map(i0, "
        "[object.spec.pipelineSpec.stages[i0]].map(self, "
        "[self.env.transformList(i1, self, !(self.x), i1)[0]].map(i1, "
        "[self.env[i1]].map(self, 'spec.pipelineSpec.stages[' + string(i0) + '].env[' + "
        "string(i1) + '].value: x is wrong')[0])[0])[0])[0]")


def test_a_message_expression_reads_the_node_the_rule_failed_on() -> None:
    placed = PlacedRule((Step("defaults"), Step("workspace")), "self.y", "y",
                        "'workspace ' + self.name", None)
    assert names_the_failure("object.spec", ["spec"], placed.steps, placed) == (
        "[object.spec.defaults.workspace].map(self, "
        "'spec.defaults.workspace: ' + ('workspace ' + self.name))[0]")


def test_a_rule_under_a_maps_values_is_refused_not_dropped() -> None:
    schema = {"type": "object", "additionalProperties": {
        "type": "object", "x-kubernetes-validations": [{"rule": "true", "message": "m"}]}}
    with pytest.raises(NotImplementedError):
        take_rules(schema)
