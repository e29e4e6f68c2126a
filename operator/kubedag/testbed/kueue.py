"""Real Kueue in the test bed: its manager run on the host, out of cluster, like the other parts.

The manager is built from the Go module proxy at ``KUEUE_VERSION`` (versions.env) by
``hack/build-cluster-bin.sh``, which also copies the release's CRDs and webhook manifests beside
the binary (``<bin_dir>/kueue-<version>/``), so what is applied always matches what runs.

Kueue is an admission-webhook server as much as a controller: its mutating webhook is what
suspends a queued Job at creation, and its CRDs convert between versions through the same server.
In a cluster those are reached through a Service; here the API server runs on the host, so the
webhooks are registered with ``clientConfig.url: https://127.0.0.1:<port>/<path>`` and the test
bed's CA as the bundle, and the manager serves a certificate from that CA
(:func:`kubedag.testbed.pki.ensure_serving_cert`). Kueue's own certificate management is off: it
would issue a certificate for a Service DNS name that a URL on 127.0.0.1 cannot match.

Only the webhooks of what this Kueue manages are registered (Kueue's own kinds and
``batch/v1`` Jobs), with upstream's failurePolicy (``Fail``). Upstream also registers webhooks for
Pods, Deployments and StatefulSets; with those integrations off they would do nothing here but
put every pod creation of every other test through Kueue. While Kueue runs, each Job creation
in the cluster goes through its webhook; a Job without the queue label is left alone
(``manageJobsWithoutQueueName: false``). :func:`stop_kueue` removes the webhook configurations
before it stops the manager, so a stopped Kueue never blocks Job creation.

Queues for a test: :func:`create_queues` (a ResourceFlavor, a ClusterQueue with quotas, a
LocalQueue in the test's namespace), :func:`delete_queues`; :func:`job_workload` finds the
Workload Kueue made for a Job.
"""

from __future__ import annotations

import base64
import copy
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final, cast

import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kubedag.testbed import processes
from kubedag.testbed.cluster import ControlPlane, ControlPlaneError, free_ports, wait_until
from kubedag.testbed.kubectl import apply, kubectl
from kubedag.testbed.pki import ensure_pki, ensure_serving_cert
from kubedag.testbed.versions import Versions

COMPONENT: Final = "kueue"  # key in plane.pids / plane.commands, and the log's name
NAMESPACE: Final = "kueue-system"  # Kueue's own namespace (it keeps nothing there when run so)
GROUP: Final = "kueue.x-k8s.io"
API_VERSION: Final = "v1beta2"
QUEUE_NAME_LABEL: Final = f"{GROUP}/queue-name"
PRIORITY_CLASS_LABEL: Final = f"{GROUP}/priority-class"
# The integrations this Kueue manages, and the (group, resource) whose webhooks they need.
FRAMEWORKS: Final = ("batch/job",)
_FRAMEWORK_RESOURCES: Final = {"batch/job": ("batch", "jobs")}
MUTATING_WEBHOOKS: Final = "kueue-mutating-webhook-configuration"
VALIDATING_WEBHOOKS: Final = "kueue-validating-webhook-configuration"
DEFAULT_FLAVOR: Final = "default-flavor"
GPU: Final = "nvidia.com/gpu"
# Read by the build's one-line change to Kueue's main.go (see hack/build-cluster-bin.sh).
_METRICS_CERT_ENV: Final = "KUEUE_METRICS_CERT_DIR"
# The probe that proves the API server reaches the webhook: a dry-run Job with the queue label
# comes back suspended only if Kueue's mutating webhook ran.
_PROBE_NAMESPACE: Final = "default"


@dataclass(frozen=True)
class KueueHandle:
    """What :func:`start_kueue` started: the manager process and where it serves."""

    pid: int
    version: str
    log: Path
    config_file: Path
    webhook_url: str  # https://127.0.0.1:<port>; the webhook configurations point here
    health_url: str  # http://127.0.0.1:<port>, /healthz and /readyz
    metrics_url: str  # https://127.0.0.1:<port>/metrics (authenticated, as upstream)
    namespace: str = NAMESPACE
    frameworks: tuple[str, ...] = FRAMEWORKS


@dataclass(frozen=True)
class Queues:
    """A ClusterQueue and the LocalQueue that feeds it, as :func:`create_queues` made them.

    A Job joins by the label ``{QUEUE_NAME_LABEL}: {local_queue}`` in ``namespace``.
    """

    namespace: str
    local_queue: str
    cluster_queue: str
    flavor: str
    cohort: str | None


def kueue_dir(plane: ControlPlane) -> Path:
    """The built manager with its release's CRDs and webhook manifests."""
    return plane.bin_dir / f"kueue-{Versions.pinned().kueue}"


def start_kueue(plane: ControlPlane, *, timeout_seconds: float = 60.0) -> KueueHandle:
    """Install Kueue's CRDs, start its manager on the host and register its webhooks.

    Returns once the CRDs are Established, the manager is ready and the API server has been seen
    calling its mutating webhook. Idempotent: a second call replaces the running manager. Raises
    ControlPlaneError naming the manager's log when it does not come up.
    """
    if plane.existing_cluster:
        raise ControlPlaneError(
            "the test bed runs Kueue only beside its own control plane: the webhooks it serves on "
            "127.0.0.1 cannot be reached from another cluster's API server. Install Kueue in that "
            "cluster instead (https://kueue.sigs.k8s.io/docs/installation/).")
    folder = kueue_dir(plane)
    binary = folder / "kueue"
    if not binary.is_file():
        raise FileNotFoundError(
            f"{binary} is missing. Run `make cluster-bin` (hack/build-cluster-bin.sh builds Kueue "
            "at KUEUE_VERSION from versions.env).")
    stop_kueue(plane)
    pki = ensure_pki()
    certs = ensure_serving_cert(pki, COMPONENT)
    ca_bundle = base64.b64encode(pki.ca_cert.read_bytes()).decode()
    webhook_port, health_port, metrics_port = free_ports(3)
    webhook_url = f"https://127.0.0.1:{webhook_port}"

    apply(plane, [_namespace()], COMPONENT)
    crds = crd_manifests(folder, webhook_url, ca_bundle)
    apply(plane, crds, COMPONENT)
    names = [crd["metadata"]["name"] for crd in crds]
    kubectl(plane, "wait", "--for=condition=Established", "--timeout=30s",
            *(f"crd/{name}" for name in names))

    work = plane.run_dir / COMPONENT
    work.mkdir(parents=True, exist_ok=True)
    config_file = work / "config.yaml"
    config_file.write_text(yaml.safe_dump(_configuration(
        webhook_port=webhook_port, health_port=health_port, metrics_port=metrics_port,
        cert_dir=certs), sort_keys=False))
    log = plane.log_dir / f"{COMPONENT}.log"
    # Through env(1), which execs the manager (same pid), so that the command in plane.commands
    # is complete and plane.restart_component("kueue") starts it again as it was.
    args = ["env", f"{_METRICS_CERT_ENV}={certs}", str(binary), f"--config={config_file}",
            f"--kubeconfig={plane.kubeconfig}", "--zap-log-level=info"]
    plane.commands[COMPONENT] = args
    pid = processes.spawn(args, log, tie_to_parent=plane.tie_to_parent)
    plane.pids[COMPONENT] = pid
    health_url = f"http://127.0.0.1:{health_port}"
    try:
        _wait_serving(pid, f"{health_url}/readyz", timeout_seconds, log)
        apply(plane, webhook_configurations(folder, webhook_url, ca_bundle), COMPONENT)
        with plane.api_client() as api:
            wait_until(lambda: _webhook_suspends(api), timeout_seconds,
                       "the API server to call Kueue's mutating webhook", log)
    except BaseException:
        stop_kueue(plane)
        raise
    return KueueHandle(pid=pid, version=Versions.pinned().kueue, log=log, config_file=config_file,
                       webhook_url=webhook_url, health_url=health_url,
                       metrics_url=f"https://127.0.0.1:{metrics_port}/metrics")


def stop_kueue(plane: ControlPlane) -> None:
    """Unregister Kueue's webhooks, then stop the manager (CRDs and queues stay).

    In that order: with failurePolicy Fail, a registered webhook whose server is gone would
    refuse every Job creation in the cluster.
    """
    pid = plane.pids.pop(COMPONENT, None)
    if pid is None:
        return
    try:
        for kind, name in (("mutatingwebhookconfiguration", MUTATING_WEBHOOKS),
                           ("validatingwebhookconfiguration", VALIDATING_WEBHOOKS)):
            kubectl(plane, "delete", kind, name, "--ignore-not-found")
    finally:
        processes.stop([pid])


def crd_manifests(folder: Path, webhook_url: str, ca_bundle: str) -> list[dict[str, Any]]:
    """The release's CRDs, with conversion through the webhook where upstream's kustomization
    enables it (the patches it lists), pointed at ``webhook_url``."""
    crd_dir = folder / "crd"
    kustomization = yaml.safe_load((crd_dir / "kustomization.yaml").read_text())
    crds = {doc["metadata"]["name"]: doc for doc in _documents(crd_dir / "bases")}
    for entry in kustomization.get("patches") or []:
        patch = yaml.safe_load((crd_dir / entry["path"]).read_text())
        conversion = copy.deepcopy(patch.get("spec", {}).get("conversion"))
        if not conversion or conversion.get("strategy") != "Webhook":
            continue
        client_config = conversion["webhook"]["clientConfig"]
        conversion["webhook"]["clientConfig"] = {
            "url": webhook_url + client_config["service"]["path"], "caBundle": ca_bundle}
        crds[patch["metadata"]["name"]]["spec"]["conversion"] = conversion
    return list(crds.values())


def webhook_configurations(folder: Path, webhook_url: str,
                           ca_bundle: str) -> list[dict[str, Any]]:
    """Upstream's webhook configurations, for Kueue's kinds and :data:`FRAMEWORKS` only, called
    at ``webhook_url`` (failurePolicy, rules and selectors as upstream)."""
    allowed = {_FRAMEWORK_RESOURCES[f] for f in FRAMEWORKS}
    names = {"MutatingWebhookConfiguration": MUTATING_WEBHOOKS,
             "ValidatingWebhookConfiguration": VALIDATING_WEBHOOKS}
    configurations = []
    for doc in yaml.safe_load_all((folder / "webhook" / "manifests.yaml").read_text()):
        if not doc:
            continue
        kept = []
        for webhook in doc["webhooks"]:
            targets = {(group, resource) for rule in webhook["rules"]
                       for group in rule["apiGroups"] for resource in rule["resources"]}
            if all(group == GROUP or (group, resource) in allowed
                   for group, resource in targets):
                path = webhook["clientConfig"]["service"]["path"]
                kept.append({**webhook,
                             "clientConfig": {"url": webhook_url + path, "caBundle": ca_bundle}})
        configurations.append({"apiVersion": doc["apiVersion"], "kind": doc["kind"],
                               "metadata": {"name": names[doc["kind"]]}, "webhooks": kept})
    return configurations


def create_queues(
    api: k8s.ApiClient,
    namespace: str,
    name: str,
    *,
    gpus: int,
    cohort: str | None = None,
    cpu: str = "64",
    memory: str = "256Gi",
    gpu_borrowing_limit: int | None = None,
    flavor: str = DEFAULT_FLAVOR,
) -> Queues:
    """A ClusterQueue ``name`` with nominal quotas for cpu, memory and :data:`GPU` (``gpus``) in
    flavor ``flavor`` (created if missing, with no node labels: pods land where the scheduler
    puts them), optionally in ``cohort``, and a LocalQueue ``name`` in ``namespace`` feeding it.

    ClusterQueues are cluster-wide: give each test its own ``name`` (and cohort) and delete them
    with :func:`delete_queues`. Returns once both queues report Active, i.e. Kueue will admit
    through them.
    """
    custom = k8s.CustomObjectsApi(api)
    try:
        custom.create_cluster_custom_object(GROUP, API_VERSION, "resourceflavors", {
            "apiVersion": f"{GROUP}/{API_VERSION}", "kind": "ResourceFlavor",
            "metadata": {"name": flavor}})
    except ApiException as error:
        if error.status != 409:
            raise
    gpu_quota: dict[str, Any] = {"name": GPU, "nominalQuota": gpus}
    if gpu_borrowing_limit is not None:
        gpu_quota["borrowingLimit"] = gpu_borrowing_limit
    spec: dict[str, Any] = {
        "namespaceSelector": {},  # every namespace; upstream's default selects none
        "resourceGroups": [{
            "coveredResources": ["cpu", "memory", GPU],
            "flavors": [{"name": flavor, "resources": [
                {"name": "cpu", "nominalQuota": cpu},
                {"name": "memory", "nominalQuota": memory},
                gpu_quota,
            ]}],
        }],
    }
    if cohort is not None:
        spec["cohortName"] = cohort
    custom.create_cluster_custom_object(GROUP, API_VERSION, "clusterqueues", {
        "apiVersion": f"{GROUP}/{API_VERSION}", "kind": "ClusterQueue",
        "metadata": {"name": name}, "spec": spec})
    custom.create_namespaced_custom_object(GROUP, API_VERSION, namespace, "localqueues", {
        "apiVersion": f"{GROUP}/{API_VERSION}", "kind": "LocalQueue",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterQueue": name}})
    queues = Queues(namespace=namespace, local_queue=name, cluster_queue=name, flavor=flavor,
                    cohort=cohort)
    deadline = time.monotonic() + 30
    while not _queues_active(custom, queues):
        if time.monotonic() > deadline:
            raise TimeoutError(f"Kueue did not make ClusterQueue/LocalQueue {name} Active in 30 s")
        time.sleep(0.1)
    return queues


def delete_queues(api: k8s.ApiClient, queues: Queues) -> None:
    """Delete the LocalQueue and the ClusterQueue (not waiting: Kueue drops the ClusterQueue's
    finalizer once no admitted Workload uses it)."""
    custom = k8s.CustomObjectsApi(api)
    for delete in (
        partial(custom.delete_namespaced_custom_object,
                GROUP, API_VERSION, queues.namespace, "localqueues", queues.local_queue),
        partial(custom.delete_cluster_custom_object,
                GROUP, API_VERSION, "clusterqueues", queues.cluster_queue),
    ):
        try:
            delete()
        except ApiException as error:
            if error.status != 404:
                raise


def job_workload(api: k8s.ApiClient, namespace: str, job_name: str) -> dict[str, Any] | None:
    """The Workload Kueue created for Job ``job_name`` (owned by it), or None while there is
    none."""
    listed = k8s.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, API_VERSION, namespace, "workloads")
    for workload in cast(dict[str, Any], listed)["items"]:
        owners = workload["metadata"].get("ownerReferences") or []
        if any(o.get("kind") == "Job" and o.get("name") == job_name for o in owners):
            return cast(dict[str, Any], workload)
    return None


def condition(obj: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    """The status condition of type ``kind`` (QuotaReserved, Admitted, Finished, Active …)."""
    for entry in (obj.get("status") or {}).get("conditions") or []:
        if entry.get("type") == kind:
            return cast(dict[str, Any], entry)
    return None


def _queues_active(custom: k8s.CustomObjectsApi, queues: Queues) -> bool:
    cluster_queue = custom.get_cluster_custom_object(
        GROUP, API_VERSION, "clusterqueues", queues.cluster_queue)
    local_queue = custom.get_namespaced_custom_object(
        GROUP, API_VERSION, queues.namespace, "localqueues", queues.local_queue)
    return all((condition(cast(dict[str, Any], obj), "Active") or {}).get("status") == "True"
               for obj in (cluster_queue, local_queue))


def _configuration(*, webhook_port: int, health_port: int, metrics_port: int,
                   cert_dir: Path) -> dict[str, Any]:
    """Kueue's Configuration for a manager on the host (config.kueue.x-k8s.io/v1beta2)."""
    return {
        "apiVersion": f"config.{GROUP}/{API_VERSION}",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "manageJobsWithoutQueueName": False,
        "internalCertManagement": {"enable": False},
        "leaderElection": {"leaderElect": False},
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": f"127.0.0.1:{metrics_port}"},
        "clientConnection": {"qps": 200, "burst": 400},
        "integrations": {"frameworks": list(FRAMEWORKS)},
        # The visibility API server reads its certificate from a fixed path (/visibility) and
        # would need an APIService; nothing here uses it.
        "featureGates": {"VisibilityOnDemand": False},
    }


def _namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}


def _documents(folder: Path) -> Iterator[dict[str, Any]]:
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield cast(dict[str, Any], doc)


def _wait_serving(pid: int, readyz: str, timeout: float, log: Path) -> None:
    def ready() -> bool:
        if not processes.alive(pid):
            raise ControlPlaneError(f"{COMPONENT} exited; log: {log}\n--- last lines ---\n"
                                    f"{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(readyz, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"{COMPONENT} not ready in {timeout:.0f} s; log: {log}\n"
                                    f"--- last lines ---\n"
                                    f"{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


def _webhook_suspends(api: k8s.ApiClient) -> bool:
    """Dry-run create a running Job with the queue label: it comes back suspended only if the
    API server called Kueue's mutating webhook (a webhook configuration takes a moment to reach
    the API server, so a dry run that merely succeeds proves nothing)."""
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"generateName": "kueue-webhook-probe-",
                     "labels": {QUEUE_NAME_LABEL: "kueue-webhook-probe"}},
        "spec": {"suspend": False, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "probe", "image": "kubedag.local/pause"}]}}},
    }
    created = k8s.BatchV1Api(api).create_namespaced_job(
        _PROBE_NAMESPACE, cast(k8s.V1Job, job), dry_run="All")
    return created.spec is not None and bool(created.spec.suspend)
