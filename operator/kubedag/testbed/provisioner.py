"""A real dynamic storage provisioner for the test bed: rancher's local-path-provisioner.

It runs on the host as a process of the test bed (out of cluster, with the admin kubeconfig; its
log is ``<log_dir>/local-path-provisioner.log``; ``plane.stop()`` stops it with the rest). A PVC
of the StorageClass :data:`STORAGE_CLASS` (WaitForFirstConsumer, reclaim Delete) is provisioned
as a directory on the node its first pod is scheduled to: the provisioner starts a short-lived
helper pod on that node (image :data:`HELPER_IMAGE`) that creates the directory, waits for the
helper pod to succeed, then creates a ``local`` PV pinned to that node.

On the real node the kubelet runs the helper for real (the image must be imported there). On
kwok nodes it is simulated: helper pods carry an ownerReference to a suspended Job
(:data:`HELPER_OWNER_JOB`, which never runs anything), and kwok completes Job-owned pods
(``kubedag-pod-succeed`` in :mod:`kubedag.testbed.stages`), so PVCs bind there too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from kubedag.testbed import processes
from kubedag.testbed.cluster import ControlPlane, ControlPlaneError
from kubedag.testbed.kubectl import apply, kubectl
from kubedag.testbed.nodes import TESTBED_TAINT_KEY

COMPONENT: Final = "local-path-provisioner"  # key in plane.pids / plane.commands, binary name
NAMESPACE: Final = "local-path-storage"
CONFIG_MAP: Final = "local-path-config"
SERVICE_ACCOUNT: Final = "local-path-provisioner-service-account"  # helper pods run as it
HELPER_OWNER_JOB: Final = "local-path-helper-owner"
STORAGE_CLASS: Final = "kubedag-local-path"
PROVISIONER_NAME: Final = "testbed.kubedag.io/local-path"
HELPER_IMAGE: Final = "kubedag.local/busybox:1.35"
# local-path-provisioner's key for "every node not listed" in nodePathMap.
DEFAULT_NODE: Final = "DEFAULT_PATH_FOR_NON_LISTED_NODES"
# The real node's taint (kubedag.testbed.realnode); helper pods must run there too.
REAL_NODE_TOLERATION: Final = {
    "key": "kubedag.io/real-node", "operator": "Equal", "value": "true", "effect": "NoSchedule",
}
DEFAULT_CLASS_ANNOTATION: Final = "storageclass.kubernetes.io/is-default-class"

_SETUP = '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n'
_TEARDOWN = '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n'
# The provisioner's controller logs this once its informers have synced (it then serves claims).
_STARTED = "Started provisioner controller"


@dataclass(frozen=True)
class LocalPathProvisioner:
    """What :func:`start_local_path_provisioner` started and created."""

    pid: int
    log: Path
    storage_class: str
    provisioner_name: str
    namespace: str
    node_paths: dict[str, list[str]] = field(default_factory=dict)
    default_class: bool = True


def start_local_path_provisioner(
    plane: ControlPlane,
    *,
    node_paths: Mapping[str, Sequence[str]] | None = None,
    helper_image: str = HELPER_IMAGE,
    helper_pull_policy: str | None = None,
    default_class: bool = True,
    timeout_seconds: float = 60.0,
) -> LocalPathProvisioner:
    """Start the provisioner on the host and create its namespace, ConfigMap and StorageClass.

    ``node_paths`` maps a node name (or :data:`DEFAULT_NODE`) to the host directories volumes go
    in; by default every node uses ``<run_dir>/local-path``, so volumes go away with the run dir.
    ``helper_pull_policy`` defaults to ``Never`` for a ``kubedag.local/`` image (imported on the
    real node, never pulled) and ``IfNotPresent`` otherwise. With ``default_class`` the
    StorageClass is the cluster's default, so PVCs without a storageClassName use it.

    Idempotent: a second call replaces the running provisioner and re-applies the objects.
    Returns once the provisioner's controller has started; raises ControlPlaneError (naming its
    log) otherwise.
    """
    binary = plane.bin_dir / COMPONENT
    if not binary.is_file():
        raise FileNotFoundError(
            f"{binary} is missing. Run `make cluster-bin` (hack/build-cluster-bin.sh builds "
            "local-path-provisioner at LOCAL_PATH_PROVISIONER_VERSION from versions.env).")
    paths = {node: [str(p) for p in dirs] for node, dirs in (
        node_paths or {DEFAULT_NODE: [str(plane.run_dir / "local-path")]}).items()}
    for dirs in paths.values():
        for directory in dirs:
            Path(directory).mkdir(parents=True, exist_ok=True)
    pull = helper_pull_policy or (
        "Never" if helper_image.startswith("kubedag.local/") else "IfNotPresent")

    old = plane.pids.pop(COMPONENT, None)
    if old is not None:
        processes.stop([old])
    apply(plane, _owner_objects(helper_image), COMPONENT)
    owner_uid = kubectl(plane, "get", "job", HELPER_OWNER_JOB, "-n", NAMESPACE,
                        "-o", "jsonpath={.metadata.uid}").strip()
    apply(plane, [
        _config_map(paths, helper_image, pull, owner_uid),
        _storage_class(default_class=default_class),
    ], COMPONENT)

    log = plane.log_dir / f"{COMPONENT}.log"
    start = log.stat().st_size if log.exists() else 0
    args = [
        str(binary), "start", f"--kubeconfig={plane.kubeconfig}",
        f"--namespace={NAMESPACE}", f"--configmap-name={CONFIG_MAP}",
        f"--provisioner-name={PROVISIONER_NAME}", f"--service-account-name={SERVICE_ACCOUNT}",
        f"--helper-image={helper_image}",
    ]
    plane.commands[COMPONENT] = args
    pid = processes.spawn(args, log, tie_to_parent=plane.tie_to_parent)
    plane.pids[COMPONENT] = pid
    deadline = time.monotonic() + timeout_seconds
    while True:
        text = log.read_bytes()[start:].decode(errors="replace")
        if _STARTED in text:
            break
        exited = not processes.alive(pid)
        if exited or time.monotonic() > deadline:
            plane.pids.pop(COMPONENT, None)
            processes.stop([pid])
            why = "exited" if exited else f"did not start in {timeout_seconds:.0f} s"
            raise ControlPlaneError(f"{COMPONENT} {why}; log: {log}\n--- last lines ---\n"
                                    f"{text[-2000:]}")
        time.sleep(0.1)
    return LocalPathProvisioner(pid=pid, log=log, storage_class=STORAGE_CLASS,
                                provisioner_name=PROVISIONER_NAME, namespace=NAMESPACE,
                                node_paths=paths, default_class=default_class)


def stop_local_path_provisioner(plane: ControlPlane) -> None:
    """Stop the provisioner process (the objects stay; ``plane.stop()`` also stops it)."""
    pid = plane.pids.pop(COMPONENT, None)
    if pid is not None:
        processes.stop([pid])


def _owner_objects(helper_image: str) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": COMPONENT, "app.kubernetes.io/part-of": "kubedag-testbed"}
    return [
        {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "labels": {
                **labels, "pod-security.kubernetes.io/enforce": "privileged"}},
        },
        {
            # Helper pods need an existing ServiceAccount; they never call the API.
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE, "labels": labels},
            "automountServiceAccountToken": False,
        },
        {
            # Never runs (suspended): it only owns the helper pods, so that kwok completes them.
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": HELPER_OWNER_JOB, "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "suspend": True,
                "template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "owner", "image": helper_image}],
                }},
            },
        },
    ]


def _config_map(paths: Mapping[str, Sequence[str]], helper_image: str, pull: str,
                owner_uid: str) -> dict[str, Any]:
    config = {"nodePathMap": [{"node": n, "paths": list(p)} for n, p in paths.items()]}
    helper_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "helper-pod",
            "labels": {"app.kubernetes.io/name": "local-path-helper",
                       "app.kubernetes.io/part-of": "kubedag-testbed"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                                 "name": HELPER_OWNER_JOB, "uid": owner_uid}],
        },
        "spec": {
            "automountServiceAccountToken": False,
            "tolerations": [
                dict(REAL_NODE_TOLERATION),
                {"key": TESTBED_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"},
            ],
            # The container must be called helper-pod: the provisioner reads its log by name.
            "containers": [{"name": "helper-pod", "image": helper_image,
                            "imagePullPolicy": pull}],
        },
    }
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP, "namespace": NAMESPACE},
        "data": {
            "config.json": json.dumps(config, indent=2),
            "setup": _SETUP,
            "teardown": _TEARDOWN,
            "helperPod.yaml": yaml.safe_dump(helper_pod, sort_keys=False),
        },
    }


def _storage_class(*, default_class: bool) -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "annotations": {
            DEFAULT_CLASS_ANNOTATION: "true" if default_class else "false"}},
        "provisioner": PROVISIONER_NAME,
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
    }

