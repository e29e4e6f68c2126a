"""The generated CRDs on a real API server: examples apply, invalid manifests are rejected."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
import yaml

from tests.integration.operator_process import OperatorProcess
from tests.integration.support import Cluster, install_crds, wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))
FIELD_MANAGER = "kubedag-tests"


@pytest.fixture(scope="module")
def crd_cluster(cluster: Cluster) -> Cluster:
    """Install (or update) the CRDs and the policy from crds/ and wait until they serve."""
    install_crds(cluster, f"--field-manager={FIELD_MANAGER}")
    return cluster


def apply(cluster: Cluster, namespace: str, path: Path, *, check: bool = True) -> str:
    result = cluster.kubectl(
        "apply",
        "--server-side",
        f"--field-manager={FIELD_MANAGER}",
        "-n",
        namespace,
        "-f",
        str(path),
        check=check,
    )
    return result.stdout + result.stderr


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_applies(crd_cluster: Cluster, namespace: str, example: Path) -> None:
    output = apply(crd_cluster, namespace, example)
    assert "serverside-applied" in output


@pytest.mark.parametrize("manifest", INVALID, ids=lambda p: p.name)
def test_invalid_manifest_is_rejected_naming_the_field(
    crd_cluster: Cluster, namespace: str, manifest: Path
) -> None:
    expected = re.search(r"^# expect-field: (\S+)$", manifest.read_text(), re.MULTILINE)
    assert expected, f"{manifest} must say which field is wrong (# expect-field: ...)"
    result = crd_cluster.kubectl(
        "apply", "--server-side", "-n", namespace, "-f", str(manifest), check=False
    )
    assert result.returncode != 0, f"{manifest.name} was accepted"
    assert "is invalid" in result.stderr or "Error from server" in result.stderr
    assert f"{expected.group(1)}:" in result.stderr, result.stderr


def test_duplicate_stage_names_are_blamed_once_on_the_duplicate(
    crd_cluster: Cluster, namespace: str
) -> None:
    """Not also on dependsOn: the dependency rule's name map would fail on the repeated key.
    (`create`: server-side apply stops earlier, at building the patch, with its own message.)"""
    result = crd_cluster.kubectl(
        "create", "-n", namespace,
        "-f", str(EXAMPLES / "invalid" / "duplicate-stage.yaml"), check=False,
    )
    assert 'spec.stages[1]: Duplicate value: {"name":"a"}' in result.stderr, result.stderr
    assert "insert failed" not in result.stderr, result.stderr
    assert "dependsOn" not in result.stderr, result.stderr


@pytest.mark.parametrize(("manifest", "says"), [
    ("self-dependency.yaml", "stage loop: a stage cannot depend on itself"),
    ("command-and-processor.yaml", "stage both: set either command or processor, not both"),
])
def test_a_rule_on_one_stage_names_the_stage(
    crd_cluster: Cluster, namespace: str, manifest: str, says: str
) -> None:
    result = crd_cluster.kubectl("create", "-n", namespace,
                                 "-f", str(EXAMPLES / "invalid" / manifest), check=False)
    assert says in result.stderr, result.stderr


_IMAGE = "ghcr.io/kubedag/worker:0.1.0"
_PROCESSOR = "kubedag.worker.processors.documents:validate"


@pytest.mark.parametrize(("how", "says"), [
    ({"command": ["true"], "processor": _PROCESSOR},
     "stage s: set either command or processor, not both"),
    ({"command": ["true"]}, "stage s: a stage with a command needs an image"),
    ({}, "stage s: set processor, or image (with or without command)"),
    ({"image": _IMAGE, "fallback": {"command": ["true"], "processor": _PROCESSOR}},
     "stage s: fallback: set either command or processor, not both"),
    ({"image": _IMAGE, "fallback": {"command": ["true"]}},
     "stage s: fallback: a fallback with a command needs an image"),
    ({"image": _IMAGE, "fallback": {"args": ["x"]}},
     "stage s: fallback: set processor, or image (with or without command)"),
])
def test_one_rule_says_which_way_to_run_is_wrong(
    crd_cluster: Cluster, namespace: str, tmp_path: Path, how: dict[str, object], says: str
) -> None:
    """A stage's three ways-to-run rules are one CEL rule (and its fallback's another): each
    thing wrong still gets its own message, on an inline pipeline as on a Pipeline."""
    for kind, spec in (("Pipeline", {"stages": [{"name": "s", **how}]}),
                       ("PipelineRun", {"pipelineSpec": {"stages": [{"name": "s", **how}]}})):
        path = tmp_path / f"{kind}.yaml"
        path.write_text(yaml.safe_dump({"apiVersion": "kubedag.io/v1alpha1", "kind": kind,
                                        "metadata": {"name": "ways"}, "spec": spec}))
        result = crd_cluster.kubectl("create", "-n", namespace, "-f", str(path), check=False)
        assert result.returncode != 0, f"{kind} {how} was accepted"
        assert says in result.stderr, result.stderr


def test_a_runs_pipeline_and_checkpoints_are_owned_whole(
    crd_cluster: Cluster, namespace: str
) -> None:
    """managedFields name spec.pipelineSpec, status.stages and status.pipelineSpec as one field
    each, not every field of every stage: they had been half of a run's stored object, and
    every status write costs the API server in proportion to it."""
    apply(crd_cluster, namespace, EXAMPLES / "hello-run.yaml")
    stages = {f"s{i}": {"phase": "Succeeded", "attempts": 1, "job": f"hello-s{i}-1"}
              for i in range(5)}
    crd_cluster.kubectl("patch", "-n", namespace, "kdpr", "hello", "--subresource=status",
                        "--type=merge", "-p", json.dumps({"status": {
                            "stages": stages,
                            "pipelineSpec": {"stages": [{"name": "s0", "image": "x"}]}}}))
    managed = json.loads(crd_cluster.kubectl(
        "get", "-n", namespace, "kdpr", "hello", "--show-managed-fields", "-o",
        "jsonpath={.metadata.managedFields}").stdout)
    # The operator may be running (another test's) and own some of these fields by now: every
    # manager that owns one owns it whole.
    owned: dict[str, list[object]] = {"spec.pipelineSpec": [], "status.stages": [],
                                      "status.pipelineSpec": []}
    for entry in managed:
        for name, fields in owned.items():
            part, field = name.split(".")
            value = entry["fieldsV1"].get(f"f:{part}", {}).get(f"f:{field}")
            if value is not None:
                fields.append(value)
    for name, fields in owned.items():
        assert fields and all(value == {} for value in fields), (name, managed)


def explain(cluster: Cluster, field: str) -> str:
    """`kubectl explain`, retried: the OpenAPI document lags a CRD's Established condition."""

    def attempt() -> str | None:
        result = cluster.kubectl("explain", field, check=False)
        return result.stdout if result.returncode == 0 else None

    return wait_for(attempt, timeout=30, what=f"kubectl explain {field}")


def test_explain_shows_descriptions(crd_cluster: Cluster) -> None:
    output = explain(crd_cluster, "pipelinerun.spec")
    assert "pipelineRef" in output and "resumeFrom" in output
    assert "Exactly one of pipelineRef or pipelineSpec" in output
    stages = explain(crd_cluster, "pipeline.spec.stages.when")
    assert "CEL" in stages


def test_short_names_category_and_printer_columns(
    crd_cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    """The columns show the status the operator writes (not a hand-made one: with an operator
    running, a hand-patched status would be overwritten)."""
    apply(crd_cluster, namespace, EXAMPLES / "hello-run.yaml")

    def finished_row() -> str | None:
        table = crd_cluster.kubectl("get", "-n", namespace, "kubedag").stdout
        return table if re.search(r"pipelinerun\.kubedag\.io/hello\s+Succeeded\s+100", table) \
            else None

    wait_for(finished_row, what="the run listed as Succeeded 100 by `kubectl get kubedag`")
    short = crd_cluster.kubectl("get", "-n", namespace, "kdpr", "hello").stdout
    assert re.search(r"^NAME\s+PHASE\s+PROGRESS\s+ETA\s+AGE", short, re.M), short


def test_status_is_a_subresource(crd_cluster: Cluster, namespace: str) -> None:
    apply(crd_cluster, namespace, EXAMPLES / "hello-run.yaml")
    # A status sent through the main resource is ignored: only the operator writes status.
    crd_cluster.kubectl(
        "patch",
        "-n",
        namespace,
        "kdpr",
        "hello",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Failed"}}),
    )
    phase = crd_cluster.kubectl(
        "get", "-n", namespace, "kdpr", "hello", "-o", "jsonpath={.status.phase}"
    ).stdout
    assert phase != "Failed"


@pytest.mark.parametrize("kind", ["Pipeline", "PipelineRun"])
def test_a_thousand_stage_pipeline_fits_the_cel_budget(
    crd_cluster: Cluster, namespace: str, tmp_path: Path, kind: str
) -> None:
    """A Pipeline's rules run in its CRD; a run's inline pipeline's in the admission policy."""
    stages = [
        {
            "name": f"stage-{i:04d}",
            "processor": "kubedag.worker.processors.documents:normalize",
            "dependsOn": [f"stage-{j:04d}" for j in range(max(0, i - 3), i)],
        }
        for i in range(1000)
    ]
    spec = {"stages": stages} if kind == "Pipeline" else {"pipelineSpec": {"stages": stages}}
    manifest = {"apiVersion": "kubedag.io/v1alpha1", "kind": kind, "metadata": {"name": "big"},
                "spec": spec}
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(manifest))
    assert "serverside-applied" in apply(crd_cluster, namespace, path)
    # Still caught at that size: one unknown dependency.
    stages[999]["dependsOn"] = ["stage-0998", "nope"]
    path.write_text(yaml.safe_dump(manifest))
    output = apply(crd_cluster, namespace, path, check=False)
    assert "every dependsOn must name a stage in stages" in output


def test_the_run_policy_skips_status_writes_and_unchanged_pipelines(
    crd_cluster: Cluster, namespace: str
) -> None:
    """The generated policy's scope, on a real API server, through a copy of it whose every
    check fails, bound to this namespace alone. Its resources leave the operator's status
    writes (`pipelineruns/status`) out: they never pay for the pipeline's rules, which is why
    the rules left the CRD. Its match conditions leave out a run whose pipeline did not change:
    a label or `suspend` on a run is not refused for the pipeline it already had."""
    apply(crd_cluster, namespace, EXAMPLES / "hello-run.yaml")
    generated = next(yaml.safe_load_all((ROOT / "crds" / "pipelineruns.kubedag.io.policy.yaml")
                                        .read_text()))
    name = f"refuse-every-pipeline-{namespace}"
    refused = "refused by the test's copy"

    def install_copy(*, match_conditions: bool) -> None:
        spec = {**generated["spec"], "validations": [{"expression": "false", "message": refused}]}
        if not match_conditions:
            spec.pop("matchConditions")
        binding = {"apiVersion": "admissionregistration.k8s.io/v1",
                   "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": name},
                   "spec": {"policyName": name, "validationActions": ["Deny"],
                            "matchResources": {"namespaceSelector": {"matchLabels": {
                                "kubernetes.io/metadata.name": namespace}}}}}
        policy = {**generated, "metadata": {"name": name}, "spec": spec}
        crd_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                            input=json.dumps({"apiVersion": "v1", "kind": "List",
                                              "items": [policy, binding]}))

    def patched(*args: str) -> str:
        result = crd_cluster.kubectl("patch", "-n", namespace, "kdpr", "hello", "--type=merge",
                                     *args, check=False)
        return result.stdout + result.stderr

    tags = itertools.count()

    def change_the_pipeline() -> str:
        """Each time another pipeline: a patch repeating the last one would change nothing."""
        return patched("-p", json.dumps({"spec": {"pipelineSpec": {"stages": [
            {"name": "hello", "image": f"busybox:1.{next(tags)}"}]}}}))

    def label(value: str) -> str:
        return patched("-p", json.dumps({"metadata": {"labels": {"team": value}}}))

    try:
        install_copy(match_conditions=False)
        wait_for(lambda: refused in label("a"), what="the copy refusing every run write")
        assert "patched" in patched("--subresource=status", "-p",
                                    json.dumps({"status": {"phase": "Running"}}))

        install_copy(match_conditions=True)
        wait_for(lambda: "patched" in label("b"), what="the copy with its match conditions")
        assert "patched" in patched("-p", json.dumps({"spec": {"suspend": True}}))
        assert refused in change_the_pipeline()
        assert refused in crd_cluster.kubectl(
            "create", "--dry-run=server", "-n", namespace, "-f",
            str(EXAMPLES / "hello-run.yaml"), check=False).stderr
    finally:
        crd_cluster.kubectl("delete", "validatingadmissionpolicybinding,"
                            "validatingadmissionpolicy", name, check=False)
