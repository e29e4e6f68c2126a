"""The worker reports progress on its own Pod through a real API server, rate-limited.

The worker runs as a local process but authenticates as a ServiceAccount holding only the Role
built from ``kubedag.worker.rbac.WORKER_POD_RULES``, so the test also proves those rules are
enough. A watch on the Pod sees every annotation change, independently of what the worker logs.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import watch

from kubedag import contract
from kubedag.testbed import ANNOTATION_DURATION
from kubedag.worker.rbac import WORKER_POD_RULES
from tests.integration.support import Cluster, wait_for
from tests.unit.worker.support import SAMPLES, Result, run_worker

POD = "stage-pod"
SERVICE_ACCOUNT = "kubedag-worker"


def _create_pod(cluster: Cluster, namespace: str) -> None:
    cluster.core.create_namespaced_pod(namespace, {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "annotations": {ANNOTATION_DURATION: "60s"}},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": SERVICE_ACCOUNT,
            "containers": [{"name": "main", "image": "kubedag-worker"}],
            **cluster.pod_placement(),
        },
    })
    wait_for(
        lambda: cluster.core.read_namespaced_pod(POD, namespace).status.phase == "Running",
        what="the stage pod to run",
    )


def _worker_kubeconfig(cluster: Cluster, namespace: str, tmp: Path, *, grant: bool) -> Path:
    """A kubeconfig that is the worker's ServiceAccount, with (or without) the worker Role."""
    cluster.core.create_namespaced_service_account(
        namespace, {"metadata": {"name": SERVICE_ACCOUNT}}
    )
    if grant:
        rbac = k8s.RbacAuthorizationV1Api(cluster.api_client)
        rbac.create_namespaced_role(
            namespace, {"metadata": {"name": SERVICE_ACCOUNT}, "rules": WORKER_POD_RULES}
        )
        rbac.create_namespaced_role_binding(namespace, {
            "metadata": {"name": SERVICE_ACCOUNT},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": SERVICE_ACCOUNT},
            "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT,
                          "namespace": namespace}],
        })
    token = cluster.kubectl("create", "token", SERVICE_ACCOUNT, "-n", namespace).stdout.strip()
    config = yaml.safe_load(cluster.kubectl("config", "view", "--raw", "--minify").stdout)
    config["users"] = [{"name": SERVICE_ACCOUNT, "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = SERVICE_ACCOUNT
    path = tmp / "worker-kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


class _AnnotationWatch:
    """Records every distinct progress annotation value the API server shows for the Pod."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.values: list[dict[str, Any]] = []
        self._watch = watch.Watch()
        core = cluster.core
        version = core.read_namespaced_pod(POD, namespace).metadata.resource_version
        self._thread = threading.Thread(
            target=self._run, args=(core, namespace, version), daemon=True
        )
        self._thread.start()

    def _run(self, core: k8s.CoreV1Api, namespace: str, version: str) -> None:
        for event in self._watch.stream(
            core.list_namespaced_pod, namespace, field_selector=f"metadata.name={POD}",
            resource_version=version, timeout_seconds=60,
        ):
            raw = (event["object"].metadata.annotations or {}).get(contract.ANNOTATION_PROGRESS)
            if raw and (not self.values or json.loads(raw) != self.values[-1]):
                self.values.append(json.loads(raw))
            if self.values and self.values[-1]["fraction"] == 1.0:
                return

    def result(self) -> list[dict[str, Any]]:
        self._thread.join(timeout=30)
        self._watch.stop()
        return self.values


def _run_reporting_worker(namespace: str, tmp: Path, kubeconfig: Path) -> Result:
    return run_worker(
        tmp, "--log-level", "DEBUG", "--progress-interval", "1", f"{SAMPLES}:progress_many",
        KUBECONFIG=str(kubeconfig),
        KUBEDAG_NAMESPACE=namespace,
        KUBEDAG_POD_NAME=POD,
        KUBEDAG_PARAMS=json.dumps({"updates": 30, "pause": 0.1}),  # 30 updates over ~3 s
    )


def test_progress_ends_at_one_and_is_rate_limited(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    kubeconfig = _worker_kubeconfig(cluster, namespace, tmp_path, grant=True)
    _create_pod(cluster, namespace)
    seen = _AnnotationWatch(cluster, namespace)

    result = _run_reporting_worker(namespace, tmp_path, kubeconfig)

    assert result.code == contract.EXIT_OK, result.stderr
    sent = [line for line in result.stderr.splitlines() if "progress patch sent" in line]
    # ~3 s at one patch per second: the first at once, about three more, and the final one.
    print("\n".join(sent))
    assert 3 <= len(sent) <= 6, result.stderr
    assert f"progress: {len(sent)} patches sent" in result.stderr
    assert "0 failed" in result.stderr

    annotation = json.loads(
        cluster.core.read_namespaced_pod(POD, namespace).metadata.annotations[
            contract.ANNOTATION_PROGRESS
        ]
    )
    assert annotation["fraction"] == 1.0
    assert annotation["message"] == "done"
    assert annotation["time"].endswith("Z")

    values = seen.result()
    assert values[-1] == annotation
    assert len(values) == len(sent)  # the API server saw exactly the patches the worker sent
    fractions = [v["fraction"] for v in values]
    assert fractions == sorted(fractions) and fractions[0] == 0.0


def test_forbidden_progress_does_not_fail_the_stage(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    kubeconfig = _worker_kubeconfig(cluster, namespace, tmp_path, grant=False)
    _create_pod(cluster, namespace)

    result = _run_reporting_worker(namespace, tmp_path, kubeconfig)

    assert result.code == contract.EXIT_OK, result.stderr
    assert "Forbidden" in result.stderr
    assert "0 patches sent" in result.stderr
    annotations = cluster.core.read_namespaced_pod(POD, namespace).metadata.annotations or {}
    assert contract.ANNOTATION_PROGRESS not in annotations
