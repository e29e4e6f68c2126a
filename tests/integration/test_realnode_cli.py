"""The installed `kubedag` command with real containers: the document template, submitted and
waited on (`kubedag submit --wait`) on the test bed's real node, and run on this machine
(`kubedag run --local`); both exit 0 and agree on every stage's outputs, and the test prints how
long each took, from the command's start to its exit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from kubedag.testbed.claims import copy_into_claim, create_claim
from tests.integration.realnode_operator import (
    WORK_NAMESPACE,
    WORKER_SERVICE_ACCOUNT,
    InstalledOperator,
)
from tests.integration.realnode_support import RealNodeHandle
from tests.integration.support import Cluster

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = REPO / "examples" / "documents"
KUBEDAG = str(Path(sys.executable).parent / "kubedag")


def _kubedag(*args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    done = subprocess.run([KUBEDAG, *args], capture_output=True, text=True, timeout=timeout,
                          check=False)
    return done, time.monotonic() - began


def _outputs(result: dict[str, Any]) -> dict[str, Any]:
    return {name: (stage["phase"], stage.get("outputs")) for name, stage in
            result["stages"].items()}


def test_the_document_template_by_submit_wait_and_by_run_local(
    cluster: Cluster, installed: InstalledOperator, real_node: RealNodeHandle, tmp_path: Path
) -> None:
    shown, _ = _kubedag("templates", "show", "document-processing", "-o", "yaml")
    assert shown.returncode == 0, shown.stderr
    pipeline = yaml.safe_load(shown.stdout)
    placement = real_node.pod_placement()
    pipeline["spec"]["defaults"] |= {"serviceAccountName": WORKER_SERVICE_ACCOUNT, **placement}
    name = f"docs-cli-{uuid.uuid4().hex[:5]}"
    claim = f"{name}-input"
    create_claim(cluster.api_client, WORK_NAMESPACE, claim, size="64Mi")
    copy_into_claim(cluster.plane, WORK_NAMESPACE, claim, sorted(DOCUMENTS.iterdir()), "input",
                    placement)
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump({
        "apiVersion": "kubedag.io/v1alpha1", "kind": "PipelineRun",
        "metadata": {"name": name},
        "spec": {"pipelineSpec": pipeline["spec"],
                 "workspace": {"persistentVolumeClaim": {"claimName": claim}}},
    }))

    submitted, on_cluster = _kubedag("--kubeconfig", str(cluster.kubeconfig), "-n",
                                     WORK_NAMESPACE, "submit", "-f", str(run_file), "--wait",
                                     "-o", "json")
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    remote = json.loads(submitted.stdout)

    workspace = tmp_path / "workspace"
    shutil.copytree(DOCUMENTS, workspace / "input")
    ran, locally = _kubedag("run", "--local", str(run_file), "--workspace", str(workspace),
                            "-o", "json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    local = json.loads(ran.stdout)
    print(f"\ndocument template: `kubedag run --local` {locally:.1f} s, "
          f"`kubedag submit --wait` on the real node {on_cluster:.1f} s")

    assert _outputs(remote) == _outputs(local)
    graph = remote["stages"]["build-kg"]["outputs"]
    assert graph["nodes"] > len(list(DOCUMENTS.iterdir())) and graph["edges"] > 0
    assert (workspace / "kg" / "graph.graphml").is_file()
    # What the local run ignored was said first, on stderr.
    assert "workspace" in ran.stderr and "serviceAccountName" in ran.stderr
