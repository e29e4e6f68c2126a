"""The operator-wide stage budget (KUBEDAG_MAX_RUNNING_STAGES), shared by run priority."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from tests.integration.operator_process import OperatorProcess
from tests.integration.runs import create_run, pipeline, stage, stages_of, wait_phase
from tests.integration.support import Cluster


@pytest.fixture
def budgeted_operator(cluster: Cluster, crds: None,
                      operator: OperatorProcess) -> Iterator[OperatorProcess]:
    """An operator with a budget of 2 running stages; the session's one is stopped meanwhile
    (two operators must never act on the same runs) and restarted by the next test."""
    operator.stop()
    budgeted = OperatorProcess(cluster, extra_env={"KUBEDAG_MAX_RUNNING_STAGES": "2"})
    budgeted.start()
    try:
        yield budgeted
    finally:
        budgeted.stop()


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_budget_caps_running_stages_and_serves_higher_priority_first(
    cluster: Cluster, namespace: str, budgeted_operator: OperatorProcess
) -> None:
    wide = [stage(f"s{i}", duration="2s") for i in range(4)]
    create_run(cluster, namespace, "low", {"pipelineSpec": pipeline(cluster, wide)})
    time.sleep(0.5)
    create_run(cluster, namespace, "high", {"priority": 10, "pipelineSpec": pipeline(
        cluster, [stage("h0", duration="2s"), stage("h1", duration="2s")])})
    low = wait_phase(cluster, namespace, "low", timeout=60)
    high = wait_phase(cluster, namespace, "high", timeout=60)
    assert low["status"]["phase"] == high["status"]["phase"] == "Succeeded"
    spans = [(_ts(s["startTime"]), _ts(s["finishTime"]), f"{run['metadata']['name']}/{n}")
             for run in (low, high) for n, s in stages_of(run).items()]
    # Never more than two stages at once, across both runs (whole-second timestamps: a stage
    # that starts in the second another finishes is not counted as overlapping it).
    for start, _, name in spans:
        overlapping = [n for s, f, n in spans if s <= start < f]
        assert len(overlapping) <= 2, (name, overlapping)
    # The first two low stages took the budget; when it freed up, the high-priority run went
    # ahead of the rest of the low run.
    low_starts = sorted(_ts(s["startTime"]) for s in stages_of(low).values())
    high_starts = sorted(_ts(s["startTime"]) for s in stages_of(high).values())
    assert high_starts[-1] <= low_starts[2]
