"""Helpers for tests that talk to a real API server: waiting, and the cluster handle."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client as k8s

from kubedag.api.crd import KINDS
from kubedag.testbed import ControlPlane

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None], *, timeout: float = 30.0, what: str = "condition"
) -> T:
    """Poll until ``probe`` returns something truthy and return it; fail naming what we awaited."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value: {last!r}")


@dataclass
class Cluster:
    """What an integration test gets: a kubeconfig, clients and the tools that go with them."""

    plane: ControlPlane
    api_client: k8s.ApiClient

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    @property
    def run_dir(self) -> Path:
        return self.plane.run_dir

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api_client)

    @property
    def batch(self) -> k8s.BatchV1Api:
        return k8s.BatchV1Api(self.api_client)

    @property
    def custom(self) -> k8s.CustomObjectsApi:
        return k8s.CustomObjectsApi(self.api_client)

    def env(self) -> dict[str, str]:
        return self.plane.env()

    def pod_placement(self) -> dict[str, Any]:
        return self.plane.pod_placement()

    def run_tool(
        self, tool: str, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl or helm from the pinned binaries against this cluster."""
        result = subprocess.run(
            [str(self.plane.bin_dir / tool), *args],
            env=self.env(), input=input, capture_output=True, text=True, timeout=120, check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{tool} {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run_tool("kubectl", *args, check=check, input=input)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run_tool("helm", *args, check=check)


REPO = Path(__file__).resolve().parents[2]


def install_crds(cluster: Cluster, *field_manager: str) -> None:
    """Apply the generated crds/ (the CRDs and the PipelineRun's admission policy) and return
    once the CRDs serve and the policy refuses what it should: the API server starts enforcing
    a policy a moment after it is created, when its informer has seen the policy and binding."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", *field_manager,
                    "-f", str(REPO / "crds"))
    # A CRD just created may have no status yet, which `kubectl wait` reports as an error.
    names = [f"crd/{kind.crd_name}" for kind in KINDS]
    wait_for(lambda: cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                                     *names, check=False).returncode == 0,
             what="the CRDs Established", timeout=60)
    wait_for(lambda: _run_policy_refuses(cluster), what="the PipelineRun policy enforced",
             timeout=60)


def _run_policy_refuses(cluster: Cluster) -> bool:
    """A server-side dry run of an inline run whose stage has no way to run: refused by the
    policy (nothing is stored either way)."""
    probe = {"apiVersion": "kubedag.io/v1alpha1", "kind": "PipelineRun",
             "metadata": {"generateName": "policy-probe-"},
             "spec": {"pipelineSpec": {"stages": [{"name": "s"}]}}}
    result = cluster.kubectl("create", "--dry-run=server", "-n", "default", "-f", "-",
                             check=False, input=json.dumps(probe))
    return "ValidatingAdmissionPolicy" in result.stderr
