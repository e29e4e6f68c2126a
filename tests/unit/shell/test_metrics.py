"""kubedag_ metrics: transitions are counted once, state is read from the run cache."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kubedag.shell.metrics import (
    INLINE_PIPELINE,
    Metrics,
    RunStateCollector,
    failure_reason,
    new_registry,
    parse_quantity,
    watch_cache,
)

NS, PIPE = "team-a", "etl"


def run(status: dict[str, Any] | None = None, *, name: str = "r1", uid: str = "u1",
        version: str = "1", pipeline: str | None = PIPE) -> dict[str, Any]:
    spec: dict[str, Any] = {"pipelineRef": {"name": pipeline}} if pipeline else {
        "pipelineSpec": {"stages": [{"name": "a"}]}}
    return {"metadata": {"namespace": NS, "name": name, "uid": uid, "resourceVersion": version,
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": spec, "status": status or {}}


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def test_a_run_and_a_retried_stage_are_counted_once_per_transition(metrics: Metrics) -> None:
    r = metrics.registry
    labels = {"namespace": NS, "pipeline": PIPE, "stage": "a"}
    passes: list[dict[str, Any]] = [
        {},
        {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
         "stages": {"a": {"phase": "Running", "attempts": 1,
                          "startTime": "2026-01-01T00:00:00Z"}}},
        {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
         "stages": {"a": {"phase": "Retrying", "attempts": 1, "exitCode": 3,
                          "message": "exit code 3 (Error)",
                          "usage": {"cpuSeconds": 2.5, "peakRssBytes": 1048576},
                          "startTime": "2026-01-01T00:00:00Z"}}},
        {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
         "stages": {"a": {"phase": "Running", "attempts": 2,
                          "startTime": "2026-01-01T00:00:00Z"}}},
        {"phase": "Succeeded", "startTime": "2026-01-01T00:00:00Z",
         "completionTime": "2026-01-01T00:01:40Z",
         "stages": {"a": {"phase": "Succeeded", "attempts": 2,
                          "usage": {"cpuSeconds": 1.0, "peakRssBytes": 2097152},
                          "startTime": "2026-01-01T00:00:00Z",
                          "finishTime": "2026-01-01T00:01:30Z"}}},
    ]
    for old, new in itertools.pairwise(passes):
        metrics.record_transitions(run(old), new)
        metrics.record_transitions(run(new), copy.deepcopy(new))  # a pass that changed nothing

    assert value(r, "kubedag_runs_started_total", namespace=NS, pipeline=PIPE) == 1
    assert value(r, "kubedag_stage_attempts_total", **labels) == 2
    assert value(r, "kubedag_stage_retries_total", **labels) == 1
    assert value(r, "kubedag_stage_failures_total", **labels, reason="ExitCode") == 1
    assert value(r, "kubedag_stage_cpu_seconds_count", **labels) == 2
    assert value(r, "kubedag_stage_cpu_seconds_sum", **labels) == 3.5
    assert value(r, "kubedag_stage_peak_memory_bytes_sum", **labels) == 3 * 1048576
    assert value(r, "kubedag_stage_duration_seconds_sum", **labels, outcome="Succeeded") == 90
    assert value(r, "kubedag_run_duration_seconds_sum", namespace=NS, pipeline=PIPE,
                 outcome="Succeeded") == 100
    assert value(r, "kubedag_run_duration_seconds_count", outcome="Failed") == 0


def test_series_start_at_zero_so_rate_sees_the_first_increment(metrics: Metrics) -> None:
    new = {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
           "pipelineSpec": {"stages": [{"name": "a"}], "finally": [{"name": "z"}]}}
    metrics.record_transitions(run(), new)
    r = metrics.registry
    for stage in ("a", "z"):
        assert value(r, "kubedag_stage_attempts_total", stage=stage) == 0
        assert value(r, "kubedag_stage_duration_seconds_count", stage=stage,
                     outcome="Succeeded") == 0
        assert value(r, "kubedag_stage_cpu_seconds_count", stage=stage) == 0
    assert value(r, "kubedag_run_duration_seconds_count", outcome="Succeeded") == 0


def test_a_retry_started_in_the_same_pass_still_ends_the_failed_attempt(metrics: Metrics) -> None:
    old = {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
           "stages": {"a": {"phase": "Running", "attempts": 1}}}
    new = {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
           "stages": {"a": {"phase": "Running", "attempts": 2,
                            "message": "stage timed out (DeadlineExceeded)"}}}
    metrics.record_transitions(run(old), new)
    assert value(metrics.registry, "kubedag_stage_failures_total",
                 reason="DeadlineExceeded") == 1
    assert value(metrics.registry, "kubedag_stage_retries_total") == 1


def test_skipped_stages_have_no_duration_and_stages_failed_outright_count_with_their_reason(
        metrics: Metrics) -> None:
    new = {"phase": "Failed", "startTime": "2026-01-01T00:00:00Z",
           "completionTime": "2026-01-01T00:00:10Z",
           "stages": {"b": {"phase": "Skipped", "reason": "UpstreamFailed",
                            "finishTime": "2026-01-01T00:00:10Z"},
                      "c": {"phase": "Failed", "reason": "InvalidReference",
                            "finishTime": "2026-01-01T00:00:10Z"},
                      "d": {"phase": "Skipped", "reason": "RunFailed",
                            "finishTime": "2026-01-01T00:00:10Z"}}}
    metrics.record_transitions(run({"phase": "Running", "startTime": "2026-01-01T00:00:00Z"}),
                               new)
    r = metrics.registry
    assert value(r, "kubedag_stage_duration_seconds_count", stage="b") is None
    assert value(r, "kubedag_stage_failures_total", stage="c", reason="InvalidReference") == 1
    assert value(r, "kubedag_stage_failures_total", stage="d", reason="RunFailed") is None
    assert value(r, "kubedag_run_duration_seconds_count", outcome="Failed") == 1


def test_dry_runs_are_not_counted(metrics: Metrics) -> None:
    body = run()
    body["spec"]["dryRun"] = True
    metrics.record_transitions(body, {"phase": "Succeeded",
                                      "completionTime": "2026-01-01T00:00:01Z"})
    assert value(metrics.registry, "kubedag_run_duration_seconds_count") is None


def test_reconcile_and_api_writes(metrics: Metrics) -> None:
    metrics.observe_reconcile(0.01, error=False)
    metrics.observe_reconcile(0.02, error=True)
    metrics.api_write("create", "jobs")
    r = metrics.registry
    assert value(r, "kubedag_reconcile_duration_seconds_count") == 2
    assert value(r, "kubedag_reconcile_errors_total") == 1
    assert value(r, "kubedag_kube_api_writes_total", verb="create", resource="jobs") == 1


@pytest.mark.parametrize(("checkpoint", "reason"), [
    ({"reason": "ImagePullFailed", "message": "ErrImagePull: x"}, "ImagePullFailed"),
    ({"message": "stage timed out (DeadlineExceeded)"}, "DeadlineExceeded"),
    ({"message": "exit code 137 (OOMKilled)", "exitCode": 137}, "OOMKilled"),
    ({"message": "Job kubedag-x disappeared"}, "JobLost"),
    ({"message": "the API server rejected the stage's Job: quota"}, "JobRejected"),
    ({"message": "Job failed: BackoffLimitExceeded:"}, "JobFailed"),
    ({"message": "boom", "exitCode": 2}, "ExitCode"),
    ({}, "Other"),
])
def test_failure_reasons_are_a_small_fixed_set(checkpoint: dict[str, Any], reason: str) -> None:
    assert failure_reason(checkpoint) == reason


@pytest.mark.parametrize(("quantity", "number"), [
    ("500m", 0.5), ("2", 2.0), ("1.5", 1.5), ("512Mi", 512 * 2**20), ("1G", 1e9),
    ("1e3", 1000.0), (None, 0.0), ("junk", 0.0),
])
def test_parse_quantity(quantity: str | None, number: float) -> None:
    assert parse_quantity(quantity) == pytest.approx(number)


def running_run() -> dict[str, Any]:
    return run({
        "phase": "Running",
        "progress": {"completed": 1, "total": 4, "percent": 25},
        "pipelineSpec": {
            "stages": [
                {"name": "done"},
                {"name": "train", "resources": {"cpu": "500m", "memory": "1Gi", "gpu": 2}},
                {"name": "shard", "resources": {"cpu": "2"}, "fanOut": {"parallelism": 3}},
            ],
            "finally": [{"name": "report"}],
        },
        "stages": {"done": {"phase": "Succeeded"}, "train": {"phase": "Running"},
                   "shard": {"phase": "Running",
                             "fanOut": {"total": 10, "succeeded": 5, "failed": 0}}},
    })


def test_state_series_come_from_the_run_cache() -> None:
    bodies = {"a": running_run(),
              "b": run({"phase": "Failed"}, name="r2", uid="u2"),
              "c": run({"phase": "Pending"}, name="r3", uid="u3", pipeline=None)}
    registry = CollectorRegistry()
    registry.register(RunStateCollector(lambda: list(bodies.values())))
    key = {"namespace": NS, "pipeline": PIPE}
    assert value(registry, "kubedag_runs", **key, phase="Running") == 1
    assert value(registry, "kubedag_runs", **key, phase="Failed") == 1
    assert value(registry, "kubedag_runs", **key, phase="Cancelled") == 0
    assert value(registry, "kubedag_runs", pipeline=INLINE_PIPELINE, phase="Pending") == 1
    assert value(registry, "kubedag_run_progress_ratio", run="r1") == 0.25
    assert value(registry, "kubedag_run_progress_ratio", run="r2") is None  # finished
    assert value(registry, "kubedag_stages_running", **key) == 2
    assert value(registry, "kubedag_stages_pending", **key) == 1  # report (finally)
    assert value(registry, "kubedag_running_stages_cpu_request_cores", **key) == 0.5 + 3 * 2
    assert value(registry, "kubedag_running_stages_memory_request_bytes", **key) == 2**30
    assert value(registry, "kubedag_running_stages_gpu_request", **key) == 2

    bodies["a"] = run({"phase": "Succeeded"}, version="2")  # the run ended
    assert value(registry, "kubedag_run_progress_ratio", run="r1") is None
    assert value(registry, "kubedag_stages_running", **key) == 0
    del bodies["a"], bodies["b"]
    assert value(registry, "kubedag_runs", **key, phase="Running") is None


def test_the_operator_registry_has_process_metrics() -> None:
    text = generate_latest(new_registry()).decode()
    assert "process_cpu_seconds_total" in text or "python_info" in text
    assert "python_gc_objects_collected_total" in text


@pytest.mark.parametrize(("old_phase", "new_phase", "counted"), [
    ("Running", "Retrying", 1),  # an attempt failed
    ("Retrying", "Failed", 0),  # not retried after all: that attempt was counted already
    ("Running", "Cancelled", 0),  # stopped by the run's end: not a failure of the stage
    ("Pending", "Failed", 1),  # failed without an attempt (InvalidReference...)
    # Waiting for a node and placed again: one attempt, no failure until it ends.
    ("Running", "Pending+job", 0),
    ("Pending+job", "Running", 0),
    ("Pending+job", "Failed", 1),  # unschedulableTimeoutSeconds
])
def test_each_failure_is_counted_once(metrics: Metrics, old_phase: str, new_phase: str,
                                      counted: int) -> None:
    def checkpoint(phase: str) -> dict[str, Any]:
        waiting = {"job": "r-a-1", "reason": "Unschedulable"} if phase.endswith("+job") else {}
        return {"phase": phase.removesuffix("+job"), "attempts": 1, **waiting}

    old = {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
           "stages": {"a": checkpoint(old_phase)}}
    new = {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
           "stages": {"a": {**checkpoint(new_phase), "reason": "ExitCode"}}}
    metrics.record_transitions(run(old), new)
    assert (value(metrics.registry, "kubedag_stage_failures_total", reason="ExitCode")
            or 0) == counted


def test_gpu_usage_is_observed_when_measured_and_never_as_zero(metrics: Metrics) -> None:
    r = metrics.registry
    spec = {"stages": [{"name": "train", "resources": {"gpu": 1}}, {"name": "cpu-only"}]}
    running = {"phase": "Running", "startTime": "2026-01-01T00:00:00Z", "pipelineSpec": spec,
               "stages": {"train": {"phase": "Running", "attempts": 1},
                          "cpu-only": {"phase": "Running", "attempts": 1}}}
    metrics.record_transitions(run(), running)
    # Initialised at 0 where GPUs are asked for; no empty GPU series for the other stage.
    assert value(r, "kubedag_stage_gpu_memory_peak_bytes_count", stage="train") == 0
    assert value(r, "kubedag_stage_gpu_utilization_ratio_count", stage="train") == 0
    assert value(r, "kubedag_stage_gpu_memory_peak_bytes_count", stage="cpu-only") is None

    done = copy.deepcopy(running)
    done["stages"]["train"].update(phase="Succeeded", usage={
        "cpuSeconds": 30.0, "peakRssBytes": 2**30, "gpuDevices": 1,
        "gpuMemoryPeakBytes": 9 * 2**30, "gpuUtilizationMean": 0.85, "gpuUtilizationPeak": 1.0})
    # NVML failed in this pod: no GPU fields, so nothing is observed (not a zero).
    done["stages"]["cpu-only"].update(phase="Succeeded",
                                      usage={"cpuSeconds": 1.0, "peakRssBytes": 2**20})
    metrics.record_transitions(run(running), done)
    labels = {"namespace": NS, "pipeline": PIPE, "stage": "train"}
    assert value(r, "kubedag_stage_gpu_memory_peak_bytes_sum", **labels) == 9 * 2**30
    memory_bucket = "kubedag_stage_gpu_memory_peak_bytes_bucket"
    assert value(r, memory_bucket, **labels, le="8.589934592e+09") == 0  # 8 GiB
    assert value(r, memory_bucket, **labels, le="1.7179869184e+10") == 1  # 16 GiB
    assert value(r, "kubedag_stage_gpu_utilization_ratio_sum", **labels) == 0.85
    assert value(r, "kubedag_stage_gpu_utilization_ratio_bucket", **labels, le="0.8") == 0
    assert value(r, "kubedag_stage_gpu_utilization_ratio_bucket", **labels, le="0.9") == 1
    assert value(r, "kubedag_stage_gpu_memory_peak_bytes_count", stage="cpu-only") is None
    assert value(r, "kubedag_stage_cpu_seconds_count", stage="cpu-only") == 1


def test_the_unschedulable_gauge_counts_stages_waiting_for_a_node() -> None:
    body = run({"phase": "Running", "pipelineSpec": {"stages": [{"name": "a"}, {"name": "b"},
                                                               {"name": "c"}]},
                "stages": {"a": {"phase": "Pending", "reason": "Unschedulable", "job": "r-a-1"},
                           "b": {"phase": "Running", "job": "r-b-1"}}})
    registry = CollectorRegistry()
    registry.register(RunStateCollector(lambda: [body]))
    key = {"namespace": NS, "pipeline": PIPE}
    assert value(registry, "kubedag_stages_unschedulable", **key) == 1
    assert value(registry, "kubedag_stages_pending", **key) == 2
    assert value(registry, "kubedag_stages_running", **key) == 1


def test_cache_lookups_are_counted_by_result_and_reason_and_entries_by_pipeline() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.record_cache_lookups("ns", "docs", [("extract", "hit", "Cached"),
                                                ("embed", "miss", "Changed")])
    metrics.record_cache_lookups("ns", "docs", [("extract", "hit", "Cached")])
    assert value(registry, "kubedag_cache_lookups_total", stage="extract", result="hit",
                 reason="Cached") == 2
    assert value(registry, "kubedag_cache_lookups_total", stage="embed", result="miss",
                 reason="Changed") == 1
    watch_cache(lambda: [("ns", "docs"), ("ns", "docs"), ("other", INLINE_PIPELINE)],
                registry)
    assert value(registry, "kubedag_cache_entries", namespace="ns", pipeline="docs") == 2
    assert value(registry, "kubedag_cache_entries", namespace="other") == 1


def test_fallbacks_are_counted_when_they_start_and_when_they_end(metrics: Metrics) -> None:
    spec = {"stages": [{"name": "a", "image": "i", "fallback": {"image": "j"}}]}
    failed = {"phase": "Failed", "attempts": 1, "reason": "OOMKilled"}
    passes: list[dict[str, Any]] = [
        {"phase": "Running", "pipelineSpec": spec, "stages": {"a": {"phase": "Running"}}},
        {"phase": "Running", "pipelineSpec": spec, "stages": {"a": {
            **failed, "fallback": {"phase": "Running", "attempts": 1, "job": "r1-a-fb1"}}}},
        {"phase": "Running", "pipelineSpec": spec, "stages": {"a": {
            **failed, "fallback": {"phase": "Retrying", "attempts": 1}}}},
        {"phase": "Running", "pipelineSpec": spec, "stages": {"a": {
            **failed, "fallback": {"phase": "Running", "attempts": 2, "job": "r1-a-fb2"}}}},
        {"phase": "Succeeded", "pipelineSpec": spec, "stages": {"a": {
            **failed, "fallback": {"phase": "Succeeded", "attempts": 2}}}},
    ]
    metrics.record_transitions(run(), passes[0])
    assert value(metrics.registry, "kubedag_fallbacks_total", stage="a", outcome="Failed") == 0
    for old, new in itertools.pairwise(passes):
        metrics.record_transitions(run(old), new)
        metrics.record_transitions(run(new), copy.deepcopy(new))
    counts = {outcome: value(metrics.registry, "kubedag_fallbacks_total", namespace=NS,
                             pipeline=PIPE, stage="a", outcome=outcome)
              for outcome in ("Started", "Succeeded", "Failed", "Cancelled")}
    assert counts == {"Started": 1, "Succeeded": 1, "Failed": 0, "Cancelled": 0}
