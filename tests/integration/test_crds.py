"""The generated CRDs on a real API server: examples apply, invalid manifests are rejected."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from kubedag.api.crd import KINDS
from tests.integration.support import Cluster, wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))
FIELD_MANAGER = "kubedag-tests"


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> Cluster:
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
def test_example_applies(crds: Cluster, namespace: str, example: Path) -> None:
    output = apply(crds, namespace, example)
    assert "serverside-applied" in output


@pytest.mark.parametrize("manifest", INVALID, ids=lambda p: p.name)
def test_invalid_manifest_is_rejected_naming_the_field(
    crds: Cluster, namespace: str, manifest: Path
) -> None:
    expected = re.search(r"^# expect-field: (\S+)$", manifest.read_text(), re.MULTILINE)
    assert expected, f"{manifest} must say which field is wrong (# expect-field: ...)"
    result = crds.kubectl(
        "apply", "--server-side", "-n", namespace, "-f", str(manifest), check=False
    )
    assert result.returncode != 0, f"{manifest.name} was accepted"
    assert "is invalid" in result.stderr or "Error from server" in result.stderr
    assert f"{expected.group(1)}:" in result.stderr, result.stderr


def explain(cluster: Cluster, field: str) -> str:
    """`kubectl explain`, retried: the OpenAPI document lags a CRD's Established condition."""

    def attempt() -> str | None:
        result = cluster.kubectl("explain", field, check=False)
        return result.stdout if result.returncode == 0 else None

    return wait_for(attempt, timeout=30, what=f"kubectl explain {field}")


def test_explain_shows_descriptions(crds: Cluster) -> None:
    output = explain(crds, "pipelinerun.spec")
    assert "pipelineRef" in output and "resumeFrom" in output
    assert "Exactly one of pipelineRef or pipelineSpec" in output
    stages = explain(crds, "pipeline.spec.stages.when")
    assert "CEL" in stages


def test_short_names_category_and_printer_columns(crds: Cluster, namespace: str) -> None:
    apply(crds, namespace, EXAMPLES / "hello-run.yaml")
    status = {
        "status": {"phase": "Running", "progress": {"completed": 1, "total": 3, "percent": 33}}
    }
    crds.kubectl(
        "patch",
        "-n",
        namespace,
        "kdpr",
        "hello",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    table = crds.kubectl("get", "-n", namespace, "kubedag").stdout
    assert re.search(r"pipelinerun\.kubedag\.io/hello\s+Running\s+33", table), table


def test_status_is_a_subresource(crds: Cluster, namespace: str) -> None:
    apply(crds, namespace, EXAMPLES / "hello-run.yaml")
    # A status sent through the main resource is ignored: only the operator writes status.
    crds.kubectl(
        "patch",
        "-n",
        namespace,
        "kdpr",
        "hello",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Failed"}}),
    )
    phase = crds.kubectl(
        "get", "-n", namespace, "kdpr", "hello", "-o", "jsonpath={.status.phase}"
    ).stdout
    assert phase != "Failed"


def test_a_thousand_stage_pipeline_fits_the_cel_budget(
    crds: Cluster, namespace: str, tmp_path: Path
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
    assert "serverside-applied" in apply(crds, namespace, path)
    # Still caught at that size: one unknown dependency.
    stages[999]["dependsOn"] = ["stage-0998", "nope"]
    path.write_text(yaml.safe_dump(manifest))
    output = apply(crds, namespace, path, check=False)
    assert "every dependsOn must name a stage in stages" in output
