"""The builder: friendly values become the api.Stage fields, bad input names step and field."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from kubedag import api
from kubedag.sdk import Pipeline, PipelineDefinitionError

IMAGE = "ghcr.io/kubedag/worker:0.1.0"


def test_build_gives_the_api_model_with_friendly_values_converted() -> None:
    p = Pipeline("docs", image=IMAGE, params={"files": list, "language": "en", "strict": False},
                 max_parallel_stages=3)
    first = p.add_step("validate", processor="pkg.steps:validate")
    p.add_step("ocr", image="ocr:1", command=["ocr", "$(params.language)"], depends_on=[first],
               resources={"cpu": "2", "gpu": 1}, retry=3, timeout=timedelta(minutes=10),
               fan_out="$(params.files)", env={"MODE": "fast"}, outputs=["pages"],
               estimated_seconds=90.2, critical=False, priority=5)
    spec = p.build()
    assert isinstance(spec, api.PipelineSpec)
    assert [(s.name, s.type, s.default, s.required) for s in spec.params or []] == [
        ("files", api.ParamType.ARRAY, None, True),
        ("language", api.ParamType.STRING, "en", False),
        ("strict", api.ParamType.BOOL, False, False),
    ]
    assert spec.max_parallel_stages == 3
    assert spec.defaults == api.PipelineDefaults(image=IMAGE)
    ocr = spec.stages[1]
    assert ocr == api.Stage(
        name="ocr", image="ocr:1", command=["ocr", "$(params.language)"], depends_on=["validate"],
        resources=api.Resources(cpu="2", gpu=1), retry=api.RetryPolicy(limit=3),
        timeout_seconds=600, fan_out=api.FanOut(items_from="$(params.files)"),
        env=[api.EnvVar(name="MODE", value="fast")], outputs=[api.OutputSpec(name="pages")],
        estimated_seconds=91, critical=False, priority=5)


def test_models_and_dicts_are_accepted_as_they_are() -> None:
    p = Pipeline("m", params=[api.ParamSpec(name="n", type=api.ParamType.INT, default=2)])
    p.add_step("a", image="busybox", resources=api.Resources(memory="1Gi"),
               retry={"limit": 1, "strategy": "fixed"}, fan_out=api.FanOut(items=[1, 2]))
    p.add_step("b", image="busybox", fan_out=[{"k": 1}], depends_on=["a"])
    stage_a, stage_b = p.build().stages
    assert stage_a.resources == api.Resources(memory="1Gi")
    assert stage_a.retry == api.RetryPolicy(limit=1, strategy=api.RetryStrategy.FIXED)
    assert stage_b.fan_out == api.FanOut(items=[{"k": 1}])


def test_a_command_without_image_runs_in_the_pipeline_image() -> None:
    p = Pipeline("c", image=IMAGE)
    p.add_step("sh", command=["sh", "-c", "true"])
    assert p.build().stages[0].image == IMAGE


def test_connect_after_and_override() -> None:
    p = Pipeline("g")
    a = p.add_step("a", image="x")
    b = p.add_step("b", image="x")
    c = p.add_step("c", image="x").after(a, b)
    p.connect("a", "b")
    p.connect(a, "b")  # once only
    p.override_step("c", retry=2, image="y")
    c.set(timeout=30)
    p.override_step("c", retry=None)  # None: back to the default
    stages = {s.name: s for s in p.build().stages}
    assert stages["b"].depends_on == ["a"]
    assert stages["c"].depends_on == ["a", "b"]
    assert (stages["c"].image, stages["c"].retry, stages["c"].timeout_seconds) == ("y", None, 30)
    assert [s.name for s in p.steps] == ["a", "b", "c"]


def test_finally_steps_and_unique_names() -> None:
    p = Pipeline("f")
    p.add_step("a", image="x")
    p.finally_step("report", image="x", command=["echo"])
    assert [s.name for s in p.build().finally_ or []] == ["report"]
    with pytest.raises(PipelineDefinitionError,
                       match=r"step 'report' is already defined .*finally"):
        p.add_step("report", image="x")


def test_unknown_step_names_the_known_ones() -> None:
    p = Pipeline("u")
    p.add_step("a", image="x")
    with pytest.raises(KeyError, match=r"no step 'zz'; it has: a"):
        p.override_step("zz", retry=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retry": 500}, r"spec\.stages\[1\]\.retry\.limit \(step 'bad'\): Input should be less "
                         r"than or equal to 100"),
        ({"resources": {"memory": "lots"}},
         r"spec\.stages\[1\]\.resources\.memory \(step 'bad'\): String should match pattern"),
        ({"processor": "not a reference"}, r"spec\.stages\[1\]\.processor \(step 'bad'\)"),
        ({"command": ["x"], "processor": "a.b:c"},
         r"spec\.stages\[1\] \(step 'bad'\): set either command or processor, not both"),
        ({"colour": "blue"}, r"spec\.stages\[1\]\.colour \(step 'bad'\): Extra inputs"),
    ],
)
def test_bad_input_names_the_step_and_field(kwargs: dict[str, Any], message: str) -> None:
    p = Pipeline("bad-input")
    p.add_step("ok", image="x")
    p.add_step("bad", image="x", **kwargs)
    with pytest.raises(PipelineDefinitionError, match=message) as caught:
        p.build()
    assert caught.value.errors  # the individual problems, for tools


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: p.add_step("s", image="x", command="echo hi"),
         r"step 's': command must be a list of strings"),
        (lambda p: p.add_step("s", image="x", timeout="soon"),
         r"step 's': timeout must be a number of seconds or a timedelta"),
        (lambda p: Pipeline("x", params={"n": None}), r"param 'n': None is no default"),
        (lambda p: Pipeline("x", params={"n": complex}), r"param 'n': no parameter type"),
        (lambda p: p.override_step("a", name="b"), r"a step cannot be renamed"),
    ],
)
def test_friendly_values_refuse_what_they_cannot_mean(
    call: Callable[[Pipeline], object], message: str
) -> None:
    p = Pipeline("p")
    p.add_step("a", image="x")
    with pytest.raises(PipelineDefinitionError, match=message):
        call(p)


def test_param_mapping_with_paramspec_and_dict_values() -> None:
    p = Pipeline("p", params={
        "size": api.ParamSpec(name="ignored", type=api.ParamType.INT, default=3),
        "mode": {"type": "string", "description": "how"},
        "ids": list[int],
        "ratio": 0.5,
        "config": dict,
    })
    p.add_step("a", image="x")
    assert [(s.name, s.type.value, s.default) for s in p.build().params or []] == [
        ("size", "int", 3), ("mode", "string", None), ("ids", "array", None),
        ("ratio", "float", 0.5), ("config", "object", None)]


def test_a_fallback_takes_the_friendly_values_of_add_step_and_reads_back_equal() -> None:
    p = Pipeline("fb", image=IMAGE)
    p.add_step("fetch", processor="pkg.steps:fetch")
    p.add_step("extract", processor="pkg.steps:extract", depends_on=["fetch"],
               fallback={"command": ["sh", "-c", "cat cached.json"], "retry": 2,
                         "timeout": timedelta(minutes=1), "env": {"MODE": "cached"},
                         "fan_out": ["a", "b"], "node_selector": {"pool": "cheap"}})
    extract = p.build().stages[1]
    assert extract.fallback == api.Fallback(
        image=IMAGE, command=["sh", "-c", "cat cached.json"], retry=api.RetryPolicy(limit=2),
        timeout_seconds=60, env=[api.EnvVar(name="MODE", value="cached")],
        fan_out=api.FanOut(items=["a", "b"]), node_selector={"pool": "cheap"})
    assert Pipeline.from_yaml(p.to_yaml()).build() == p.build()
    model = api.Fallback(processor="pkg.steps:alt")
    p.add_step("other", processor="pkg.steps:x", fallback=model)
    assert p.build().stages[2].fallback == model
