"""The test bed's dynamic storage: rancher's local-path-provisioner, run on the host.

A PVC used by a pod on a kwok node binds: the scheduler picks the node (WaitForFirstConsumer),
the provisioner starts its helper pod on that node (simulated by kwok), and creates a local PV
pinned to the node; deleting the claim deletes the volume (reclaim Delete).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kubedag.testbed.provisioner import (
    COMPONENT,
    NAMESPACE,
    PROVISIONER_NAME,
    STORAGE_CLASS,
    LocalPathProvisioner,
    start_local_path_provisioner,
    stop_local_path_provisioner,
)
from tests.integration.support import Cluster, wait_for


@pytest.fixture
def provisioner(cluster: Cluster) -> Iterator[LocalPathProvisioner]:
    started = start_local_path_provisioner(cluster.plane)
    try:
        yield started
    finally:
        stop_local_path_provisioner(cluster.plane)
        # Leave no default StorageClass behind for tests that do not expect one.
        cluster.kubectl("delete", "storageclass", STORAGE_CLASS, "--ignore-not-found")


def _pv_gone(cluster: Cluster, name: str) -> bool:
    try:
        cluster.core.read_persistent_volume(name)
    except ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


def test_claim_binds_on_a_kwok_node_and_is_deleted(
    cluster: Cluster, namespace: str, provisioner: LocalPathProvisioner
) -> None:
    assert COMPONENT in cluster.plane.pids
    storage = k8s.StorageV1Api(cluster.api_client)
    storage_class = storage.read_storage_class(STORAGE_CLASS)
    assert storage_class.provisioner == PROVISIONER_NAME
    assert storage_class.volume_binding_mode == "WaitForFirstConsumer"
    assert storage_class.reclaim_policy == "Delete"

    # No storageClassName: the default class is filled in by the API server.
    claim = cluster.core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })
    assert claim.spec.storage_class_name == STORAGE_CLASS
    cluster.core.create_namespaced_pod(namespace, {
        "metadata": {"name": "consumer"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "kubedag-worker",
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
            **cluster.pod_placement(),
        },
    })

    def bound() -> str | None:
        phase = cluster.core.read_namespaced_persistent_volume_claim("data", namespace).status.phase
        return "Bound" if phase == "Bound" else None

    wait_for(bound, timeout=60, what=f"PVC data to bind (log: {provisioner.log})")
    claim = cluster.core.read_namespaced_persistent_volume_claim("data", namespace)
    volume = cluster.core.read_persistent_volume(claim.spec.volume_name)
    assert volume.metadata.annotations["pv.kubernetes.io/provisioned-by"] == PROVISIONER_NAME
    pod = wait_for(lambda: _running(cluster, namespace, "consumer"), timeout=30,
                   what="the consumer pod to run")
    terms = volume.spec.node_affinity.required.node_selector_terms
    assert terms[0].match_expressions[0].values == [pod.spec.node_name]
    path = volume.spec.local.path if volume.spec.local else volume.spec.host_path.path
    assert path.startswith(provisioner.node_paths["DEFAULT_PATH_FOR_NON_LISTED_NODES"][0])
    log = provisioner.log.read_text()
    assert f"create the helper pod helper-pod-create-{volume.metadata.name} into {NAMESPACE}" \
        in log, log[-3000:]

    cluster.core.delete_namespaced_pod("consumer", namespace, grace_period_seconds=0)
    cluster.core.delete_namespaced_persistent_volume_claim("data", namespace)
    wait_for(lambda: _pv_gone(cluster, volume.metadata.name), timeout=60,
             what=f"PV {volume.metadata.name} to be deleted (log: {provisioner.log})")
    assert f"helper-pod-delete-{volume.metadata.name}" in provisioner.log.read_text()


def test_start_is_idempotent(cluster: Cluster, provisioner: LocalPathProvisioner) -> None:
    again = start_local_path_provisioner(cluster.plane)
    try:
        assert again.pid != provisioner.pid
        assert cluster.plane.pids[COMPONENT] == again.pid
    finally:
        stop_local_path_provisioner(cluster.plane)


def _running(cluster: Cluster, namespace: str, name: str) -> k8s.V1Pod | None:
    pod = cluster.core.read_namespaced_pod(name, namespace)
    return pod if pod.status.phase == "Running" else None
