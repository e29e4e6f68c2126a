"""Put files into a PersistentVolumeClaim, the way a user seeds a workspace by hand: a short-lived
pod mounts the claim and `kubectl cp` copies into it (used by `make demo` and the tests that run
the document pipeline on the real node with an existing claim)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kubedag.testbed.cluster import ControlPlane

LOADER_IMAGE = "ghcr.io/kubedag/worker:0.1.0"  # has sh and tar, runs as a non-root user


def create_claim(api: k8s.ApiClient, namespace: str, name: str, *, size: str = "1Gi",
                 storage_class: str | None = None) -> None:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name}, "spec": spec}
    try:
        k8s.CoreV1Api(api).create_namespaced_persistent_volume_claim(
            namespace, cast(k8s.V1PersistentVolumeClaim, body))
    except ApiException as error:
        if error.status != 409:
            raise


def copy_into_claim(plane: ControlPlane, namespace: str, claim: str, files: Sequence[Path],
                    target: str, placement: Mapping[str, Any], *,
                    timeout: float = 120) -> None:
    """Copy ``files`` into ``target`` (a folder inside the claim), through a loader pod that
    satisfies the `restricted` Pod Security Standard; the pod is deleted afterwards."""
    with plane.api_client() as api:
        _copy(plane, k8s.CoreV1Api(api), namespace, claim, files, target, placement, timeout)


def _copy(plane: ControlPlane, core: k8s.CoreV1Api, namespace: str, claim: str,
          files: Sequence[Path], target: str, placement: Mapping[str, Any],
          timeout: float) -> None:
    pod = f"load-{claim}"[:63]
    body = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
        "spec": {
            **placement,
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "loader", "image": LOADER_IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True},
                "volumeMounts": [{"name": "claim", "mountPath": "/claim"}],
            }],
            "volumes": [{"name": "claim", "persistentVolumeClaim": {"claimName": claim}}],
            "terminationGracePeriodSeconds": 1,
        },
    }
    core.create_namespaced_pod(namespace, cast(k8s.V1Pod, body))
    try:
        deadline = time.monotonic() + timeout
        while cast(Any, core.read_namespaced_pod(pod, namespace).status).phase != "Running":
            if time.monotonic() > deadline:
                raise TimeoutError(f"loader pod {namespace}/{pod} not Running after {timeout} s")
            time.sleep(0.3)
        kubectl = [str(plane.bin_dir / "kubectl"), "-n", namespace]
        subprocess.run([*kubectl, "exec", pod, "--", "mkdir", "-p", f"/claim/{target}"],
                       env=plane.env(), check=True, capture_output=True, timeout=60)
        for path in files:
            subprocess.run([*kubectl, "cp", str(path), f"{pod}:/claim/{target}/{path.name}"],
                           env=plane.env(), check=True, capture_output=True, timeout=60)
    finally:
        core.delete_namespaced_pod(pod, namespace, grace_period_seconds=0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                core.read_namespaced_pod(pod, namespace)
            except ApiException as error:
                if error.status == 404:
                    break
            time.sleep(0.3)
