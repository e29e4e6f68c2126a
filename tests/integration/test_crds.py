"""The generated CRDs on a real API server: examples apply, invalid manifests are rejected."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from kubedag.api.crd import KINDS
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import Cluster, wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))
FIELD_MANAGER = "kubedag-tests"


@pytest.fixture(scope="module")
def crd_cluster(cluster: Cluster) -> Cluster:
    """Install (or update) the CRDs from crds/ and wait until they serve."""
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        f"--field-manager={FIELD_MANAGER}",
        "-f",
        str(ROOT / "crds"),
    )
    names = [f"crd/{kind.crd_name}" for kind in KINDS]
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
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


def test_a_thousand_stage_pipeline_fits_the_cel_budget(
    crd_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    stages = [
        {
            "name": f"stage-{i:04d}",
            "processor": "kubedag.worker.processors.documents:normalize",
            "dependsOn": [f"stage-{j:04d}" for j in range(max(0, i - 3), i)],
        }
        for i in range(1000)
    ]
    manifest = {
        "apiVersion": "kubedag.io/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": "big"},
        "spec": {"stages": stages},
    }
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(manifest))
    assert "serverside-applied" in apply(crd_cluster, namespace, path)
    # Still caught at that size: one unknown dependency.
    stages[999]["dependsOn"] = ["stage-0998", "nope"]
    path.write_text(yaml.safe_dump(manifest))
    output = apply(crd_cluster, namespace, path, check=False)
    assert "every dependsOn must name a stage in stages" in output
