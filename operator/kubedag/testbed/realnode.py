"""A real node for the test bed: containerd + runc + CNI bridge + a kubelet built at the pinned
Kubernetes version, joined to the test bed's control plane next to the kwok nodes.

Why it exists: kwok's simulated pods hide what users meet on day one (images that never ran,
workspaces that are not shared, OOM kills, RBAC in a pod). Everything here follows the recipe in
the project notes (`real-node.md`), verified on this kind of machine; the gotchas it names are
handled where they bite and commented there.

Isolation from the rest of the test bed: the node carries the label ``kubedag.io/real-node=true``
and the taint ``kubedag.io/real-node=true:NoSchedule``, so only pods that ask for it land there;
kwok manages only nodes annotated as fake, never this one.

Host state: processes run in their own sessions and are stopped by pid; mounts, the ``rn0``
bridge, iptables rules and chains, sysctls and cgroups the kubelet or CNI create are undone by
`RealNode.stop` (a test checks that nothing is left). The image store (containerd's root) is kept
in the cache between runs, so images are imported once per build, not once per start.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from kubedag.testbed import processes
from kubedag.testbed.cluster import ControlPlane, ControlPlaneError, wait_until
from kubedag.testbed.pki import ensure_pki
from kubedag.testbed.state import load_state, save_state
from kubedag.testbed.versions import cache_root

REAL_NODE_LABEL: Final = "kubedag.io/real-node"
# Pods meant for the real node select it and tolerate its taint; nothing else lands there.
REAL_NODE_SELECTOR: Final = {REAL_NODE_LABEL: "true"}
REAL_NODE_TOLERATIONS: Final = [
    {"key": REAL_NODE_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
]
BRIDGE: Final = "rn0"
POD_SUBNET: Final = "10.22.0.0/16"
POD_GATEWAY: Final = "10.22.0.1"
# The `kubernetes` Service's ClusterIP (first address of --service-cluster-ip-range): pods reach
# the API server there through one DNAT rule, since no kube-proxy runs on the test bed.
APISERVER_SERVICE_IP: Final = "10.0.0.1"
DNAT_COMMENT: Final = "kubedag-realnode-apiserver"
# containerd's sandbox image must be present locally: no registry is reachable.
PAUSE_IMAGE: Final = "registry.k8s.io/pause:3.6"
CONTAINERD_NAMESPACE: Final = "k8s.io"
# The kubelet writes here whatever --root-dir says (two kubelets on one host would collide).
KUBELET_FIXED_DIRS: Final = (Path("/var/lib/kubelet/device-plugins"), Path("/var/lib/kubelet"))
SYSCTLS_CHANGED: Final = ("vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic",
                          "kernel.panic_on_oops", "net.ipv4.ip_forward")
HOST_COMMANDS: Final = ("containerd", "runc", "ctr", "iptables", "ip", "sysctl", "openssl")
CNI_BIN_DIR: Final = Path("/usr/lib/cni")
KUBELET_PORT: Final = 10250


class RealNodeUnavailableError(RuntimeError):
    """This machine cannot run a real node; the message says why and what would fix it."""


def state_root() -> Path:
    """Runtime state: short, because unix socket paths are limited to 108 bytes."""
    return Path(os.environ.get("KUBEDAG_REALNODE_DIR", "/tmp/kubedag-realnode"))


def image_store() -> Path:
    """containerd's root, kept between runs so an unchanged image is not imported again."""
    return cache_root() / "realnode" / "containerd-root"


def node_name() -> str:
    """The hostname when it resolves to loopback, else ``localhost``.

    The API server reaches a kubelet (for logs and exec) at the node's Hostname address first, and
    the kubelet refuses a loopback --node-ip, so the name itself must resolve to 127.0.0.1.
    """
    host = socket.gethostname().lower()
    with contextlib.suppress(OSError):
        if socket.gethostbyname(host).startswith("127."):
            return host
    return "localhost"


def unavailable_reason(kubelet: Path) -> str | None:
    """None when a real node can start here, else the reason (for skips-with-reason in demos
    and for a clear failure in tests)."""
    if platform.system() != "Linux":
        return f"a real node needs Linux (this is {platform.system()})"
    if os.geteuid() != 0:
        return "a real node needs root (containerd, mounts, iptables, cgroups)"
    missing = [c for c in HOST_COMMANDS if shutil.which(c) is None]
    if missing or not (CNI_BIN_DIR / "bridge").exists():
        return (f"missing host packages ({', '.join(missing) or 'CNI plugins'}): run "
                "`hack/ensure-realnode-packages.sh` (make test does)")
    if not kubelet.is_file():
        return f"no kubelet at {kubelet}: run `make cluster-bin`"
    return None


@dataclass
class RealNode:
    """A running real node; `stop` undoes everything `start_real_node` did to the host."""

    name: str
    root: Path
    store: Path
    kubeconfig: Path  # the test bed's admin kubeconfig
    pids: dict[str, int] = field(default_factory=dict)
    sysctls_before: dict[str, str] = field(default_factory=dict)
    started_in_seconds: float = 0.0
    images_imported_in_seconds: float = 0.0

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    def ctr(self, *args: str, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ctr", "-a", str(self.socket), "-n", CONTAINERD_NAMESPACE, *args],
            capture_output=True, text=True, check=check, timeout=timeout)

    def pod_placement(self) -> dict[str, Any]:
        """nodeSelector and tolerations that put a pod on this node (and only here)."""
        return {"nodeSelector": dict(REAL_NODE_SELECTOR),
                "tolerations": [dict(t) for t in REAL_NODE_TOLERATIONS]}

    def import_images(self, archives: Iterable[Path]) -> list[str]:
        """Import docker-archive tarballs, skipping those imported before (by path + size +
        mtime, recorded in the image store); returns the refs present afterwards."""
        began = time.monotonic()
        record = self.store / "imported.json"
        seen: dict[str, str] = json.loads(record.read_text()) if record.exists() else {}
        present = set(self.image_refs())
        for archive in archives:
            stat = archive.stat()
            stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
            refs = _archive_refs(archive)
            if seen.get(str(archive)) == stamp and refs <= present:
                continue
            self.ctr("images", "import", str(archive), timeout=300)
            seen[str(archive)] = stamp
        record.write_text(json.dumps(seen, indent=1))
        self.images_imported_in_seconds = round(time.monotonic() - began, 2)
        return self.image_refs()

    def image_refs(self) -> list[str]:
        out = self.ctr("images", "ls", "-q").stdout.split()
        return [ref for ref in out if not ref.startswith("sha256:")]

    def stop(self) -> None:
        """Tear down in the order that leaves nothing behind (see `_teardown`)."""
        _teardown(self)

    def save(self, path: Path) -> None:
        save_state(self, path)

    @classmethod
    def load(cls, path: Path) -> RealNode:
        return load_state(cls, path)


def start_real_node(
    plane: ControlPlane,
    images: Sequence[Path] = (),
    *,
    timeout_seconds: float = 90.0,
    tie_to_parent: bool = True,
) -> RealNode:
    """Start containerd and a kubelet on this host as a node of ``plane``; return once it takes
    pods: Ready, and without the node lifecycle controller's not-ready taint.

    ``images``: docker-archive tarballs to import (the pause image must be among them, or
    already imported). Raises RealNodeUnavailableError when the host cannot do it.
    """
    kubelet = plane.bin_dir / "kubelet"
    reason = unavailable_reason(kubelet)
    if reason:
        raise RealNodeUnavailableError(reason)
    if plane.existing_cluster:
        raise RealNodeUnavailableError("a real node joins only the test bed's own control plane")
    began = time.monotonic()
    root, name = state_root(), node_name()
    stale = root / "state.json"
    if stale.exists():  # a previous run died before its teardown: undo what it left first
        with contextlib.suppress(Exception):
            RealNode.load(stale).stop()
    node = RealNode(name=name, root=root, store=image_store(), kubeconfig=plane.kubeconfig)
    for sub in ("containerd/state", "kubelet", "pod-logs", "logs", "pki", "cni/ipam", "etc/cni"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    node.store.mkdir(parents=True, exist_ok=True)
    node.sysctls_before = {k: _sysctl(k) for k in SYSCTLS_CHANGED}
    node.save(stale)
    try:
        _write_configs(node, plane)
        node.pids["containerd"] = processes.spawn(
            ["containerd", "--config", str(root / "etc/containerd.toml")],
            node.log_dir / "containerd.log", tie_to_parent=tie_to_parent)
        node.save(stale)
        wait_until(lambda: node.ctr("version", check=False, timeout=5).returncode == 0,
              30, "containerd", node.log_dir / "containerd.log")
        node.import_images(images)
        if PAUSE_IMAGE not in node.image_refs():
            raise ControlPlaneError(f"the sandbox image {PAUSE_IMAGE} was not imported: "
                                    "run `make images`")
        _pods_reach_apiserver(plane)
        node.pids["kubelet"] = processes.spawn([
            str(kubelet), f"--config={root / 'etc/kubelet.yaml'}",
            f"--kubeconfig={root / 'etc/kubelet.kubeconfig'}", f"--root-dir={root / 'kubelet'}",
            f"--cert-dir={root / 'kubelet/pki'}", f"--hostname-override={name}",
            f"--node-labels={REAL_NODE_LABEL}=true",
            f"--register-with-taints={REAL_NODE_LABEL}=true:NoSchedule", "--v=1",
        ], node.log_dir / "kubelet.log", tie_to_parent=tie_to_parent)
        node.save(stale)
        with plane.api_client() as api:
            core = k8s.CoreV1Api(api)
            wait_until(lambda: _node_ready(core, name), timeout_seconds,
                       f"node {name} Ready and untainted by the node lifecycle controller",
                       node.log_dir / "kubelet.log")
    except BaseException:
        node.stop()
        raise
    node.started_in_seconds = round(time.monotonic() - began, 2)
    node.save(stale)
    return node


def _write_configs(node: RealNode, plane: ControlPlane) -> None:
    root, pki = node.root, ensure_pki()
    (root / "etc/containerd.toml").write_text(f"""\
version = 2
root = "{node.store}"
state = "{root / 'containerd/state'}"
[grpc]
  address = "{node.socket}"
[ttrpc]
  address = "{node.socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{root / 'containerd/opt'}"
[plugins."io.containerd.grpc.v1.cri"]
  # No registry is reachable: the pause image is built locally and imported.
  sandbox_image = "{PAUSE_IMAGE}"
  enable_selinux = false
  netns_mounts_under_state_dir = true
  # This kind of VM lacks CAP_SYS_RESOURCE, so oom_score_adj can never go below containerd's
  # own (0); the kubelet asks -998 for sandboxes and every pod would fail to start. Clamp.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{shutil.which('runc')}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{root / 'etc/cni'}"
""")
    (root / "etc/cni/10-kubedag-realnode.conflist").write_text(json.dumps({
        "cniVersion": "0.4.0",
        "name": "kubedag-realnode",
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True,
             "hairpinMode": True,
             "ipam": {"type": "host-local",
                      "ranges": [[{"subnet": POD_SUBNET, "gateway": POD_GATEWAY}]],
                      "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": str(root / "cni/ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }, indent=1))
    (root / "etc/kubelet.yaml").write_text(json.dumps({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # The host may use cgroup v1, which kubelets >= 1.35 refuse unless told otherwise.
        "failCgroupV1": False,
        # containerd 1.6 has no RuntimeConfig call; the kubelet falls back to this setting.
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{node.socket}",
        "address": "127.0.0.1",
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        # The API server has no kubelet client certificate: allow it in, on loopback only.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(pki.ca_cert)}},
        "authorization": {"mode": "AlwaysAllow"},
        "podLogsDir": str(root / "pod-logs"),
        "failSwapOn": False,
        "clusterDomain": "cluster.local",
        "resolvConf": "/etc/resolv.conf",
        "serializeImagePulls": False,
        "podPidsLimit": -1,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%"},
        # Never garbage-collect the locally imported images: there is nowhere to pull them from.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "protectKernelDefaults": False,
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "10s",
    }, indent=1))
    key, crt = root / "pki/node.key", root / "pki/node.crt"
    if not crt.exists():
        _node_certificate(node.name, key, crt, pki.ca_cert, pki.ca_key)
    server = _server_of(plane.kubeconfig)
    (root / "etc/kubelet.kubeconfig").write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": server, "certificate-authority": str(pki.ca_cert)}}],
        "users": [{"name": "node", "user": {
            "client-certificate": str(crt), "client-key": str(key)}}],
        "contexts": [{"name": "node", "context": {"cluster": "local", "user": "node"}}],
        "current-context": "node",
    }, indent=1))


def _node_certificate(name: str, key: Path, crt: Path, ca_cert: Path, ca_key: Path) -> None:
    """A client certificate the Node authorizer accepts: O=system:nodes, CN=system:node:NAME."""
    csr, ext = key.with_suffix(".csr"), key.with_suffix(".ext")
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=clientAuth\n")
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(csr), "-subj", f"/O=system:nodes/CN=system:node:{name}"],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_cert),
                    "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(crt), "-days", "30",
                    "-extfile", str(ext)], check=True, capture_output=True)


def _pods_reach_apiserver(plane: ControlPlane) -> None:
    """The API server binds 127.0.0.1 and no kube-proxy runs: DNAT the `kubernetes` Service's
    ClusterIP to it, and let the pod bridge route to loopback (the kernel drops DNATed packets to
    127.0.0.0/8 otherwise). The bridge is created here so the sysctl can be set before any pod;
    the CNI bridge plugin adopts it."""
    port = _server_of(plane.kubeconfig).rsplit(":", 1)[1]
    _iptables_rule("nat", "PREROUTING", [
        "-d", f"{APISERVER_SERVICE_IP}/32", "-p", "tcp", "--dport", "443",
        "-m", "comment", "--comment", DNAT_COMMENT,
        "-j", "DNAT", "--to-destination", f"127.0.0.1:{port}"])
    shown = subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True, check=False)
    if shown.returncode != 0:
        subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)
    subprocess.run(["sysctl", "-qw", f"net.ipv4.conf.{BRIDGE}.route_localnet=1"], check=True)


def _iptables_rule(table: str, chain: str, rule: list[str]) -> None:
    if subprocess.run(["iptables", "-t", table, "-C", chain, *rule],
                      capture_output=True, check=False).returncode != 0:
        subprocess.run(["iptables", "-t", table, "-A", chain, *rule], check=True)


def _teardown(node: RealNode) -> None:
    """Stop by pid, in the order that lets each piece clean up after itself:

    1. pods deleted while the kubelet still runs (it does CNI DEL and unmounts their volumes);
    2. the kubelet; 3. containers, so their shims exit; 4. containerd, and any shim left;
    5. mounts under the state dir; 6. bridge, DNAT rule, CNI and kubelet chains; 7. sysctls;
    8. cgroups; 9. state dirs, keeping only the image store.
    """
    if node.kubeconfig.exists() and processes.alive(node.pids.get("kubelet", -1)):
        _delete_node_pods(node)
    processes.stop([p for n, p in node.pids.items() if n == "kubelet"], grace_seconds=10)
    if processes.alive(node.pids.get("containerd", -1)):
        _remove_containers(node)
    processes.stop([p for n, p in node.pids.items() if n == "containerd"], grace_seconds=10)
    _kill_leftover_shims(node.socket)
    node.pids.clear()
    _unmount_under(node.root)
    _unmount_under(node.store)
    _undo_network()
    for key, value in node.sysctls_before.items():
        subprocess.run(["sysctl", "-qw", f"{key}={value}"], capture_output=True, check=False)
    _remove_cgroups()
    _remove_state(node)


def _delete_node_pods(node: RealNode) -> None:
    try:
        api = k8s_config.new_client_from_config(config_file=str(node.kubeconfig))  # type: ignore[no-untyped-call]
    except Exception:
        return
    with api:
        core = k8s.CoreV1Api(api)
        try:
            pods = core.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={node.name}").items
            for pod in pods:
                meta: Any = pod.metadata
                with contextlib.suppress(ApiException):
                    core.delete_namespaced_pod(meta.name, meta.namespace,
                                               grace_period_seconds=1)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and core.list_pod_for_all_namespaces(
                    field_selector=f"spec.nodeName={node.name}", limit=1).items:
                time.sleep(0.5)
            with contextlib.suppress(ApiException):
                core.delete_node(node.name)
        except Exception:
            return


def _remove_containers(node: RealNode) -> None:
    tasks = node.ctr("tasks", "ls", "-q", check=False).stdout.split()
    for task in tasks:
        node.ctr("tasks", "kill", "-s", "KILL", task, check=False)
    if tasks:
        time.sleep(0.5)
    for container in node.ctr("containers", "ls", "-q", check=False).stdout.split():
        node.ctr("tasks", "delete", "-f", container, check=False)
        node.ctr("containers", "delete", container, check=False)


def _kill_leftover_shims(sock: Path) -> None:
    """A shim whose container could not be deleted outlives containerd: find ours by the
    containerd address on its command line."""
    needle = f"-address\0{sock}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), 9)
        except (OSError, ValueError):
            continue


def mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def _unmount_under(path: Path) -> None:
    for _ in range(3):
        points = sorted(mounts_under(path), reverse=True)
        if not points:
            return
        for point in points:
            if subprocess.run(["umount", point], capture_output=True, check=False).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _undo_network() -> None:
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
    rules = list(_our_rules())
    # Rules that jump to our chains or carry our comment first, then the chains themselves.
    for binary, table, rule in rules:
        if rule.startswith("-A "):
            subprocess.run([binary, "-t", table, *_split_rule("-D" + rule[2:])],
                           capture_output=True, check=False)
    for binary, table, rule in rules:
        if rule.startswith("-N "):
            for flag in ("-F", "-X"):
                subprocess.run([binary, "-t", table, flag, rule.split()[1]],
                               capture_output=True, check=False)


def iptables_leftovers() -> list[str]:
    """Rules or chains of ours still in the host's tables (the teardown test wants none)."""
    return [f"{binary} -t {table} {rule}" for binary, table, rule in _our_rules()]


def _our_rules() -> Iterator[tuple[str, str, str]]:
    """(binary, table, rule) of every rule and chain the real node's pieces add: the DNAT
    rule (by its comment), the CNI plugin's `CNI-*` and the kubelet's `KUBE-*` chains and the
    rules that jump to them. No kube-proxy runs on the test bed, so no one else owns those."""
    for binary in ("iptables", "ip6tables"):
        if shutil.which(binary) is None:
            continue
        for table in ("filter", "nat", "mangle"):
            listing = subprocess.run([binary, "-t", table, "-S"], capture_output=True,
                                     text=True, check=False).stdout.splitlines()
            for rule in listing:
                if rule.startswith(("-N CNI-", "-N KUBE-")) or (rule.startswith("-A ") and (
                        DNAT_COMMENT in rule or " -j CNI-" in rule or " -j KUBE-" in rule)):
                    yield binary, table, rule


def _split_rule(rule: str) -> list[str]:
    return shlex.split(rule)


CGROUP_TOPS: Final = ("kubepods", "k8s.io")


def cgroups_left() -> list[Path]:
    base = Path("/sys/fs/cgroup")
    found = []
    for hierarchy in base.iterdir() if base.exists() else []:
        for top in CGROUP_TOPS:
            if (hierarchy / top).is_dir():
                found.append(hierarchy / top)
    return found


def _remove_cgroups() -> None:
    for top in cgroups_left():
        for directory in sorted((p for p in top.rglob("*") if p.is_dir()),
                                key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def _remove_state(node: RealNode) -> None:
    logs = Path("/var/log/containers")
    if logs.is_dir():
        for link in logs.iterdir():
            if link.is_symlink() and str(os.readlink(link)).startswith(str(node.root)):
                link.unlink()
        with contextlib.suppress(OSError):
            logs.rmdir()
    for runc_state in (Path("/run/containerd/runc") / CONTAINERD_NAMESPACE,
                       Path("/run/containerd/s"), Path("/run/containerd/fifo")):
        shutil.rmtree(runc_state, ignore_errors=True)
    for directory in (Path("/run/containerd/runc"), Path("/run/containerd")):
        with contextlib.suppress(OSError):
            directory.rmdir()
    (KUBELET_FIXED_DIRS[0] / "kubelet.sock").unlink(missing_ok=True)
    for directory in KUBELET_FIXED_DIRS:
        with contextlib.suppress(OSError):
            directory.rmdir()
    # Keep the logs for a failing test to point at; drop the rest of the runtime state.
    keep = node.root.parent / (node.root.name + "-lastlogs")
    shutil.rmtree(keep, ignore_errors=True)
    if node.log_dir.exists():
        shutil.copytree(node.log_dir, keep, dirs_exist_ok=True)
    shutil.rmtree(node.root, ignore_errors=True)


def _sysctl(key: str) -> str:
    return subprocess.run(["sysctl", "-n", key], capture_output=True, text=True,
                          check=True).stdout.strip()


def _server_of(kubeconfig: Path) -> str:
    for line in kubeconfig.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("server:"):
            return stripped.split(":", 1)[1].strip()
    raise ControlPlaneError(f"no server in {kubeconfig}")


def _archive_refs(archive: Path) -> set[str]:
    """The RepoTags of a docker-archive (what `ctr import` names the image)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        if member is None:
            return set()
        manifest = json.load(member)
    return {tag if "/" in tag.split(":")[0] else f"docker.io/library/{tag}"
            for entry in manifest for tag in entry.get("RepoTags") or []}


# Taints the node lifecycle controller puts on a node that is not (yet) Ready. It takes them off
# on its next pass after the kubelet reports Ready (every 5 s), so a node can be Ready and still
# carry `not-ready:NoExecute` for a few seconds: pods placed then are refused or evicted.
LIFECYCLE_TAINTS = frozenset({"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"})


def _node_ready(core: k8s.CoreV1Api, name: str) -> bool:
    """Whether the node is Ready and the node lifecycle controller has seen it so."""
    try:
        node = core.read_node(name)
    except ApiException:
        return False
    status: Any = node.status
    conditions = {c.type: c.status for c in (status.conditions or [])}
    spec: Any = node.spec
    taints = {taint.key for taint in spec.taints or []}
    return conditions.get("Ready") == "True" and not taints & LIFECYCLE_TAINTS
