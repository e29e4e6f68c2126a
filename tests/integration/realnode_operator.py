"""The operator as users run it: `helm install` of the chart, with the images built here, as a
Deployment on the real node under the chart's ServiceAccount and RBAC."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

from tests.integration.chart_support import CHART
from tests.integration.realnode_support import RealNodeHandle
from tests.integration.support import Cluster, wait_for

RELEASE = "kd"
SYSTEM_NAMESPACE = "kubedag-system"
# Stage pods run here; it enforces the `restricted` Pod Security Standard.
WORK_NAMESPACE = "kubedag-real"
FULLNAME = f"{RELEASE}-kubedag"
WORKER_SERVICE_ACCOUNT = f"{FULLNAME}-worker"
OPERATOR_IMAGE = "ghcr.io/kubedag/operator:0.1.0"
WORKER_IMAGE = "ghcr.io/kubedag/worker:0.1.0"
# Short on purpose: the missing-image and missing-Secret tests wait this long.
START_FAILURE_GRACE_SECONDS = 8


@dataclass
class InstalledOperator:
    cluster: Cluster
    real_node: RealNodeHandle

    def install(self) -> None:
        for name, labels in ((SYSTEM_NAMESPACE, {}), (WORK_NAMESPACE, {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest"})):
            self.cluster.kubectl("create", "namespace", name, check=False)
            if labels:
                self.cluster.kubectl("label", "--overwrite", "namespace", name,
                                     *(f"{k}={v}" for k, v in labels.items()))
        placement = self.real_node.pod_placement()
        values = {
            "image": {"repository": OPERATOR_IMAGE.rsplit(":", 1)[0],
                      "tag": OPERATOR_IMAGE.rsplit(":", 1)[1], "pullPolicy": "Never"},
            "nodeSelector": placement["nodeSelector"],
            "tolerations": placement["tolerations"],
            "worker": {"image": WORKER_IMAGE, "namespaces": [WORK_NAMESPACE]},
            "operator": {"startFailureGraceSeconds": START_FAILURE_GRACE_SECONDS},
            # Small enough for the test bed's node, large enough for the operator.
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                          "limits": {"memory": "512Mi"}},
        }
        values_file = self.cluster.run_dir / "realnode-values.json"
        values_file.write_text(json.dumps(values))
        self.cluster.helm("upgrade", "--install", RELEASE, str(CHART), "-n", SYSTEM_NAMESPACE,
                          "-f", str(values_file), "--wait", "--timeout", "120s")

    def uninstall(self) -> None:
        self.cluster.helm("uninstall", RELEASE, "-n", SYSTEM_NAMESPACE, "--wait", check=False)

    def pod(self) -> k8s.V1Pod:
        pods = self.cluster.core.list_namespaced_pod(
            SYSTEM_NAMESPACE, label_selector="app.kubernetes.io/component=operator").items
        running = [p for p in pods if p.status.phase == "Running"
                   and not p.metadata.deletion_timestamp]
        assert running, f"no running operator pod: {[p.status.phase for p in pods]}"
        return running[0]

    def http_get(self, port: int, path: str) -> str:
        """GET from the operator pod's own address (its liveness and metrics ports)."""
        url = f"http://{self.pod().status.pod_ip}:{port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200, url
            return str(response.read().decode())

    def logs(self) -> str:
        return self.cluster.kubectl("logs", "-n", SYSTEM_NAMESPACE,
                                    f"deployment/{FULLNAME}", "--tail=-1").stdout

    def wait_ready(self) -> None:
        def ready() -> bool:
            pod = self.pod()
            return any(c.type == "Ready" and c.status == "True"
                       for c in pod.status.conditions or [])
        wait_for(ready, timeout=90, what="the operator pod Ready")


def real_pipeline(real_node: RealNodeHandle, stages: list[dict[str, Any]],
                  **fields: Any) -> dict[str, Any]:
    """A pipelineSpec whose stage pods run on the real node as the chart's worker account."""
    placement = real_node.pod_placement()
    defaults = {"image": WORKER_IMAGE, "serviceAccountName": WORKER_SERVICE_ACCOUNT,
                "nodeSelector": placement["nodeSelector"],
                "tolerations": placement["tolerations"], **fields.pop("defaults", {})}
    return {"stages": stages, "defaults": defaults, **fields}
