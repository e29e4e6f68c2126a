"""The test bed's real node: real containers beside kwok's fake ones, and a clean teardown."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kubedag.testbed import processes
from kubedag.testbed.realnode import (
    BRIDGE,
    REAL_NODE_LABEL,
    cgroups_left,
    iptables_leftovers,
    mounts_under,
)
from tests.integration.realnode_support import RealNodeHandle
from tests.integration.support import Cluster, wait_for

BUSYBOX = "kubedag.local/busybox:1.35"
RESTRICTED = {"runAsNonRoot": True, "runAsUser": 65534,
              "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_RESTRICTED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True}


def restricted_namespace(cluster: Cluster) -> str:
    """A namespace that enforces the `restricted` Pod Security Standard, as stage pods face."""
    name = f"kdr-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(
        name=name, labels={"pod-security.kubernetes.io/enforce": "restricted"})))
    return name


def busybox_pod(real_node: RealNodeHandle, name: str, script: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            **real_node.pod_placement(),
            "restartPolicy": "Never",
            "securityContext": RESTRICTED,
            "containers": [{"name": "main", "image": BUSYBOX, "imagePullPolicy": "Never",
                            "command": ["sh", "-c", script],
                            "securityContext": CONTAINER_RESTRICTED}],
        },
    }


def test_real_node_joins_labelled_and_tainted_and_kwok_leaves_it_alone(
        cluster: Cluster, real_node: RealNodeHandle) -> None:
    node = cluster.core.read_node(real_node.name)
    assert node.metadata.labels[REAL_NODE_LABEL] == "true"
    assert [(t.key, t.effect) for t in node.spec.taints or []] == [(REAL_NODE_LABEL,
                                                                     "NoSchedule")]
    assert "kwok.x-k8s.io/node" not in (node.metadata.annotations or {})
    assert node.status.node_info.container_runtime_version.startswith("containerd://")
    leases = k8s.CoordinationV1Api(cluster.api_client)

    def holder() -> str | None:
        try:
            lease = leases.read_namespaced_lease(real_node.name, "kube-node-lease")
        except ApiException:
            return None
        return str(lease.spec.holder_identity)
    # The kubelet holds its node's lease (kwok, which manages only annotated nodes, never does).
    assert wait_for(holder, timeout=30, what="the real node's lease") == real_node.name


def test_a_real_container_exits_with_its_code_message_and_logs(
        cluster: Cluster, real_node: RealNodeHandle) -> None:
    namespace = restricted_namespace(cluster)
    try:
        body = busybox_pod(real_node, "exit3",
                           "echo hello from a real container; "
                           "echo 'stage failed: boom' > /dev/termination-log; exit 3")
        cluster.core.create_namespaced_pod(namespace, body)

        def terminated() -> Any:
            pod = cluster.core.read_namespaced_pod("exit3", namespace)
            statuses = pod.status.container_statuses or []
            return statuses and statuses[0].state.terminated
        state = wait_for(terminated, timeout=60, what="the busybox container to exit")
        assert state.exit_code == 3
        assert state.message.strip() == "stage failed: boom"
        logs = cluster.kubectl("logs", "-n", namespace, "exit3").stdout
        assert logs.strip() == "hello from a real container"
    finally:
        cluster.core.delete_namespace(namespace)


def test_teardown_leaves_nothing_behind_and_the_node_comes_back(
        cluster: Cluster, real_node: RealNodeHandle) -> None:
    namespace = restricted_namespace(cluster)
    try:
        # Something running at teardown time: a container, its mounts, cgroups, CNI chains.
        cluster.core.create_namespaced_pod(namespace, busybox_pod(real_node, "sleeper",
                                                                  "sleep 600"))
        wait_for(lambda: cluster.core.read_namespaced_pod("sleeper", namespace).status.phase
                 == "Running", timeout=60, what="a running pod on the real node")
        node = real_node.node
        pids = dict(node.pids)
        root, store = node.root, node.store
        before = _sysctls(node.sysctls_before)
        real_node.stop()

        assert [name for name, pid in pids.items() if processes.alive(pid)] == []
        assert _processes_mentioning(str(root)) == []
        assert mounts_under(root) == [] and mounts_under(store) == []
        assert subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True,
                              check=False).returncode
        assert iptables_leftovers() == []
        assert cgroups_left() == []
        assert _sysctls(node.sysctls_before) == node.sysctls_before, before
        assert not root.exists()
        assert not Path("/var/lib/kubelet").exists()
    finally:
        cluster.core.delete_namespace(namespace)
        real_node.start()
    wait_for(lambda: cluster.core.read_node(real_node.name).status.conditions, timeout=30,
             what="the real node back")


def _sysctls(keys: dict[str, str]) -> dict[str, str]:
    return {key: subprocess.run(["sysctl", "-n", key], capture_output=True, text=True,
                                check=True).stdout.strip() for key in keys}


def _processes_mentioning(text: str) -> list[str]:
    found = []
    needle = text.encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if needle in cmdline:
                found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found
