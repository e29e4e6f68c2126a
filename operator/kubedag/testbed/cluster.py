"""Start, describe and stop a local control plane (or kwok alone beside an existing cluster)."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, cast

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from kubedag.testbed import processes
from kubedag.testbed.kubeconfig import write_admin_kubeconfig
from kubedag.testbed.nodes import (
    DEFAULT_NODES,
    KWOK_NODE_ANNOTATION,
    NODE_SELECTOR,
    TOLERATIONS,
    FakeNode,
)
from kubedag.testbed.pki import Pki, ensure_pki
from kubedag.testbed.stages import DEFAULT_COMPLETE_OWNER_KINDS, stages_config
from kubedag.testbed.state import load_state, save_state
from kubedag.testbed.versions import Versions, cache_root, require_binaries

KEEP_RUN_DIRS = 10


class ControlPlaneError(RuntimeError):
    """The control plane did not come up; the message names the log to read."""


@dataclass
class ControlPlane:
    """A running test bed. Serialisable, so `make cluster-down` can stop what `up` started."""

    kubeconfig: Path
    run_dir: Path
    bin_dir: Path
    pids: dict[str, int] = field(default_factory=dict)
    existing_cluster: bool = False
    node_names: list[str] = field(default_factory=list)
    started_in_seconds: float = 0.0
    # How each component was started, so restart_component can start it again identically.
    commands: dict[str, list[str]] = field(default_factory=dict)
    tie_to_parent: bool = True

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for subprocesses: our kubeconfig, our kubectl/helm first on PATH."""
        env = dict(os.environ if base is None else base)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def api_client(self) -> k8s.ApiClient:
        api: k8s.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )
        return api

    def pod_placement(self) -> dict[str, Any]:
        """nodeSelector and tolerations that put a test pod on a kwok node (and only there)."""
        return {"nodeSelector": dict(NODE_SELECTOR), "tolerations": [dict(t) for t in TOLERATIONS]}

    def restart_component(self, name: str, timeout_seconds: float = 60.0,
                          down_seconds: float = 0.0) -> float:
        """SIGKILL one component's process group and start it again with the same arguments
        (so on the same ports, with the same data) after ``down_seconds``; returns the seconds
        it was unavailable.

        Waits until it serves again where that can be seen: etcd's /health, kube-apiserver's
        /readyz. Restarting kwok this way leaves its node leases to the old instance (the new one
        waits out their 40 s duration), so delete them first if that matters.
        """
        if name not in self.commands:
            raise KeyError(f"{name} was not started by this test bed "
                           f"(started: {', '.join(self.commands) or 'none'})")
        began = time.monotonic()
        pid = self.pids.pop(name, None)
        if pid is not None:
            processes.stop([pid], grace_seconds=0)
        time.sleep(down_seconds)
        log = self.log_dir / f"{name}.log"
        with log.open("a") as out:
            out.write(f"\n===== restarted by the test bed at {datetime.now(UTC):%X} =====\n")
        self.pids[name] = processes.spawn(self.commands[name], log,
                                          tie_to_parent=self.tie_to_parent)
        args = self.commands[name]
        if name == "etcd":
            url = _flag(args, "--listen-client-urls")
            wait_until(lambda: _http_ok(f"{url}/health"), timeout_seconds, "etcd", log)
        elif name == "kube-apiserver":
            server = f"https://127.0.0.1:{_flag(args, '--secure-port')}"
            pki = ensure_pki()
            wait_until(lambda: _apiserver_ready(server, pki), timeout_seconds,
                  "kube-apiserver /readyz", log)
        return time.monotonic() - began

    def stop(self) -> None:
        processes.stop(list(self.pids.values()))
        if self.existing_cluster and self.node_names:
            _delete_nodes(self, self.node_names)
        self.pids.clear()

    def save(self, path: Path) -> None:
        save_state(self, path)

    @classmethod
    def load(cls, path: Path) -> ControlPlane:
        return load_state(cls, path)


def start_control_plane(
    *,
    existing_kubeconfig: Path | None = None,
    tie_to_parent: bool = True,
    nodes: tuple[FakeNode, ...] = DEFAULT_NODES,
    timeout_seconds: float = 60.0,
    complete_owner_kinds: tuple[str, ...] = DEFAULT_COMPLETE_OWNER_KINDS,
) -> ControlPlane:
    """Start the test bed and return once fake nodes are Ready and the API is fully usable.

    With ``existing_kubeconfig``, only kwok runs here, as a client of that cluster, managing the
    fake nodes it adds (tainted, so only test pods land there). kwok finishes the pods owned by
    an object of one of ``complete_owner_kinds`` (Jobs; `make bench-argo` adds Argo's Workflow).
    """
    began = time.monotonic()
    versions = Versions.pinned()
    bin_dir = versions.bin_dir()
    require_binaries(bin_dir)
    run_dir = _new_run_dir()
    plane = ControlPlane(
        kubeconfig=run_dir / "kubeconfig",
        run_dir=run_dir,
        bin_dir=bin_dir,
        existing_cluster=existing_kubeconfig is not None,
        node_names=[n.name for n in nodes],
        tie_to_parent=tie_to_parent,
    )
    try:
        if existing_kubeconfig is None:
            _start_local_control_plane(plane, tie_to_parent, timeout_seconds)
        else:
            shutil.copyfile(existing_kubeconfig, plane.kubeconfig)
        _start_kwok(plane, nodes, tie_to_parent, timeout_seconds, complete_owner_kinds)
        if existing_kubeconfig is None:
            wait_until(lambda: _default_service_account_exists(plane), timeout_seconds,
                  "kube-controller-manager to create the default ServiceAccount",
                  plane.log_dir / "kube-controller-manager.log")
    except BaseException:
        plane.stop()
        raise
    plane.started_in_seconds = round(time.monotonic() - began, 2)
    return plane


def _start_local_control_plane(plane: ControlPlane, tie_to_parent: bool, timeout: float) -> None:
    pki = ensure_pki()
    b, logs = plane.bin_dir, plane.log_dir
    etcd_port, etcd_peer, api_port = free_ports(3)
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    peer_url = f"http://127.0.0.1:{etcd_peer}"
    _spawn(plane, "etcd", [
        b / "etcd", "--name=default", f"--data-dir={plane.run_dir / 'etcd'}",
        f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=default={peer_url}", "--unsafe-no-fsync",
        "--quota-backend-bytes=4294967296", "--log-level=warn",
    ], logs / "etcd.log", tie_to_parent=tie_to_parent)
    wait_until(lambda: _http_ok(f"{etcd_url}/health"), timeout, "etcd", logs / "etcd.log")

    _spawn(plane, "kube-apiserver", [
        b / "kube-apiserver", f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
        f"--secure-port={api_port}", "--endpoint-reconciler-type=none",
        f"--tls-cert-file={pki.server_cert}", f"--tls-private-key-file={pki.server_key}",
        f"--client-ca-file={pki.ca_cert}",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        "--service-cluster-ip-range=10.0.0.0/24", "--authorization-mode=Node,RBAC",
        "--allow-privileged=true", f"--cert-dir={plane.run_dir / 'apiserver-certs'}",
        "--max-requests-inflight=800", "--max-mutating-requests-inflight=400",
    ], logs / "kube-apiserver.log", tie_to_parent=tie_to_parent)
    server = f"https://127.0.0.1:{api_port}"
    wait_until(lambda: _apiserver_ready(server, pki), timeout, "kube-apiserver /readyz",
          logs / "kube-apiserver.log")
    write_admin_kubeconfig(plane.kubeconfig, server, pki)

    kube_flags = [
        f"--kubeconfig={plane.kubeconfig}",
        f"--authentication-kubeconfig={plane.kubeconfig}",
        f"--authorization-kubeconfig={plane.kubeconfig}",
        "--bind-address=127.0.0.1", "--secure-port=0", "--leader-elect=false",
        "--kube-api-qps=200", "--kube-api-burst=400",
    ]
    _spawn(plane, "kube-controller-manager", [
        b / "kube-controller-manager", *kube_flags,
        f"--root-ca-file={pki.ca_cert}",
        f"--service-account-private-key-file={pki.service_account_key}",
        "--use-service-account-credentials=false", "--controllers=*",
        "--concurrent-job-syncs=20", "--concurrent-gc-syncs=20",
    ], logs / "kube-controller-manager.log", tie_to_parent=tie_to_parent)
    _spawn(
        plane, "kube-scheduler", [b / "kube-scheduler", *kube_flags],
        logs / "kube-scheduler.log", tie_to_parent=tie_to_parent,
    )


def _start_kwok(
    plane: ControlPlane, nodes: tuple[FakeNode, ...], tie_to_parent: bool, timeout: float,
    complete_owner_kinds: tuple[str, ...],
) -> None:
    stages = plane.run_dir / "kwok-stages.yaml"
    stages.write_text(stages_config(plane.bin_dir / "kwok-stages", complete_owner_kinds))
    with plane.api_client() as api:
        # A lease left by an earlier kwok would make this one wait out its duration (40 s).
        leases = k8s.CoordinationV1Api(api)
        for node in nodes:
            _ignore_not_found(partial(leases.delete_namespaced_lease, node.name, "kube-node-lease"))
        _spawn_kwok(plane, stages, tie_to_parent)
        core = k8s.CoreV1Api(api)
        for node in nodes:
            _ignore_not_found(partial(core.delete_node, node.name))
            core.create_node(cast(k8s.V1Node, node.manifest(tainted=plane.existing_cluster)))
        wait_until(lambda: _nodes_ready(core, [n.name for n in nodes]), timeout, "kwok nodes Ready",
              plane.log_dir / "kwok.log")


def _spawn_kwok(plane: ControlPlane, stages: Path, tie_to_parent: bool) -> None:
    # Only the fake nodes (annotated by us), never a real node: the test bed can add a real
    # kubelet beside them (kubedag.testbed.realnode), whose node and lease are its own.
    _spawn(plane, "kwok", [
        plane.bin_dir / "kwok", f"--kubeconfig={plane.kubeconfig}", f"--config={stages}",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
        "--node-lease-duration-seconds=40", "--cidr=10.244.0.0/16",
        "--node-ip=10.0.0.2", "--server-address=127.0.0.1:0",
    ], plane.log_dir / "kwok.log", tie_to_parent=tie_to_parent)


def _spawn(plane: ControlPlane, name: str, args: list[str | Path], log: Path, *,
           tie_to_parent: bool) -> None:
    plane.commands[name] = [str(a) for a in args]
    plane.pids[name] = processes.spawn(args, log, tie_to_parent=tie_to_parent)


def _flag(args: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in args if a.startswith(f"{name}="))


def _delete_nodes(plane: ControlPlane, names: list[str]) -> None:
    with plane.api_client() as api:
        core = k8s.CoreV1Api(api)
        for name in names:
            _ignore_not_found(partial(core.delete_node, name))


def _new_run_dir() -> Path:
    runs = cache_root() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for old in sorted(runs.iterdir())[:-KEEP_RUN_DIRS]:
        shutil.rmtree(old, ignore_errors=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = runs / f"{stamp}-{os.getpid()}"
    (run_dir / "logs").mkdir(parents=True)
    return run_dir


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_until(check: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    """Poll ``check`` until true; else ControlPlaneError naming what and the log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise ControlPlaneError(f"timed out after {timeout:.0f} s waiting for {what}; "
                            f"log: {log}\n--- last lines ---\n{tail}")


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    with urllib.request.urlopen(url, timeout=1, context=context) as response:
        return bool(response.status == 200)


def _apiserver_ready(server: str, pki: Pki) -> bool:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    return _http_ok(f"{server}/readyz", context)


def _nodes_ready(core: k8s.CoreV1Api, names: list[str]) -> bool:
    for name in names:
        status = core.read_node(name).status
        conditions = {c.type: c.status for c in ((status and status.conditions) or [])}
        if conditions.get("Ready") != "True":
            return False
    return True


def _default_service_account_exists(plane: ControlPlane) -> bool:
    with plane.api_client() as api:
        k8s.CoreV1Api(api).read_namespaced_service_account("default", "default")
    return True


def _ignore_not_found(call: Callable[[], object]) -> None:
    try:
        call()
    except ApiException as error:
        if error.status != 404:
            raise
