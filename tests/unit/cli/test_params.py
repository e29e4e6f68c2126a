"""`-p NAME=VALUE`: YAML scalars and JSON, strings kept verbatim, the bad one named."""

from __future__ import annotations

import pytest

from kubedag.api import ParamType
from kubedag.cli.params import ParamError, declared_types, parse_params
from tests.unit.core.factories import pipeline, stage


@pytest.mark.parametrize(("option", "value"), [
    ("n=3", 3),
    ("ratio=0.5", 0.5),
    ("debug=true", True),
    ('files=["a","b"]', ["a", "b"]),
    ("files=[a, b]", ["a", "b"]),
    ('opts={"k": 1}', {"k": 1}),
    ("name=hello world", "hello world"),
    ("empty=", ""),
    ("eq=a=b", "a=b"),
    ("nothing=null", None),
])
def test_values_are_yaml_scalars_or_json(option: str, value: object) -> None:
    name = option.split("=", 1)[0]
    assert parse_params([option]) == {name: value}


def test_declared_strings_are_kept_as_typed() -> None:
    declared = {"version": ParamType.STRING, "n": ParamType.INT}
    assert parse_params(["version=1.10", "n=7"], declared) == {"version": "1.10", "n": 7}


def test_a_later_option_wins() -> None:
    assert parse_params(["n=1", "n=2"]) == {"n": 2}


@pytest.mark.parametrize(("option", "message"), [
    ("n", "-p n: expected NAME=VALUE"),
    ("=3", "-p =3: expected NAME=VALUE"),
    ("files=[a, b", "-p files: malformed value '[a, b'"),
    ('obj={"a": 1', "-p obj: malformed value"),
])
def test_malformed_options_name_the_parameter(option: str, message: str) -> None:
    with pytest.raises(ParamError) as error:
        parse_params(["ok=1", option])
    assert str(error.value).startswith(message)


def test_declared_types_come_from_the_pipeline() -> None:
    spec = pipeline(stage("a"), params=[{"name": "n", "type": "int", "default": 1},
                                        {"name": "s"}])
    assert declared_types(spec) == {"n": ParamType.INT, "s": ParamType.STRING}
    assert declared_types(None) == {}
