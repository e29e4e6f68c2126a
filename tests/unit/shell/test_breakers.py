"""The shell's breakers: debits are synchronous (one probe across runs), held runs are woken,
a key's first counted failure creates its CircuitBreaker, and the state is written."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from kubedag.api import BreakerThresholds, PipelineRunStatus
from kubedag.core.breaker import AttemptReport, Verdict, rejected_attempts
from kubedag.core.plan import Plan
from kubedag.shell.breakers import Breakers
from kubedag.shell.cache import RunKey
from kubedag.shell.kube import RunRef
from kubedag.shell.metrics import Metrics
from tests.unit.core.factories import at

NS = "ns"


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, str]] = []

    async def create_breaker(self, manifest: dict[str, Any]) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        self.objects[name] = {**manifest, "metadata": {**manifest["metadata"], "uid": "u",
                                                       "generation": 1}, "status": {}}
        return self.objects[name]

    async def patch_breaker_status(self, namespace: str, name: str,
                                   patch: dict[str, Any]) -> dict[str, Any]:
        stored = self.objects[name]
        stored["status"] = {**stored["status"], **patch}
        return stored

    async def post_event(self, ref: RunRef, event: Any, kind: str = "PipelineRun") -> None:
        self.events.append((kind, event.reason))


def failures(count: int, stage: str = "a") -> Plan:
    plan = Plan(status=PipelineRunStatus())
    plan.breaker_reports = [
        AttemptReport(key="dep", stage=f"{stage}{i}", verdict=Verdict.FAILURE,
                      reason="OOMKilled", time=at(i), thresholds=BreakerThresholds(
                          open_seconds=10)) for i in range(count)]
    return plan


def test_one_probe_across_runs_and_held_runs_woken_when_it_succeeds() -> None:
    async def scenario() -> None:
        kube = FakeKube()
        breakers = Breakers(kube, Metrics())  # type: ignore[arg-type]
        woken: list[RunKey] = []
        breakers.wake = woken.append
        first, second = (NS, "first"), (NS, "second")
        breakers.apply(first, failures(5), at(5))
        assert breakers.views(NS, at(6))["dep"].allowance == 0
        await breakers.flush()
        stored = kube.objects["dep"]
        assert stored["spec"] == {"key": "dep", "thresholds": {"openSeconds": 10}}
        assert (stored["status"]["state"], stored["status"]["consecutiveFailures"]) == ("Open", 5)
        # Half-open: run A takes the probe; run B, reconciled right after, sees none left.
        later = at(5) + timedelta(seconds=11)
        assert breakers.views(NS, later)["dep"].allowance == 1
        probe = Plan(status=PipelineRunStatus(), breaker_starts={"dep": ["p"]})
        breakers.apply(first, probe, later)
        assert breakers.views(NS, later)["dep"].allowance == 0
        breakers.apply(second, Plan(status=PipelineRunStatus(), breaker_held={"dep": 3}), later)
        success = Plan(status=PipelineRunStatus())
        success.breaker_reports = [AttemptReport(key="dep", stage="p", verdict=Verdict.SUCCESS,
                                                 reason=None, time=later,
                                                 thresholds=BreakerThresholds())]
        breakers.apply(first, success, later)
        assert second in woken
        assert breakers.views(NS, later)["dep"].allowance == 1  # the first wave
        await breakers.flush()
        assert ("CircuitBreaker", "Tripped") in kube.events
        assert ("CircuitBreaker", "ProbeSucceeded") in kube.events
        assert [(r.key, r.state, r.held) for r in breakers.rows()] == [("dep", "Closed", 3)]

    asyncio.run(scenario())


def test_a_probe_whose_job_the_api_server_refused_frees_the_probe_slot() -> None:
    async def scenario() -> None:
        breakers = Breakers(FakeKube(), Metrics())  # type: ignore[arg-type]
        run = (NS, "first")
        breakers.apply(run, failures(5), at(5))
        later = at(5) + timedelta(seconds=11)
        assert breakers.views(NS, later)["dep"].allowance == 1  # half-open: one probe
        probe = Plan(status=PipelineRunStatus(), breaker_starts={"dep": ["p"], "other": ["q"]})
        breakers.apply(run, probe, later)
        assert breakers.views(NS, later)["dep"].allowance == 0
        # The reconciler folds the refused Jobs back once the API server has answered.
        breakers.fold_results(run, rejected_attempts(probe.breaker_starts, ["p"], later), later)
        assert breakers.views(NS, later)["dep"].allowance == 1
        await breakers.flush()

    asyncio.run(scenario())


def test_successes_and_ignored_failures_create_no_breaker() -> None:
    async def scenario() -> None:
        kube = FakeKube()
        breakers = Breakers(kube, Metrics())  # type: ignore[arg-type]
        plan = Plan(status=PipelineRunStatus())
        plan.breaker_reports = [AttemptReport(key="dep", stage="a", verdict=verdict, reason=None,
                                              time=at(0), thresholds=BreakerThresholds())
                                for verdict in (Verdict.SUCCESS, Verdict.IGNORED)]
        breakers.apply((NS, "run"), plan, at(1))
        await breakers.flush()
        assert kube.objects == {} and breakers.views(NS, at(2)) == {}

    asyncio.run(scenario())


class GoneNamespaceKube(FakeKube):
    async def create_breaker(self, manifest: dict[str, Any]) -> dict[str, Any]:
        raise ApiException(status=404, reason="Not Found")


def test_a_breaker_whose_namespace_is_gone_is_dropped_not_retried() -> None:
    async def scenario() -> None:
        breakers = Breakers(GoneNamespaceKube(), Metrics())  # type: ignore[arg-type]
        breakers.apply((NS, "run"), failures(5), at(5))
        assert breakers.views(NS, at(6))["dep"].allowance == 0
        await asyncio.wait_for(breakers.flush(), timeout=5)
        assert breakers.views(NS, at(6)) == {} and breakers.rows() == []

    asyncio.run(scenario())
