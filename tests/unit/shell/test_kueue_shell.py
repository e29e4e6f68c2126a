"""The shell's side of Kueue: settings, Workloads into RunFacts, the stage budget, metrics."""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

import kopf
import pytest
from kopf._cogs.structs.references import Insights, Resource, Selector
from prometheus_client import CollectorRegistry

from kubedag.core.decide import decide
from kubedag.core.observe import LABEL_RUN_UID, WorkloadSummary
from kubedag.shell import handlers
from kubedag.shell.cache import RunCache
from kubedag.shell.childwatch import ChildIndex
from kubedag.shell.handlers import KUEUE_GROUP, AbsentKueueFilter
from kubedag.shell.metrics import Metrics, RunStateCollector
from kubedag.shell.reconciler import Indexes, Reconciler
from kubedag.shell.settings import OperatorSettings
from tests.unit.core.factories import T0, facts, job, pipeline, stage
from tests.unit.shell.test_metrics import NS, PIPE, run, value
from tests.unit.shell.test_reconciler_claims import FakeKube

START = "2026-01-01T00:00:00Z"
LABELS = {"namespace": NS, "pipeline": PIPE, "stage": "a"}


# --- settings ------------------------------------------------------------------------------------


def test_kueue_is_watched_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEDAG_KUEUE", raising=False)
    assert OperatorSettings.from_env().kueue
    monkeypatch.setenv("KUBEDAG_KUEUE", "off")
    assert not OperatorSettings.from_env().kueue
    monkeypatch.setenv("KUBEDAG_KUEUE", "yes")
    with pytest.raises(ValueError, match="KUBEDAG_KUEUE='yes': expected one of auto, off"):
        OperatorSettings.from_env()


# --- the reconciler ------------------------------------------------------------------------------


def _run_body(run_spec: dict[str, Any]) -> dict[str, Any]:
    spec = {"pipelineSpec": {"stages": [{"name": "a", "image": "busybox"}]}, **run_spec}
    return {"metadata": {"namespace": "ns", "name": "run", "uid": "uid-1234", "generation": 1,
                         "creationTimestamp": "2024-06-01T12:00:00Z"},
            "spec": spec, "status": {}}


def test_a_runs_facts_hold_the_workloads_of_its_jobs_only() -> None:
    indexes = Indexes()
    mine = WorkloadSummary(name="job-run-a-1-x", job="run-a-1", reason="Pending",
                           message="insufficient quota")
    other = WorkloadSummary(name="job-train-y", job="train", admitted=True)
    indexes.jobs = ChildIndex(lambda body: job("a", suspended=True))
    list(indexes.jobs.fold({"type": "ADDED", "object": {"metadata": {
        "uid": "job-uid", "namespace": "ns", "name": "run-a-1",
        "labels": {LABEL_RUN_UID: "uid-1234"}}}}))
    indexes.workloads = {("ns", "run-a-1"): [mine], ("ns", "train"): [other],
                         ("elsewhere", "run-a-1"): [other]}
    reconciler = Reconciler(FakeKube(), OperatorSettings(), RunCache(),  # type: ignore[arg-type]
                            indexes)
    run_facts = reconciler._facts(_run_body({"queueName": "q"}), None, T0)
    assert dict(run_facts.workloads) == {"run-a-1": mine}


@pytest.mark.parametrize(("run_spec", "budgeted"), [({}, 1), ({"queueName": "q"}, 0)])
def test_only_runs_without_a_queue_use_the_operators_stage_budget(
        run_spec: dict[str, Any], budgeted: int) -> None:
    reconciler = Reconciler(FakeKube(),  # type: ignore[arg-type]
                            OperatorSettings(max_running_stages=4), RunCache(), Indexes())
    body = _run_body(run_spec)
    plan = decide(facts(pipeline(stage("a")), run_spec=run_spec), T0)
    assert len(plan.create_jobs) == 1
    reconciler._settle_budget(("ns", "run"), body, plan)
    assert sum(reconciler.budget.running.values()) == budgeted


# --- metrics -------------------------------------------------------------------------------------


def _status(checkpoint: dict[str, Any]) -> dict[str, Any]:
    return {"phase": "Running", "startTime": START, "stages": {"a": checkpoint}}


def _record(metrics: Metrics, *checkpoints: dict[str, Any]) -> None:
    """Each checkpoint as one status write, after the one before."""
    old: dict[str, Any] = {"phase": "Running", "startTime": START}
    for cp in checkpoints:
        new = _status(cp)
        metrics.record_transitions(run(old), new)
        metrics.record_transitions(run(new), copy.deepcopy(new))  # a pass that changed nothing
        old = new


QUEUED = {"phase": "Pending", "reason": "Queued", "job": "r1-a-1", "attempts": 1,
          "queuedTime": START, "message": "insufficient quota"}


def test_queue_time_is_observed_at_each_admission_and_an_eviction_is_no_failure() -> None:
    metrics = Metrics(CollectorRegistry())
    running = {"phase": "Running", "job": "r1-a-1", "attempts": 1, "startTime": START,
               "queueSeconds": 40}
    evicted = {**QUEUED, "startTime": START, "queueSeconds": 40}
    _record(metrics, QUEUED, running, evicted, {**running, "queueSeconds": 100},
            {"phase": "Succeeded", "attempts": 1, "startTime": START, "queueSeconds": 100,
             "finishTime": "2026-01-01T00:05:00Z"})
    r = metrics.registry
    assert value(r, "kubedag_stage_queue_seconds_count", **LABELS) == 2
    assert value(r, "kubedag_stage_queue_seconds_sum", **LABELS) == 40 + 60
    assert value(r, "kubedag_stage_attempts_total", **LABELS) == 1
    assert value(r, "kubedag_stage_failures_total", **LABELS) is None  # for no reason at all
    assert value(r, "kubedag_stage_duration_seconds_sum", **LABELS, outcome="Succeeded") == 300


def test_an_admission_within_the_second_counts_as_a_zero_wait() -> None:
    metrics = Metrics(CollectorRegistry())
    _record(metrics, {"phase": "Running", "job": "r1-a-1", "attempts": 1, "startTime": START,
                      "queueSeconds": 0})
    assert value(metrics.registry, "kubedag_stage_queue_seconds_count", **LABELS) == 1
    # Without Kueue no queue time is observed at all.
    plain = Metrics(CollectorRegistry())
    _record(plain, {"phase": "Running", "job": "r1-a-1", "attempts": 1, "startTime": START})
    assert value(plain.registry, "kubedag_stage_queue_seconds_count", **LABELS) is None


def test_a_queued_job_that_vanishes_is_one_failure() -> None:
    metrics = Metrics(CollectorRegistry())
    _record(metrics, QUEUED, {"phase": "Failed", "attempts": 1, "reason": "JobLost",
                              "finishTime": START})
    assert value(metrics.registry, "kubedag_stage_failures_total", **LABELS,
                 reason="JobLost") == 1


def test_queued_stages_are_their_own_gauge_not_pending_and_request_nothing() -> None:
    spec = {"stages": [{"name": "a", "resources": {"gpu": 8}}, {"name": "b"}]}
    body = run({"phase": "Running", "startTime": START, "pipelineSpec": spec,
                "stages": {"a": QUEUED}})
    registry = CollectorRegistry()
    registry.register(RunStateCollector(lambda: [body]))
    key = {"namespace": NS, "pipeline": PIPE}
    assert value(registry, "kubedag_stages_queued", **key) == 1
    assert value(registry, "kubedag_stages_pending", **key) == 1  # b
    assert value(registry, "kubedag_stages_running", **key) == 0
    assert value(registry, "kubedag_running_stages_gpu_request", **key) == 0


def test_kopfs_warning_about_absent_workloads_alone_is_dropped() -> None:
    """kopf formats the warning with its selector: build it the same way, so that a kopf
    upgrade that changes the wording fails here instead of flooding the logs."""
    selector = Selector(KUEUE_GROUP, "workloads")
    other = Selector("example.com", "widgets")

    def record(*selectors: Selector) -> logging.LogRecord:
        names = ", ".join(f"{s}" for s in selectors)
        return logging.LogRecord("kopf._core.reactor.observation", logging.WARNING, "", 0,
                                 "Unresolved resources cannot be served (try creating their "
                                 f"CRDs): {names}", None, None)

    assert not AbsentKueueFilter().filter(record(selector))
    assert AbsentKueueFilter().filter(record(other, selector))


@pytest.mark.parametrize(("run_queue", "default_queue", "exported"), [
    (None, None, False), ("team-a", None, True), (None, "shared", True)])
def test_queue_time_series_start_at_zero_only_for_runs_with_a_queue(
        run_queue: str | None, default_queue: str | None, exported: bool) -> None:
    metrics = Metrics(CollectorRegistry())
    body = run()
    if run_queue:
        body["spec"]["queueName"] = run_queue
    spec: dict[str, Any] = {"stages": [{"name": "a"}]}
    if default_queue:
        spec["defaults"] = {"queueName": default_queue}
    metrics.record_transitions(body, {"phase": "Running", "startTime": START,
                                      "pipelineSpec": spec})
    count = value(metrics.registry, "kubedag_stage_queue_seconds_count", **LABELS)
    assert count == (0 if exported else None)


def test_kueues_group_is_rescanned_until_kopf_serves_workloads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf may miss a CRD whose group discovery lists late; the operator looks again until
    kopf serves Workloads, then stops (here the third look finds them)."""
    insights = Insights()
    looks: list[str] = []
    workloads = Resource(group=KUEUE_GROUP, version="v1beta2", plural="workloads",
                         namespaced=True)

    async def rescan(*, raw_event: Any, insights: Insights, **_: Any) -> None:
        looks.append(raw_event["object"]["spec"]["group"])
        if len(looks) == 3:
            insights.watched_resources.add(workloads)

    monkeypatch.setattr(handlers, "KUEUE_RESCAN_FIRST_SECONDS", 0.0)
    monkeypatch.setattr(handlers.observation, "process_discovered_resource_event", rescan)
    asyncio.run(handlers.rescan_for_kueue(kopf.OperatorSettings(), insights))
    assert looks == [KUEUE_GROUP] * 3
    assert handlers.serves_workloads(insights)
