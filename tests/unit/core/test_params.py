"""resolve_params: declared defaults overlaid with the run's values, every problem named."""

from __future__ import annotations

from typing import Any

import pytest

from kubedag.core.params import resolve_params
from tests.unit.core.factories import pipeline, stage

SPEC = pipeline(stage("a"), params=[
    {"name": "s", "type": "string", "default": "x"},
    {"name": "i", "type": "int"},
    {"name": "f", "type": "float", "default": 1.5},
    {"name": "b", "type": "bool", "default": False},
    {"name": "arr", "type": "array", "default": []},
    {"name": "obj", "type": "object", "default": {"k": 1}},
])
DEFAULTS = {"s": "x", "f": 1.5, "b": False, "arr": [], "obj": {"k": 1}}


@pytest.mark.parametrize(("given", "values", "errors"), [
    ({"i": 1}, {**DEFAULTS, "i": 1}, []),
    ({"i": 1, "s": "y", "f": 2, "b": True, "arr": [1], "obj": {}},
     {"s": "y", "i": 1, "f": 2, "b": True, "arr": [1], "obj": {}}, []),  # an int is a float
    ({}, DEFAULTS, ["spec.params.i: required (the pipeline declares no default)"]),
    (None, DEFAULTS, ["spec.params.i: required (the pipeline declares no default)"]),
    ({"i": 1, "zz": 1, "aa": 2}, {**DEFAULTS, "i": 1},
     ["spec.params.aa: not declared by the pipeline",
      "spec.params.zz: not declared by the pipeline"]),  # sorted
    ({"i": "1"}, DEFAULTS, ["spec.params.i: expected int, got str"]),
    ({"i": True}, DEFAULTS, ["spec.params.i: expected int, got bool"]),
    ({"i": 1.0}, DEFAULTS, ["spec.params.i: expected int, got float"]),
    ({"i": 1, "f": True}, {**DEFAULTS, "i": 1}, ["spec.params.f: expected float, got bool"]),
    ({"i": 1, "b": 0}, {**DEFAULTS, "i": 1}, ["spec.params.b: expected bool, got int"]),
    ({"i": 1, "arr": "a,b"}, {**DEFAULTS, "i": 1}, ["spec.params.arr: expected array, got str"]),
    ({"i": 1, "obj": []}, {**DEFAULTS, "i": 1}, ["spec.params.obj: expected object, got list"]),
    ({"i": 1, "s": 5}, {**DEFAULTS, "i": 1}, ["spec.params.s: expected string, got int"]),
])
def test_resolve_params(given: dict[str, Any] | None, values: dict[str, Any],
                        errors: list[str]) -> None:
    got_values, got_errors = resolve_params(SPEC, given)
    assert got_errors == errors
    # A mistyped value is reported, never replaced by the default.
    wrong = {e.split(":")[0].removeprefix("spec.params.") for e in errors}
    assert got_values == {k: v for k, v in values.items() if k not in wrong}


def test_every_problem_is_reported_at_once() -> None:
    _, errors = resolve_params(SPEC, {"nope": 1, "s": 2})
    assert errors == ["spec.params.nope: not declared by the pipeline",
                      "spec.params.s: expected string, got int",
                      "spec.params.i: required (the pipeline declares no default)"]


def test_no_declared_params() -> None:
    assert resolve_params(pipeline(stage("a")), None) == ({}, [])
    assert resolve_params(pipeline(stage("a")), {"x": 1}) == (
        {}, ["spec.params.x: not declared by the pipeline"])

