"""kubedag for real: the chart's operator in-cluster, stage pods in real containers on the test
bed's real node, files through a real workspace, real failures with stable reasons."""

from __future__ import annotations

import json
import math
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kubedag.testbed.claims import copy_into_claim, create_claim
from kubedag.testbed.pki import ensure_pki
from tests.integration.chart_support import ensure_prometheus
from tests.integration.operator_process import free_port
from tests.integration.realnode_operator import (
    FULLNAME,
    SYSTEM_NAMESPACE,
    WORK_NAMESPACE,
    WORKER_IMAGE,
    WORKER_SERVICE_ACCOUNT,
    InstalledOperator,
    real_pipeline,
)
from tests.integration.realnode_support import RealNodeHandle
from tests.integration.runs import FINISHED, create_run, event_messages, get_run, patch_run
from tests.integration.support import Cluster, wait_for
from tests.integration.test_metrics_prometheus import Prometheus, _ready
from tests.unit.worker.test_documents_pipeline import EXPECTED_TEXT

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = REPO / "examples" / "documents"
MIB = 2**20
# A claim per run from the default StorageClass (the test bed's local-path provisioner).
SMALL_WORKSPACE = {"volumeClaimTemplate": {"spec": {
    "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}}}}


def run_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def start(cluster: Cluster, name: str, spec: dict[str, Any]) -> str:
    create_run(cluster, WORK_NAMESPACE, name, spec)
    return name


def finish(cluster: Cluster, name: str, timeout: float = 180) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run = get_run(cluster, WORK_NAMESPACE, name)
        return run if (run.get("status") or {}).get("phase") in FINISHED else None
    return wait_for(done, timeout=timeout, what=f"run {name} to finish")


def stage_of(run: dict[str, Any], stage: str) -> dict[str, Any]:
    stages: dict[str, Any] = run["status"]["stages"]
    return stages[stage]


def pods_of(cluster: Cluster, run: str, stage: str | None = None) -> list[k8s.V1Pod]:
    selector = f"kubedag.io/run={run}" + (f",kubedag.io/stage={stage}" if stage else "")
    pods: list[k8s.V1Pod] = cluster.core.list_namespaced_pod(
        WORK_NAMESPACE, label_selector=selector).items
    return pods


def running_pod(cluster: Cluster, run: str, stage: str) -> k8s.V1Pod:
    """Wait until the stage's pod is Running (its container started) and return it."""
    def probe() -> k8s.V1Pod | None:
        pods = [p for p in pods_of(cluster, run, stage) if p.status.phase == "Running"]
        return pods[0] if pods else None
    return wait_for(probe, timeout=90, what=f"a Running pod of stage {stage}")


def worker_stage(name: str, script: str, **fields: Any) -> dict[str, Any]:
    """A stage running a shell command through the worker (so usage and outputs are reported)."""
    return {"name": name, "image": WORKER_IMAGE,
            "command": ["kubedag-worker", "run", "--", "sh", "-c", script], **fields}


def command_stage(name: str, script: str, **fields: Any) -> dict[str, Any]:
    """A stage running a plain shell command in the worker image (no worker around it)."""
    return {"name": name, "image": WORKER_IMAGE, "command": ["sh", "-c", script], **fields}


# --- the operator in-cluster ---------------------------------------------------------------------


def test_operator_runs_in_cluster_under_the_charts_account(
        cluster: Cluster, installed: InstalledOperator, real_node: RealNodeHandle) -> None:
    pod = installed.pod()
    assert pod.spec.node_name == real_node.name
    assert pod.spec.service_account_name == "kd-kubedag"
    container = pod.status.container_statuses[0]
    assert container.ready and container.restart_count == 0
    # The liveness endpoint and the metrics endpoint answer on the pod's own address.
    assert installed.http_get(8081, "/healthz")
    assert "kubedag_reconcile_duration_seconds" in installed.http_get(8080, "/metrics")


def test_prometheus_scrapes_the_operator_through_its_service(
        cluster: Cluster, installed: InstalledOperator, tmp_path: Path) -> None:
    """Service discovery as a cluster's Prometheus does it: the metrics Service's endpoints
    (the operator pod's address on the real node), found through the API server."""
    binary, _ = ensure_prometheus()
    pki = ensure_pki()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    server_url = next(line.split("server:", 1)[1].strip()
                      for line in cluster.kubeconfig.read_text().splitlines()
                      if "server:" in line)
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{
            "job_name": "kubedag-operator",
            "kubernetes_sd_configs": [{
                "role": "endpoints", "api_server": server_url,
                "namespaces": {"names": [SYSTEM_NAMESPACE]},
                "tls_config": {"ca_file": str(pki.ca_cert), "cert_file": str(pki.admin_cert),
                               "key_file": str(pki.admin_key)},
            }],
            "relabel_configs": [
                {"source_labels": ["__meta_kubernetes_service_name"],
                 "regex": f"{FULLNAME}-metrics", "action": "keep"},
                {"source_labels": ["__meta_kubernetes_endpoint_port_name"],
                 "regex": "metrics", "action": "keep"},
            ],
        }],
    }))
    log = cluster.plane.log_dir / "prometheus-incluster.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_for(lambda: _ready(server), timeout=30, what=f"prometheus ready (log: {log})")

        def scraped() -> list[dict[str, Any]] | None:
            result: list[dict[str, Any]] = server.get(
                "/api/v1/query", query='kubedag_reconcile_duration_seconds_count'
                '{job="kubedag-operator"}')["data"]["result"]
            return result or None
        result = wait_for(scraped, timeout=60, what=f"a scrape through the Service ({log})")
        pod = installed.pod()
        assert result[0]["metric"]["instance"] == f"{pod.status.pod_ip}:8080"
        up = server.get("/api/v1/query", query='up{job="kubedag-operator"}')["data"]["result"]
        assert [r["value"][1] for r in up] == ["1"]
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- workspaces and the document pipeline ---------------------------------------------------------


def _document_pipeline(real_node: RealNodeHandle, chunk_size: int, overlap: int,
                       documents: list[str]) -> dict[str, Any]:
    processors = "kubedag.worker.processors.documents"
    small = {"cpu": "100m", "memory": "128Mi"}
    return real_pipeline(real_node, [
        {"name": "validate", "processor": f"{processors}:validate", "resources": small},
        {"name": "extract", "processor": f"{processors}:extract", "dependsOn": ["validate"],
         "fanOut": {"items": documents, "batchSize": 2, "parallelism": 2},
         "resources": small},
        {"name": "normalize", "processor": f"{processors}:normalize",
         "dependsOn": ["extract"], "resources": small},
        {"name": "chunk", "processor": f"{processors}:chunk", "dependsOn": ["normalize"],
         "resources": small},
        {"name": "aggregate", "processor": f"{processors}:aggregate", "dependsOn": ["chunk"],
         "resources": small},
    ], params=[{"name": "inputDir", "type": "string", "default": "input"},
               {"name": "chunkSize", "type": "int", "default": chunk_size},
               {"name": "chunkOverlap", "type": "int", "default": overlap}])


def test_document_pipeline_in_real_pods_through_an_existing_claim(
        cluster: Cluster, installed: InstalledOperator, real_node: RealNodeHandle) -> None:
    claim = run_name("docs")
    create_claim(cluster.api_client, WORK_NAMESPACE, claim)
    files = sorted(DOCUMENTS.iterdir())
    copy_into_claim(cluster.plane, WORK_NAMESPACE, claim, files, "input",
                    real_node.pod_placement())
    chunk_size, overlap = 40, 10
    name = start(cluster, run_name("documents"), {
        "pipelineSpec": _document_pipeline(real_node, chunk_size, overlap,
                                           sorted(p.name for p in files)),
        "workspace": {"persistentVolumeClaim": {"claimName": claim}},
    })
    began = time.monotonic()
    progress_seen: set[float] = set()

    def done() -> dict[str, Any] | None:
        run = get_run(cluster, WORK_NAMESPACE, name)
        for stage in ((run.get("status") or {}).get("stages") or {}).values():
            if stage.get("progress") is not None:
                progress_seen.add(stage["progress"])
        return run if (run.get("status") or {}).get("phase") in FINISHED else None
    run = wait_for(done, timeout=240, what="the document pipeline")
    wall = time.monotonic() - began
    print(f"\ndocument pipeline on the real node: {wall:.1f} s")
    assert run["status"]["phase"] == "Succeeded", json.dumps(run["status"], indent=1)

    # Counted here, independently of the processors: words and chunk windows of each text.
    words = sum(len(text.split()) for text in EXPECTED_TEXT.values())
    chunks = sum(max(1, math.ceil((len(t) - overlap) / (chunk_size - overlap)))
                 for t in EXPECTED_TEXT.values())
    suffixes = sorted(Path(n).suffix.lstrip(".") for n in EXPECTED_TEXT)
    summary = stage_of(run, "aggregate")["outputs"]
    assert summary["documents"] == len(files) == len(EXPECTED_TEXT)
    assert summary["words"] == words
    assert summary["chunks"] == chunks
    assert summary["types"] == {s: suffixes.count(s) for s in suffixes}
    assert summary["rejected"] == 0 and summary["failed"] == 0
    assert stage_of(run, "validate")["outputs"]["accepted"] == len(files)
    assert stage_of(run, "extract")["fanOut"] == {"succeeded": 2, "failed": 0, "total": 2}
    # Real usage came back from real pods.
    assert stage_of(run, "validate")["usage"]["peakRssBytes"] > 5 * MIB
    # Every stage pod ran on the real node with the claim at /workspace, and its worker
    # published progress on its own pod (through the admission policy).
    pods = pods_of(cluster, name)
    assert len(pods) == 6
    for pod in pods:
        assert "kubedag.io/progress" in (pod.metadata.annotations or {}), pod.metadata.name
        assert pod.spec.node_name == real_node.name
        mounts = {m.mount_path: m.name for m in pod.spec.containers[0].volume_mounts}
        volumes = {v.name: v for v in pod.spec.volumes}
        claim_ref = volumes[mounts["/workspace"]].persistent_volume_claim
        assert claim_ref is not None and claim_ref.claim_name == claim


def test_a_volume_claim_template_gives_each_run_its_own_claim_shared_by_fan_out(
        cluster: Cluster, installed: InstalledOperator, real_node: RealNodeHandle) -> None:
    name = start(cluster, run_name("ws"), {
        "pipelineSpec": real_pipeline(real_node, [
            command_stage("write", "mkdir -p /workspace/in && for i in 1 2 3 4; do "
                          "echo item-$i > /workspace/in/$i; done"),
            command_stage("read", "grep -q item- /workspace/in/$$((JOB_COMPLETION_INDEX + 1))"
                          " && echo seen > /workspace/seen-$JOB_COMPLETION_INDEX",
                          dependsOn=["write"],
                          fanOut={"items": ["1", "2", "3", "4"], "batchSize": 1,
                                  "parallelism": 4}),
            command_stage("count", "test $$(ls /workspace/seen-* | wc -l) = 4",
                          dependsOn=["read"]),
        ]),
        "workspace": {"volumeClaimTemplate": {"spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "64Mi"}}}}},
    })
    run = finish(cluster, name)
    assert run["status"]["phase"] == "Succeeded", json.dumps(run["status"], indent=1)
    claims = cluster.core.list_namespaced_persistent_volume_claim(WORK_NAMESPACE).items
    mine = [c for c in claims if any(o.uid == run["metadata"]["uid"]
                                     for o in c.metadata.owner_references or [])]
    assert len(mine) == 1 and mine[0].status.phase == "Bound"
    # Deleted with the run (garbage collection through the ownerReference).
    cluster.custom.delete_namespaced_custom_object("kubedag.io", "v1alpha1", WORK_NAMESPACE,
                                                   "pipelineruns", name)

    def claim_gone() -> bool:
        try:
            pvc = cluster.core.read_namespaced_persistent_volume_claim(
                mine[0].metadata.name, WORK_NAMESPACE)
        except ApiException as error:
            return error.status == 404
        return pvc.metadata.deletion_timestamp is not None
    wait_for(claim_gone, timeout=60, what="the run's claim to be deleted with it")


# --- real failures, each with a stable reason -----------------------------------------------------


def _failed(run: dict[str, Any], stage: str) -> dict[str, Any]:
    checkpoint = stage_of(run, stage)
    assert checkpoint["phase"] == "Failed", checkpoint
    return checkpoint


def _failure_reported(cluster: Cluster, installed: InstalledOperator, run: dict[str, Any],
                      stage: str, reason: str) -> dict[str, Any]:
    """The stage Failed with ``reason``, and said so everywhere tools look: its checkpoint, a
    StageFailed Event naming the reason, and the failures metric under that reason."""
    checkpoint = _failed(run, stage)
    assert checkpoint["reason"] == reason, checkpoint
    assert checkpoint.get("message"), checkpoint
    name = run["metadata"]["name"]
    wait_for(lambda: any(f"({reason})" in m for m in event_messages(
        cluster, WORK_NAMESPACE, name, "StageFailed")), timeout=30,
        what=f"a StageFailed Event naming {reason}")
    assert _failure_metric(installed, reason) >= 1
    return checkpoint


def _failure_metric(installed: InstalledOperator, reason: str) -> float:
    text = installed.http_get(8080, "/metrics")
    total = 0.0
    for line in text.splitlines():
        if line.startswith("kubedag_stage_failures_total{") and f'reason="{reason}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_exit_codes_retryable_then_permanent(
        cluster: Cluster, installed: InstalledOperator, real_node: RealNodeHandle) -> None:
    name = start(cluster, run_name("exits"), {"pipelineSpec": real_pipeline(real_node, [
        # Fails with the retryable code once, then succeeds: the workspace remembers.
        worker_stage("flaky", "if [ -f /workspace/once ]; then exit 0; fi; "
                     "touch /workspace/once; exit 75",
                     retry={"limit": 2, "initialDelaySeconds": 1}),
        worker_stage("permanent", "echo bad input >&2; exit 65", dependsOn=["flaky"],
                     retry={"limit": 2, "initialDelaySeconds": 1}),
    ]), "workspace": SMALL_WORKSPACE})
    run = finish(cluster, name)
    assert stage_of(run, "flaky")["phase"] == "Succeeded"
    assert stage_of(run, "flaky")["attempts"] == 2
    permanent = _failure_reported(cluster, installed, run, "permanent", "ExitCode")
    assert permanent["attempts"] == 1  # 65 is permanent: no retry
    assert permanent["exitCode"] == 65
    assert run["status"]["phase"] == "Failed"


def test_a_processor_over_its_memory_limit_is_oom_killed(
        cluster: Cluster, installed: InstalledOperator, real_node: RealNodeHandle) -> None:
    name = start(cluster, run_name("oom"), {"pipelineSpec": real_pipeline(real_node, [
        worker_stage("hog", "python3 -c 'b = bytearray(400 * 2**20); b[::4096] = b\"x\" * "
                     "(len(b) // 4096)'", resources={"memory": "128Mi"}),
    ])})
    run = finish(cluster, name)
    _failure_reported(cluster, installed, run, "hog", "OOMKilled")


def test_a_stage_timeout_is_deadline_exceeded(
        cluster: Cluster, installed: InstalledOperator, real_node: RealNodeHandle) -> None:
    name = start(cluster, run_name("slow"), {"pipelineSpec": real_pipeline(real_node, [
        worker_stage("slow", "sleep 300", timeoutSeconds=3),
    ])})
    run = finish(cluster, name, timeout=90)
    _failure_reported(cluster, installed, run, "slow", "DeadlineExceeded")


def test_a_missing_image_fails_after_the_grace_period(
        cluster: Cluster, installed: InstalledOperator, real_node: RealNodeHandle) -> None:
    name = start(cluster, run_name("noimage"), {"pipelineSpec": real_pipeline(real_node, [
        {"name": "ghost", "image": "kubedag.local/does-not-exist:1", "command": ["true"]},
    ])})
    run = finish(cluster, name, timeout=120)
    ghost = _failure_reported(cluster, installed, run, "ghost", "ImagePullFailed")
    assert "does-not-exist" in ghost["message"]
    assert ghost["attempts"] == 1  # not retried: the same spec would fail the same way


def test_a_missing_secret_is_a_container_config_error(
        cluster: Cluster, installed: InstalledOperator, real_node: RealNodeHandle) -> None:
    name = start(cluster, run_name("nosecret"), {"pipelineSpec": real_pipeline(real_node, [
        command_stage("needs-secret", "true", env=[
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "no-such-secret",
                                                            "key": "token"}}}]),
    ])})
    run = finish(cluster, name, timeout=120)
    stage = _failure_reported(cluster, installed, run, "needs-secret", "ContainerConfigError")
    assert "no-such-secret" in stage["message"]


def test_a_pod_deleted_mid_stage_is_retried(
        cluster: Cluster, installed: InstalledOperator, real_node: RealNodeHandle) -> None:
    name = start(cluster, run_name("lost"), {"pipelineSpec": real_pipeline(real_node, [
        worker_stage("victim", "if [ -f /workspace/again ]; then exit 0; fi; "
                     "touch /workspace/again; sleep 300",
                     retry={"limit": 1, "initialDelaySeconds": 1}),
    ]), "workspace": SMALL_WORKSPACE})
    pod = running_pod(cluster, name, "victim")
    time.sleep(1)
    cluster.core.delete_namespaced_pod(pod.metadata.name, WORK_NAMESPACE)
    run = finish(cluster, name)
    victim = stage_of(run, "victim")
    assert victim["phase"] == "Succeeded" and victim["attempts"] == 2, victim
    wait_for(lambda: any("PodLost" in m for m in event_messages(
        cluster, WORK_NAMESPACE, name, "StageRetrying")), timeout=30,
        what="a StageRetrying Event naming PodLost")


def test_cancel_sends_sigterm_and_the_worker_exits_within_its_grace(
        cluster: Cluster, installed: InstalledOperator, real_node: RealNodeHandle) -> None:
    name = start(cluster, run_name("cancel"), {"pipelineSpec": real_pipeline(real_node, [
        worker_stage("long", "sleep 300"),
        worker_stage("after", "true", dependsOn=["long"]),
    ])})
    pod = running_pod(cluster, name, "long")
    grace = pod.spec.termination_grace_period_seconds
    cancelled_at = time.monotonic()
    patch_run(cluster, WORK_NAMESPACE, name, {"cancel": True})

    def pod_gone() -> bool:
        try:
            cluster.core.read_namespaced_pod(pod.metadata.name, WORK_NAMESPACE)
        except ApiException as error:
            return error.status == 404
        return False
    wait_for(pod_gone, timeout=grace + 30, what="the cancelled pod to go")
    took = time.monotonic() - cancelled_at
    assert took < grace, f"the worker took {took:.1f} s to stop (grace {grace} s): SIGKILLed"
    run = finish(cluster, name)
    assert run["status"]["phase"] == "Cancelled"
    assert stage_of(run, "long")["phase"] == "Cancelled"
    after = stage_of(run, "after")
    assert (after["phase"], after["reason"]) == ("Skipped", "RunCancelled"), after


# --- least privilege on real pods -----------------------------------------------------------------

PATCH_PROBE = r"""
import json, os, ssl, sys, urllib.request, urllib.error
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(sa + "/token").read()
ctx = ssl.create_default_context(cafile=sa + "/ca.crt")
ns, me, other = os.environ["KUBEDAG_NAMESPACE"], os.environ["KUBEDAG_POD_NAME"], sys.argv[1]
def patch(pod, body):
    request = urllib.request.Request(
        f"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}"
        f"/api/v1/namespaces/{ns}/pods/{pod}", data=json.dumps(body).encode(), method="PATCH",
        headers={"Authorization": "Bearer " + token,
                 "Content-Type": "application/merge-patch+json"})
    try:
        with urllib.request.urlopen(request, context=ctx, timeout=10) as response:
            return response.status, ""
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()).get("message", "")
progress = {"metadata": {"annotations": {"kubedag.io/progress": '{"fraction":0.5}'}}}
results = {
    "own-progress": patch(me, progress),
    "other-progress": patch(other, progress),
    "own-label": patch(me, {"metadata": {"labels": {"evil": "yes"}}}),
    "own-other-annotation": patch(me, {"metadata": {"annotations": {"evil": "yes"}}}),
}
print("RESULTS " + json.dumps(results))
"""


def test_stage_pods_pass_restricted_and_may_patch_only_their_own_progress(
        cluster: Cluster, installed: InstalledOperator, real_node: RealNodeHandle) -> None:
    target = run_name("bystander")
    placement = real_node.pod_placement()
    cluster.core.create_namespaced_pod(WORK_NAMESPACE, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": target},
        "spec": {**placement, "restartPolicy": "Never",
                 "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                     "seccompProfile": {"type": "RuntimeDefault"}},
                 "containers": [{"name": "c", "image": "kubedag.local/busybox:1.35",
                                 "imagePullPolicy": "Never", "command": ["sleep", "60"],
                                 "securityContext": {"allowPrivilegeEscalation": False,
                                                     "capabilities": {"drop": ["ALL"]}}}]}})
    name = start(cluster, run_name("probe"), {"pipelineSpec": real_pipeline(real_node, [
        {"name": "probe", "image": WORKER_IMAGE,
         "command": ["python3", "-c", PATCH_PROBE, target]},
    ])})
    run = finish(cluster, name)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    pod = pods_of(cluster, name, "probe")[0]
    assert pod.spec.service_account_name == WORKER_SERVICE_ACCOUNT
    assert pod.spec.security_context.run_as_non_root is True
    logs = cluster.kubectl("logs", "-n", WORK_NAMESPACE, pod.metadata.name).stdout
    results = json.loads(logs.split("RESULTS ", 1)[1])
    assert results["own-progress"][0] == 200, results
    for refused in ("other-progress", "own-label", "own-other-annotation"):
        assert results[refused][0] == 403, (refused, results)
    assert "own pod" in results["other-progress"][1] or "pod-name" in results[
        "other-progress"][1], results
    cluster.core.delete_namespaced_pod(target, WORK_NAMESPACE, grace_period_seconds=0)


RUNTIME_BUDGET = 24 * MIB  # the worker's own peak RSS with TLS set up: 20.3 MiB measured


def test_reported_usage_is_real(cluster: Cluster, installed: InstalledOperator,
                                real_node: RealNodeHandle) -> None:
    """The allocate probe holds 200 MiB while reporting progress, and beside it 0 MiB (the
    worker runtime alone: Python, and TLS for the progress patches): the difference of the two
    reported peaks is the 200 MiB within 10 %, and the runtime stays within its budget."""
    def probe(mebibytes: int) -> str:
        return start(cluster, run_name(f"usage{mebibytes}"), {
            "params": {"mebibytes": mebibytes},
            "pipelineSpec": real_pipeline(real_node, [
                {"name": "allocate", "processor": "kubedag.worker.processors.probes:allocate",
                 "resources": {"memory": "512Mi"}},
            ], params=[{"name": "mebibytes", "type": "int"},
                       {"name": "holdSeconds", "type": "int", "default": 4}])})
    holding, alone = probe(200), probe(0)

    def halfway() -> dict[str, Any] | None:
        stages = (get_run(cluster, WORK_NAMESPACE, holding).get("status") or {}).get("stages")
        stage = (stages or {}).get("allocate") or {}
        return stage if stage.get("progress") == 0.5 else None
    # The worker's progress report (0.5 while it holds the memory) reaches the run's status.
    wait_for(halfway, timeout=60, what="the worker's progress in the run's status")
    peaks = []
    for name in (holding, alone):
        stage = stage_of(finish(cluster, name), "allocate")
        assert stage["phase"] == "Succeeded", stage
        peaks.append(stage["usage"]["peakRssBytes"])
    peak, runtime = peaks
    print(f"\nreported peak RSS: {peak / MIB:.1f} MiB holding 200 MiB, "
          f"{runtime / MIB:.1f} MiB holding nothing")
    assert abs((peak - runtime) - 200 * MIB) <= 0.1 * 200 * MIB
    assert runtime <= RUNTIME_BUDGET


def test_a_cached_stage_is_keyed_on_the_digest_its_real_pod_ran(
        cluster: Cluster, installed: InstalledOperator, real_node: RealNodeHandle) -> None:
    """On real containers the digest comes from containerd: the entry records the pod's
    imageID, and the next run with the same image hits without a pod."""
    nonce = uuid.uuid4().hex  # a processor reads every param: a key no earlier run filled

    def spec() -> dict[str, Any]:
        return {"pipelineSpec": real_pipeline(real_node, [
            {"name": "probe", "processor": "kubedag.worker.processors.probes:allocate",
             "cache": {"maxAge": "1h"}}], params=[
                 {"name": "mebibytes", "type": "int", "default": 4},
                 {"name": "holdSeconds", "type": "float", "default": 0.0},
                 {"name": "nonce", "default": nonce}])}

    first = finish(cluster, start(cluster, run_name("fills"), spec()))
    assert first["status"]["phase"] == "Succeeded", first["status"]
    [pod] = pods_of(cluster, first["metadata"]["name"], "probe")
    image_id = pod.status.container_statuses[0].image_id
    key = stage_of(first, "probe")["cache"]["key"]
    entry = cluster.custom.get_namespaced_custom_object(
        "kubedag.io", "v1alpha1", WORK_NAMESPACE, "stagecacheentries", key)
    assert entry["spec"]["imageDigest"].startswith("sha256:")
    assert image_id.endswith(entry["spec"]["imageDigest"]), (image_id, entry["spec"])

    second = finish(cluster, start(cluster, run_name("hits"), spec()))
    probe = stage_of(second, "probe")
    assert (probe["reason"], probe["outputs"]) == ("Cached", stage_of(first, "probe")["outputs"])
    assert pods_of(cluster, second["metadata"]["name"]) == []
