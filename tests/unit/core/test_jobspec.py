"""build_job: the Job manifest of one attempt of one stage."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubedag.api import Stage
from kubedag.core.jobspec import JobSettings, build_job, fan_out_items
from kubedag.core.naming import MAX_JOB_NAME
from kubedag.core.substitution import SubstitutionError
from tests.unit.core.factories import IDENTITY, pipeline, stage

SETTINGS = JobSettings(worker_image="worker:1", job_ttl_seconds=60, workspace_path="/ws")


def build(spec_stages: list[dict[str, Any]], name: str | None = None, *, attempt: int = 1,
          params: dict[str, Any] | None = None,
          outputs: dict[str, dict[str, Any] | None] | None = None,
          **pipeline_fields: Any) -> dict[str, Any]:
    spec = pipeline(*spec_stages, **pipeline_fields)
    target = next(s for s in spec.stages if s.name == (name or spec.stages[-1].name))
    return build_job(run=IDENTITY, pipeline=spec, stage=target, attempt=attempt,
                     params=params or {}, outputs=outputs or {}, settings=SETTINGS)


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    [only] = manifest["spec"]["template"]["spec"]["containers"]
    return only


def env(manifest: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(manifest)["env"]}


def test_basic_manifest() -> None:
    manifest = build([stage("a")], attempt=3)
    meta, spec = manifest["metadata"], manifest["spec"]
    assert (manifest["apiVersion"], manifest["kind"]) == ("batch/v1", "Job")
    assert (meta["name"], meta["namespace"]) == ("run-a-3", "ns")
    assert meta["labels"]["kubedag.io/stage"] == "a"
    assert meta["labels"]["kubedag.io/attempt"] == "3"
    assert meta["labels"]["kubedag.io/run"] == "run"
    assert meta["labels"]["kubedag.io/pipeline"] == "pipe"
    assert meta["labels"]["kubedag.io/run-uid"] == "uid-1234"
    # The pod template leaves out the labels that repeat others (instance = run, part-of =
    # pipeline) or name the Job's role: a smaller pod on every pod write.
    assert meta["labels"]["app.kubernetes.io/instance"] == "run"
    assert spec["template"]["metadata"]["labels"] == {
        k: v for k, v in meta["labels"].items()
        if k not in {"app.kubernetes.io/instance", "app.kubernetes.io/part-of",
                     "app.kubernetes.io/component"}}
    assert spec["template"]["metadata"]["labels"]["app.kubernetes.io/managed-by"] == (
        "kubedag-operator")
    [owner] = meta["ownerReferences"]
    assert owner == {"apiVersion": "kubedag.io/v1alpha1", "kind": "PipelineRun", "name": "run",
                     "uid": "uid-1234", "controller": True, "blockOwnerDeletion": True}
    assert spec["backoffLimit"] == 0  # kubedag owns retries
    assert spec["ttlSecondsAfterFinished"] == 60
    assert "activeDeadlineSeconds" not in spec and "completionMode" not in spec
    pod_spec = spec["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Never"
    c = container(manifest)
    assert (c["image"], c["terminationMessagePolicy"], c["resources"]) == ("busybox", "File", {})
    assert "command" not in c and "args" not in c
    variables = env(manifest)
    assert variables["KUBEDAG_RUN"] == "run"
    assert variables["KUBEDAG_STAGE"] == "a"
    assert variables["KUBEDAG_ATTEMPT"] == "3"
    assert variables["KUBEDAG_WORKSPACE"] == "/ws"
    assert json.loads(variables["KUBEDAG_PARAMS"]) == {}
    assert json.loads(variables["KUBEDAG_INPUTS"]) == {}


def test_building_is_deterministic() -> None:
    assert build([stage("a")]) == build([stage("a")])


@pytest.mark.parametrize(("fields", "defaults", "image", "command"), [
    ({"processor": "m.mod:fn", "image": None}, None, "worker:1", ["kubedag-worker", "run"]),
    ({"processor": "m.mod:fn", "image": None}, {"image": "custom:2"}, "custom:2",
     ["kubedag-worker", "run"]),
    ({"processor": "m.mod:fn", "image": "own:3"}, {"image": "custom:2"}, "own:3",
     ["kubedag-worker", "run"]),
    ({"command": ["sh", "-c"]}, None, "busybox", ["sh", "-c"]),
])
def test_image_and_command(fields: dict[str, Any], defaults: dict[str, Any] | None,
                           image: str, command: list[str]) -> None:
    raw = {k: v for k, v in {**stage("a"), **fields}.items() if v is not None}
    manifest = build([raw], defaults=defaults) if defaults else build([raw])
    c = container(manifest)
    assert (c["image"], c["command"]) == (image, command)
    if "processor" in fields:
        assert env(manifest)["KUBEDAG_PROCESSOR"] == "m.mod:fn"


def test_params_outputs_and_env_are_substituted() -> None:
    manifest = build(
        [stage("up"), stage("a", "up", command=["run", "$(params.n)"],
                            args=["--in=$(stages.up.outputs.file)", "$(params.tags)"],
                            env=[{"name": "MODE", "value": "x-$(params.mode)"}])],
        params={"n": 3, "tags": ["a", "b"], "mode": "fast"},
        outputs={"up": {"file": "s3://b/k"}, "other": {"x": 1}})
    c = container(manifest)
    assert c["command"] == ["run", "3"]
    assert c["args"] == ["--in=s3://b/k", '["a","b"]']
    variables = env(manifest)
    assert variables["MODE"] == "x-fast"
    assert json.loads(variables["KUBEDAG_PARAMS"]) == {"n": 3, "tags": ["a", "b"], "mode": "fast"}
    # Only the stage's own dependencies are its inputs.
    assert json.loads(variables["KUBEDAG_INPUTS"]) == {"up": {"file": "s3://b/k"}}


def test_unresolvable_reference_raises() -> None:
    with pytest.raises(SubstitutionError, match="no output 'file'"):
        build([stage("up"), stage("a", "up", args=["$(stages.up.outputs.file)"])],
              outputs={"up": {}})


def test_resources_and_gpu() -> None:
    manifest = build([stage("a", resources={"cpu": "500m", "memory": "1Gi",
                                            "ephemeralStorage": "2Gi", "gpu": 2})])
    assert container(manifest)["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "2Gi"},
        "limits": {"memory": "1Gi", "nvidia.com/gpu": "2"},
    }


def test_defaults_merge_with_stage_settings() -> None:
    defaults = {"labels": {"team": "docs"}, "nodeSelector": {"zone": "a", "type": "cpu"},
                "tolerations": [{"key": "d", "operator": "Exists"}],
                "podAnnotations": {"x": "1", "y": "default"},
                "serviceAccountName": "runner", "imagePullSecrets": ["regcred"]}
    manifest = build([stage("a", nodeSelector={"type": "gpu"},
                            tolerations=[{"key": "s", "operator": "Exists"}],
                            podAnnotations={"y": "stage"})], defaults=defaults)
    template = manifest["spec"]["template"]
    pod_spec = template["spec"]
    assert manifest["metadata"]["labels"]["team"] == "docs"
    assert pod_spec["nodeSelector"] == {"zone": "a", "type": "gpu"}
    assert [t["key"] for t in pod_spec["tolerations"]] == ["d", "s"]
    assert template["metadata"]["annotations"] == {"x": "1", "y": "stage"}
    assert pod_spec["serviceAccountName"] == "runner"
    assert pod_spec["imagePullSecrets"] == [{"name": "regcred"}]


def test_only_a_pod_with_a_named_service_account_gets_credentials_and_its_identity() -> None:
    """The worker patches its own pod's progress with the named account's token, so it is told
    its pod's name and namespace; without an account there is no token and nothing to patch."""
    bare = build([stage("a")])
    assert bare["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in bare["spec"]["template"]["spec"]
    assert not {"KUBEDAG_NAMESPACE", "KUBEDAG_POD_NAME"} & set(env(bare))
    named = build([stage("a")], defaults={"serviceAccountName": "runner"})
    assert "automountServiceAccountToken" not in named["spec"]["template"]["spec"]
    variables = env(named)
    assert variables["KUBEDAG_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert variables["KUBEDAG_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_our_labels_win_over_default_labels() -> None:
    manifest = build([stage("a")], defaults={"labels": {"kubedag.io/stage": "spoofed"}})
    assert manifest["metadata"]["labels"]["kubedag.io/stage"] == "a"


@pytest.mark.parametrize(("timeout", "multiplier", "deadline"), [
    (30, 1.0, 30), (30, 2.5, 75), (7, 1.5, 11),  # rounded up
])
def test_stage_timeout_is_the_active_deadline(timeout: int, multiplier: float,
                                              deadline: int) -> None:
    manifest = build([stage("a", timeoutSeconds=timeout)], stage_timeout_multiplier=multiplier)
    assert manifest["spec"]["activeDeadlineSeconds"] == deadline


@pytest.mark.parametrize(("items", "batch", "parallelism", "completions", "expected_par"), [
    (10, 1, None, 10, 10),
    (10, 3, None, 4, 4),  # ceil(10 / 3)
    (10, 3, 2, 4, 2),
    (9, 3, 50, 3, 3),  # never more pods at once than indexes
    (1, 5, None, 1, 1),
    (0, 4, None, 1, 1),  # an empty list still runs one (empty) index
])
def test_fan_out_is_an_indexed_job(items: int, batch: int, parallelism: int | None,
                                   completions: int, expected_par: int) -> None:
    fan_out: dict[str, Any] = {"items": [f"doc-{i}" for i in range(items)], "batchSize": batch}
    if parallelism:
        fan_out["parallelism"] = parallelism
    manifest = build([stage("a", fanOut=fan_out)])
    spec = manifest["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == \
        ("Indexed", completions, expected_par)
    variables = env(manifest)
    assert json.loads(variables["KUBEDAG_FANOUT_ITEMS"]) == fan_out["items"]
    assert variables["KUBEDAG_FANOUT_BATCH_SIZE"] == str(batch)


def test_fan_out_items_from_a_param() -> None:
    manifest = build([stage("a", fanOut={"itemsFrom": "$(params.docs)", "batchSize": 2})],
                     params={"docs": ["x", "y", "z"]})
    assert manifest["spec"]["completions"] == 2
    assert json.loads(env(manifest)["KUBEDAG_FANOUT_ITEMS"]) == ["x", "y", "z"]


@pytest.mark.parametrize("value", ["x", {"a": 1}, None])
def test_fan_out_items_from_a_non_array_param_raises(value: Any) -> None:
    target = Stage.model_validate(stage("a", fanOut={"itemsFrom": "$(params.docs)"}))
    with pytest.raises(ValueError, match="not an array"):
        fan_out_items(target, {"docs": value} if value is not None else {})


def test_no_fan_out() -> None:
    assert fan_out_items(Stage.model_validate(stage("a")), {}) is None


def test_long_names_stay_valid() -> None:
    long_run = IDENTITY.__class__(name="r" * 200, namespace="ns", uid="u", pipeline="p" * 100)
    spec = pipeline(stage("s" * 63))
    manifest = build_job(run=long_run, pipeline=spec, stage=spec.stages[0], attempt=12,
                         params={}, outputs={}, settings=SETTINGS)
    assert len(manifest["metadata"]["name"]) <= MAX_JOB_NAME
    labels = manifest["metadata"]["labels"]
    assert all(len(v) <= 63 for v in labels.values())
    # The ownerReference and env keep the full run name.
    assert manifest["metadata"]["ownerReferences"][0]["name"] == "r" * 200
    assert env(manifest)["KUBEDAG_RUN"] == "r" * 200


def test_a_processors_args_reach_it_as_context_args_not_as_the_workers_argv() -> None:
    """`kubedag-worker run --files x` would be refused by the worker's own option parser."""
    manifest = build([stage("a", processor="m:f", args=["--files", "$(params.files)"])],
                     params={"files": ["x.md"]})
    c = container(manifest)
    assert c["command"] == ["kubedag-worker", "run"] and "args" not in c
    variables = env(manifest)
    assert json.loads(variables["KUBEDAG_ARGS"]) == ["--files", '["x.md"]']
    assert variables["KUBEDAG_TERMINATION_MESSAGE_PATH"] == "/dev/termination-log"
