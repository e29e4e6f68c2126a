"""Which Job and pod events wake their run: only those that change what decide() sees."""

from __future__ import annotations

from datetime import UTC, datetime

import kopf
from kopf._cogs.structs.references import Resource

from kubedag.core.observe import LABEL_RUN_UID, PodSummary
from kubedag.shell import handlers
from kubedag.shell.handlers import _summarized, _summary_changed


def pod(phase: str, exit_code: int | None = None) -> PodSummary:
    return PodSummary(name="r-a-1-x", job="r-a-1", stage="a", attempt=1, phase=phase,
                      exit_code=exit_code, started=datetime(2026, 11, 30, tzinfo=UTC))


def test_an_event_wakes_the_run_only_when_the_summary_changes() -> None:
    memo = kopf.Memo()
    seen = []
    for summary in (pod("Pending"), pod("Running"), pod("Running"),  # e.g. a new condition
                    pod("Running"), pod("Succeeded", 0), pod("Succeeded", 0)):  # finalizer gone
        assert _summarized(memo, summary) is summary
        seen.append(_summary_changed(memo, "MODIFIED"))
    assert seen == [True, True, False, False, True, False]


def test_a_deletion_always_wakes_the_run() -> None:
    memo = kopf.Memo()
    _summarized(memo, pod("Succeeded", 0))
    _summarized(memo, pod("Succeeded", 0))
    assert not _summary_changed(memo, "MODIFIED")
    assert _summary_changed(memo, "DELETED")


def test_an_object_never_indexed_wakes_its_run() -> None:
    assert _summary_changed(kopf.Memo(), None)


def test_the_api_server_sends_only_kubedags_jobs_and_pods() -> None:
    settings = kopf.OperatorSettings()
    handlers.watch_only_our_jobs_and_pods(settings)
    selectors = settings.watching.label_selectors

    def resource(group: str, plural: str, kind: str) -> Resource:
        return Resource(group=group, version="v1", plural=plural, kind=kind, namespaced=True)

    assert selectors.collect(resource("batch", "jobs", "Job")) == [LABEL_RUN_UID]
    assert selectors.collect(resource("", "pods", "Pod")) == [LABEL_RUN_UID]
    # Runs, nodes and Kueue's Workloads (which carry no kubedag label) come unfiltered.
    assert selectors.collect(resource("kubedag.io", "pipelineruns", "PipelineRun")) == []
    assert selectors.collect(resource("", "nodes", "Node")) == []
    assert selectors.collect(resource("kueue.x-k8s.io", "workloads", "Workload")) == []
