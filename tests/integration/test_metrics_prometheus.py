"""The operator's metrics through a real Prometheus: every dashboard query returns data.

The session's operator (with its own KUBEDAG_METRICS_PORT, see operator_process.py) runs a
pipeline with a retried stage, worker-reported usage, GPU and CPU requests, a succeeded and a
failed run, while a local Prometheus scrapes it every second. Then each PromQL query of each
dashboard panel, with the template variables filled in, must return a finite value; promtool
lints the exposition.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kubedag.dashboards import panel_queries, rendered
from kubedag.testbed.kueue import KueueHandle, create_queues, delete_queues
from tests.integration.chart_support import ensure_prometheus
from tests.integration.operator_process import OperatorProcess, free_port
from tests.integration.runs import GROUP, VERSION, create_run, pipeline, stage, wait_phase
from tests.integration.support import Cluster, wait_for

PIPELINE = "metrics-demo"
SCRAPE = "1s"


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
            return json.load(response)

    def query_range(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        body = self.get("/api/v1/query_range", query=expr, start=f"{start:.3f}",
                        end=f"{end:.3f}", step="1")
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


@pytest.fixture
def prometheus(running_operator: OperatorProcess, tmp_path: Path) -> Iterator[Prometheus]:
    binary, _ = ensure_prometheus()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": SCRAPE, "evaluation_interval": SCRAPE},
        "scrape_configs": [{
            "job_name": "kubedag-operator",
            "static_configs": [{"targets": [f"127.0.0.1:{running_operator.metrics_port}"]}],
        }],
    }))
    log = running_operator.cluster.plane.log_dir / "prometheus.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_for(lambda: _ready(server), timeout=30, what=f"prometheus to be ready (log: {log})")
        wait_for(lambda: _target_up(server), timeout=30,
                 what=f"prometheus to scrape the operator (log: {log})")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _ready(server: Prometheus) -> bool:
    if server.process.poll() is not None:
        raise AssertionError(f"prometheus exited with {server.process.returncode}: {server.log}")
    try:
        with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _target_up(server: Prometheus) -> bool:
    result = server.get("/api/v1/query", query='up{job="kubedag-operator"}')["data"]["result"]
    return bool(result) and result[0]["value"][1] == "1"


def _usage(cpu: float, rss: int, outputs: dict[str, Any] | None = None,
           **gpu: float) -> dict[str, str]:
    """The worker's report as a stage's pod annotation; ``gpu``: its GPU fields, if measured."""
    message = {"usage": {"cpuSeconds": cpu, "peakRssBytes": rss, **gpu}, "outputs": outputs or {}}
    return {"testbed.kubedag.io/message": json.dumps(message)}


def _stages() -> list[dict[str, Any]]:
    return [
        stage("prepare", resources={"cpu": "500m", "memory": "64Mi"},
              podAnnotations={"testbed.kubedag.io/duration": "3s",
                              **_usage(1.5, 50_000_000)}),
        stage("train", "prepare", resources={"cpu": "2", "memory": "1Gi", "gpu": 1},
              podAnnotations={"testbed.kubedag.io/duration": "4s",
                              **_usage(7.0, 900_000_000, gpuDevices=1,
                                       gpuMemoryPeakBytes=9_000_000_000,
                                       gpuUtilizationMean=0.8, gpuUtilizationPeak=1.0)}),
        stage("flaky", "prepare", exit_code=3, duration="1s", critical=False,
              retry={"limit": 1, "initialDelaySeconds": 1}),
        # Recovered by its fallback (the fallback panel); cached, so that the runs after the
        # first reuse its result (the stage cache panels).
        stage("fragile", exit_code=3, critical=False, fallback={"image": "busybox"}),
        stage("lookup", cache={"maxAge": "1h"}),
    ]


def test_every_dashboard_query_returns_data(cluster: Cluster, namespace: str,
                                            running_operator: OperatorProcess,
                                            prometheus: Prometheus,
                                            kueue: KueueHandle) -> None:
    start = time.time() - 5
    cluster.custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "pipelines",
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Pipeline",
         "metadata": {"name": PIPELINE}, "spec": pipeline(cluster, _stages())})
    create_run(cluster, namespace, "ok", {"pipelineRef": {"name": PIPELINE}})
    ok = wait_phase(cluster, namespace, "ok", timeout=90)
    assert ok["status"]["phase"] == "Succeeded", ok["status"]
    # Times out in its first stage: a failed run, stages stopped by the run.
    create_run(cluster, namespace, "bad", {"pipelineRef": {"name": PIPELINE},
                                           "timeoutSeconds": 2})
    bad = wait_phase(cluster, namespace, "bad", timeout=60)
    assert bad["status"]["phase"] == "Failed", bad["status"]
    # Through a Kueue queue (the queue-time panels): admitted, so its queue time is observed.
    queues = create_queues(cluster.api_client, namespace, f"{namespace}-metrics", gpus=4)
    try:
        create_run(cluster, namespace, "queued", {"pipelineRef": {"name": PIPELINE},
                                                  "queueName": queues.local_queue})
        queued = wait_phase(cluster, namespace, "queued", timeout=90)
        assert queued["status"]["phase"] == "Succeeded", queued["status"]
    finally:
        delete_queues(cluster.api_client, queues)
    # A dependency that is down (exit 75) trips its circuit breaker (the breaker panels).
    create_run(cluster, namespace, "down", {"pipelineSpec": pipeline(cluster, [
        stage("call", exit_code=75, breaker={"key": "metrics-dep", "consecutiveFailures": 1})])})
    wait_phase(cluster, namespace, "down", timeout=60)
    time.sleep(4)  # a few more scrapes after the last transition
    end = time.time()

    substitutions = {"$namespace": namespace, "$pipeline": PIPELINE, "$stage": ".*",
                     "$__rate_interval": "10s", "$__range": "10m", "$__interval": "1s"}
    empty: list[str] = []
    checked = 0
    for name, text in rendered().items():
        for title, template in panel_queries(json.loads(text)):
            expr = template
            for variable, value in substitutions.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{name} / {title}: unsubstituted variable in {expr}"
            series = prometheus.query_range(expr, start, end)
            values = [float(v) for s in series for _, v in s["values"]]
            checked += 1
            if not any(math.isfinite(v) for v in values):
                empty.append(f"{name} / {title}: {expr}")
    assert checked >= 30
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_exposition_passes_promtool_and_keeps_labels_bounded(
        running_operator: OperatorProcess) -> None:
    _, promtool = ensure_prometheus()
    url = f"http://127.0.0.1:{running_operator.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, check=False)
    assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), (
        lint.stdout + lint.stderr)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "process_cpu_seconds" in families or "process_cpu_seconds_total" in families
    for family in families.values():
        if not family.name.startswith("kubedag_"):
            continue
        labels = {k for s in family.samples for k in s.labels}
        assert "uid" not in labels, family.name
        if family.type == "histogram":
            assert "run" not in labels, family.name
        if "run" in labels:
            assert family.name == "kubedag_run_progress_ratio", family.name
