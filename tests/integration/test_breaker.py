"""Circuit breakers on the test bed: kwok pods fail with exit 75 (a dependency is down) and trip
a breaker shared by runs; later runs' stages wait Pending/CircuitOpen instead of failing until a
probe succeeds, then start in waves. A permanent error (65) never trips it; forceState holds and
releases by hand; a restarted operator keeps the state."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from typing import Any

from tests.integration.operator_process import OperatorProcess
from tests.integration.runs import (
    GROUP,
    VERSION,
    create_run,
    get_run,
    pipeline,
    stage,
    stages_of,
    wait_phase,
)
from tests.integration.support import Cluster, wait_for

BREAKERS = "circuitbreakers"


def breakers(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    listed: dict[str, Any] = cluster.custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, BREAKERS)
    items: list[dict[str, Any]] = listed["items"]
    return items


def state_of(cluster: Cluster, namespace: str, key: str) -> str | None:
    for breaker in breakers(cluster, namespace):
        if breaker["spec"]["key"] == key:
            return str((breaker.get("status") or {}).get("state"))
    return None


def held(cluster: Cluster, namespace: str, run: str, names: list[str]) -> dict[str, Any] | None:
    stages = stages_of(get_run(cluster, namespace, run)) if get_run(
        cluster, namespace, run).get("status") else {}
    if all((stages.get(n) or {}).get("reason") == "CircuitOpen" for n in names):
        return stages
    return None


def failing_run(cluster: Cluster, namespace: str, name: str, count: int,
                exit_code: int, key: str, **breaker: Any) -> None:
    stages = [stage(f"f{i}", exit_code=exit_code, critical=False) for i in range(count)]
    spec = pipeline(cluster, stages, defaults={"breaker": {"key": key, **breaker}})
    create_run(cluster, namespace, name, {"pipelineSpec": spec})


def start_groups(stages: dict[str, Any], names: list[str]) -> list[int]:
    """How many stages started together, in order (starts 2 s or more apart are apart)."""
    times = sorted(datetime.fromisoformat(stages[n]["startTime"].replace("Z", "+00:00"))
                   for n in names)
    groups = [1]
    for before, after in pairwise(times):
        if (after - before).total_seconds() >= 2:
            groups.append(1)
        else:
            groups[-1] += 1
    return groups


def test_failures_across_runs_trip_it_and_a_third_run_waits_for_the_probe_and_the_waves(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    failing_run(cluster, namespace, "first", 3, 75, "dep", openSeconds=15)
    wait_phase(cluster, namespace, "first")
    assert breakers(cluster, namespace)[0]["status"]["consecutiveFailures"] == 3
    assert state_of(cluster, namespace, "dep") == "Closed"
    failing_run(cluster, namespace, "second", 2, 75, "dep", openSeconds=15)
    wait_phase(cluster, namespace, "second")
    wait_for(lambda: state_of(cluster, namespace, "dep") == "Open", timeout=20,
             what="the breaker to open")
    table = cluster.kubectl("get", "circuitbreakers", "-n", namespace).stdout
    header, row = table.splitlines()[:2]
    assert header.split()[:5] == ["NAME", "KEY", "STATE", "FAILURES", "OPENED"], table
    assert row.split()[1:4] == ["dep", "Open", "5"], table
    assert cluster.kubectl("get", "cb", "-n", namespace).returncode == 0

    # The state is in the object: a restarted operator holds what its predecessor held.
    running_operator.stop()
    running_operator.start()

    names = [f"h{i}" for i in range(6)]
    spec = pipeline(cluster, [stage(n, duration="3s") for n in names],
                    defaults={"breaker": {"key": "dep"}})
    create_run(cluster, namespace, "third", {"pipelineSpec": spec})
    stages = wait_for(lambda: held(cluster, namespace, "third", names), timeout=20,
                      what="the third run's stages held")
    assert all(stages[n]["phase"] == "Pending" and "job" not in stages[n] for n in names)
    assert "circuit breaker dep" in stages["h0"]["message"]
    assert get_run(cluster, namespace, "third")["status"]["phase"] == "Running"

    run = wait_phase(cluster, namespace, "third", timeout=90)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    stages = stages_of(run)
    # The probe, then waves of 1, 2 and (the 2 left of) 4.
    assert start_groups(stages, names) == [1, 1, 2, 2], stages
    assert state_of(cluster, namespace, "dep") == "Closed"
    events = cluster.core.list_namespaced_event(
        namespace, field_selector="involvedObject.kind=CircuitBreaker")
    reasons = {e.reason for e in events.items}
    assert {"Tripped", "HalfOpened", "ProbeSucceeded", "Released"} <= reasons, reasons


def test_a_permanent_error_never_trips_it(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    for name in ("one", "two"):
        failing_run(cluster, namespace, name, 4, 65, "perm")
        run = wait_phase(cluster, namespace, name)
        assert {s["exitCode"] for s in stages_of(run).values()} == {65}
    assert breakers(cluster, namespace) == []


def test_force_open_holds_and_force_closed_releases(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CircuitBreaker",
            "metadata": {"name": "manual"}, "spec": {"key": "manual", "forceState": "Open"}}
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, BREAKERS, body)
    wait_for(lambda: state_of(cluster, namespace, "manual") == "Open", timeout=20,
             what="the forced breaker open")
    spec = pipeline(cluster, [stage("a", breaker={"key": "manual"})])
    create_run(cluster, namespace, "forced", {"pipelineSpec": spec})
    stages = wait_for(lambda: held(cluster, namespace, "forced", ["a"]), timeout=20,
                      what="the stage held")
    assert "forced open" in stages["a"]["message"]
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, BREAKERS, "manual",
                                                  {"spec": {"forceState": "Closed"}})
    run = wait_phase(cluster, namespace, "forced", timeout=30)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert state_of(cluster, namespace, "manual") == "Closed"
