"""The computed cache key of a stage attempt: stable, sensitive to each component, explained."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest

from kubedag.api import Stage
from kubedag.core.cachekey import (
    NO_DIGEST,
    SCHEMA_VERSION,
    CacheComponents,
    NoCacheKey,
    cache_key,
    components_for,
    explain_miss,
    from_json,
    to_json,
)

DIGEST = "sha256:" + "a" * 64
PARAMS = {"language": "en", "dpi": 300, "unread": "x", "seed": 7}
OUTPUTS: dict[str, dict[str, Any] | None] = {
    "extract": {"pages": 3, "path": "/ws/doc"}, "other": {"x": 1}}

COMMAND_STAGE = Stage.model_validate({
    "name": "ocr", "image": "ocr:1", "command": ["ocr", "--lang=$(params.language)"],
    "args": ["$(stages.extract.outputs.path)", "--seed=$(params.seed)"],
    "env": [{"name": "DPI", "value": "$(params.dpi)"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}}],
    "dependsOn": ["extract"],
})


def components(stage: Stage = COMMAND_STAGE, **overrides: Any) -> CacheComponents:
    arguments: dict[str, Any] = {"stage": stage, "namespace": "ns", "params": PARAMS,
                                 "outputs": OUTPUTS, "image_digest": DIGEST,
                                 "cache_version": "1", **overrides}
    result = components_for(**arguments)
    assert isinstance(result, CacheComponents)
    return result


def test_components_hold_what_the_stage_reads_after_substitution() -> None:
    built = components()
    assert built.command == ("ocr", "--lang=en")
    assert built.args == ("/ws/doc", "--seed=7")
    assert built.params == {"language": "en", "dpi": 300, "seed": 7}
    assert built.upstream_outputs == {"extract": {"pages": 3, "path": "/ws/doc"}}
    assert built.env == {"DPI": "300", "TOKEN": {"valueFrom": {
        "secretKeyRef": {"name": "s", "key": "token"}}}}
    assert built.schema_version == SCHEMA_VERSION


def test_key_is_sha256_of_the_documented_canonical_json() -> None:
    fixed = CacheComponents(namespace="ns", stage="ocr", image_digest=DIGEST, command=("ocr",),
                            args=None, processor=None, params={"b": 2, "a": "é"},
                            upstream_outputs={"extract": {"pages": 3}}, env={"X": "1"},
                            cache_version="1")
    canonical = (
        '{"args":null,"cacheVersion":"1","command":["ocr"],"env":{"X":"1"},"fanOut":null,'
        f'"imageDigest":"{DIGEST}","namespace":"ns","params":{{"a":"é","b":2}},'
        '"processor":null,"schemaVersion":1,"stage":"ocr",'
        '"upstreamOutputs":{"extract":{"pages":3}}}')
    assert cache_key(fixed) == hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_key_is_the_same_for_any_dict_ordering_and_in_another_process() -> None:
    reordered_params = dict(reversed(list(PARAMS.items())))
    reordered_outputs = {"other": {"x": 1}, "extract": {"path": "/ws/doc", "pages": 3}}
    key = cache_key(components())
    assert cache_key(components(params=reordered_params, outputs=reordered_outputs)) == key
    # Another interpreter, with another hash seed, computes the same key from the stored JSON.
    program = ("import json,sys; from kubedag.core.cachekey import cache_key, from_json; "
               "print(cache_key(from_json(json.load(sys.stdin))))")
    other = subprocess.run([sys.executable, "-c", program], input=json.dumps(to_json(
        components())), capture_output=True, text=True, check=True,
        env={"PYTHONHASHSEED": "12345"})
    assert other.stdout.strip() == key


def test_json_round_trip() -> None:
    built = components()
    assert from_json(json.loads(json.dumps(to_json(built)))) == built


@pytest.mark.parametrize("change", [
    {"namespace": "other"},
    {"image_digest": "sha256:" + "b" * 64},
    {"params": {**PARAMS, "language": "de"}},
    {"params": {**PARAMS, "dpi": 600}},
    {"params": {**PARAMS, "seed": 8}},
    {"outputs": {**OUTPUTS, "extract": {"pages": 4, "path": "/ws/doc"}}},
    {"cache_version": "2"},
    {"stage": COMMAND_STAGE.model_copy(update={"name": "ocr2"})},
    {"stage": COMMAND_STAGE.model_copy(update={"command": ["ocr", "--fast"]})},
    {"stage": COMMAND_STAGE.model_copy(update={"args": ["x"]})},
    {"stage": COMMAND_STAGE.model_copy(update={"env": []})},
    {"stage": COMMAND_STAGE.model_copy(update={"depends_on": ["extract", "other"]})},
])
def test_key_changes_with_each_component(change: dict[str, Any]) -> None:
    assert cache_key(components(**change)) != cache_key(components())


def test_key_ignores_an_unread_param_an_ignored_param_and_a_non_upstream_output() -> None:
    key = cache_key(components())
    assert cache_key(components(params={**PARAMS, "unread": "y"})) == key
    assert cache_key(components(params={**PARAMS, "brand_new": 1})) == key
    assert cache_key(components(outputs={**OUTPUTS, "other": {"x": 2}})) == key


def test_an_ignored_param_leaves_the_key_unless_substituted_into_what_runs() -> None:
    when_only = COMMAND_STAGE.model_copy(update={"when": "params.verbose"})
    verbose = {**PARAMS, "verbose": True}
    quiet = {**PARAMS, "verbose": False}
    assert cache_key(components(when_only, params=verbose)) != cache_key(
        components(when_only, params=quiet))
    assert cache_key(components(when_only, params=verbose, ignore_params=["verbose"])) == (
        cache_key(components(when_only, params=quiet, ignore_params=["verbose"])))
    # `seed` is in the args: ignoring the param does not hide that the args changed.
    assert cache_key(components(params={**PARAMS, "seed": 1}, ignore_params=["seed"])) != (
        cache_key(components(ignore_params=["seed"])))


def test_a_processor_reads_every_param() -> None:
    processor = Stage.model_validate({"name": "p", "processor": "pkg.mod:run"})
    key = cache_key(components(processor))
    assert cache_key(components(processor, params={**PARAMS, "unread": "y"})) != key
    assert cache_key(components(processor, params={**PARAMS, "unread": "y"},
                                ignore_params=["unread"])) == cache_key(
        components(processor, ignore_params=["unread"]))


def test_params_in_when_and_fan_out_items_are_read() -> None:
    stage = Stage.model_validate({
        "name": "each", "image": "img:1", "when": "params.mode == 'full'",
        "fanOut": {"itemsFrom": "$(params.docs)", "batchSize": 2}})
    built = components(stage, params={"mode": "full", "docs": ["a", "b"], "unread": 1})
    assert built.params == {"mode": "full", "docs": ["a", "b"]}
    assert built.fan_out == {"items": ["a", "b"], "batchSize": 2}


def test_no_digest_means_no_key() -> None:
    assert components_for(stage=COMMAND_STAGE, namespace="ns", params=PARAMS, outputs=OUTPUTS,
                          image_digest=None) == NoCacheKey(NO_DIGEST)
    assert NO_DIGEST == "image has no digest"


def test_explain_miss_names_exactly_the_changed_components() -> None:
    stored = to_json(components())
    assert explain_miss(stored, components()) == []
    current = components(params={**PARAMS, "language": "de"},
                         outputs={**OUTPUTS, "extract": {"pages": 4, "path": "/ws/doc"}},
                         image_digest="sha256:" + "b" * 64)
    assert explain_miss(stored, current) == [
        f"image digest changed: {DIGEST!r} → {'sha256:' + 'b' * 64!r}",
        # the command embeds the param, so it changed too
        "command changed: [\"ocr\",\"--lang=en\"] → [\"ocr\",\"--lang=de\"]",
        "param 'language' changed: 'en' → 'de'",
        "upstream extract's outputs changed (key pages)",
    ]


def test_explain_miss_names_env_version_and_dependency_changes() -> None:
    stored = to_json(components())
    stage = Stage.model_validate({
        **COMMAND_STAGE.model_dump(mode="json", by_alias=True, exclude_none=True),
        "env": [{"name": "DPI", "value": "$(params.dpi)"}], "dependsOn": ["extract", "other"]})
    current = replace(components(stage), cache_version="2")
    assert explain_miss(stored, current) == [
        "cache.version changed: '1' → '2'",
        "env 'TOKEN' is no longer read (was {\"valueFrom\":{\"secretKeyRef\":"
        "{\"name\":\"s\",\"key\":\"token\"}}})",
        "now depends on upstream other",
    ]
