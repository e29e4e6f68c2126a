"""kubedag's Jobs and pods, folded from kopf's watch stream: which events wake their run, and
what a list after a lost watch repairs."""

from __future__ import annotations

import inspect
from typing import Any

import kopf
from kopf._cogs.clients.watching import Bookmark, infinite_watch
from kopf._cogs.structs.references import Resource

from kubedag.core.observe import LABEL_RUN_UID, PodSummary, summarize_pod
from kubedag.shell import handlers
from kubedag.shell.childwatch import ChildIndex, Wake


def pod(name: str, phase: str, run: str = "run-uid", exit_code: int | None = None,
        condition: str = "Ready") -> dict[str, Any]:
    state: dict[str, Any] = (
        {"terminated": {"exitCode": exit_code, "startedAt": "2026-11-30T00:00:00Z"}}
        if exit_code is not None else {})
    return {"metadata": {"uid": f"uid-{name}", "namespace": "ns", "name": name,
                         "labels": {LABEL_RUN_UID: run, "kubedag.io/stage": "a",
                                    "kubedag.io/attempt": "1", "job-name": "r-a-1"}},
            "status": {"phase": phase, "conditions": [{"type": condition, "status": "True"}],
                       "containerStatuses": [{"name": "main", "state": state}]}}


def event(kind: str | None, body: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": body}


def test_an_event_wakes_the_run_only_when_the_summary_changes() -> None:
    index: ChildIndex[PodSummary] = ChildIndex(summarize_pod)
    woken = [list(index.fold(event(kind, body))) for kind, body in (
        ("ADDED", pod("p", "Pending")),
        ("MODIFIED", pod("p", "Running")),
        ("MODIFIED", pod("p", "Running", condition="ContainersReady")),  # the kubelet's news
        ("MODIFIED", pod("p", "Succeeded", exit_code=0)),
        ("MODIFIED", pod("p", "Succeeded", exit_code=0)),  # e.g. the Job's finalizer removed
    )]
    # Appearing and running wake the run soon; only the end of the attempt at once.
    soon, at_once = Wake("run-uid", at_once=False), Wake("run-uid", at_once=True)
    assert woken == [[soon], [soon], [], [at_once], []]
    assert [p.phase for p in index["run-uid"]] == ["Succeeded"]
    assert index.run_of("ns", "p") == "run-uid"


def test_a_deletion_always_wakes_the_run_and_forgets_the_object() -> None:
    index: ChildIndex[PodSummary] = ChildIndex(summarize_pod)
    list(index.fold(event("ADDED", pod("p", "Succeeded", exit_code=0))))
    list(index.fold(event("ADDED", pod("q", "Running", run="other"))))
    assert list(index.fold(event("DELETED", pod("p", "Succeeded", exit_code=0)))) == [
        Wake("run-uid", at_once=True)]
    assert "run-uid" not in index and index.get("run-uid", ()) == ()
    assert index.run_of("ns", "p") is None and list(index) == ["other"]
    assert list(index.fold(event("DELETED", pod("p", "Succeeded")))) == []  # already gone


def test_a_list_after_a_lost_watch_drops_what_was_deleted_meanwhile() -> None:
    index: ChildIndex[PodSummary] = ChildIndex(summarize_pod)
    for body in (pod("kept", "Running"), pod("gone", "Running", run="other")):
        assert [w.run for w in index.fold(event(None, body))] == [
            body["metadata"]["labels"][LABEL_RUN_UID]]
    assert list(index.fold(Bookmark.LISTED)) == []  # the first list drops nothing
    # 410 Gone, then kopf lists again: "gone" was deleted while no watch was open.
    assert list(index.fold(event(None, pod("kept", "Running")))) == []
    assert list(index.fold(Bookmark.LISTED)) == [Wake("other", at_once=True)]
    assert set(index) == {"run-uid"} and index.run_of("ns", "gone") is None


def test_an_empty_list_after_a_lost_watch_drops_everything_it_held() -> None:
    index: ChildIndex[PodSummary] = ChildIndex(summarize_pod)
    list(index.fold(event(None, pod("p", "Running"))))
    list(index.fold(Bookmark.LISTED))
    assert list(index.fold(Bookmark.LISTED)) == [Wake("run-uid", at_once=True)]
    assert len(index) == 0


def test_a_namespaces_list_drops_only_that_namespaces_objects() -> None:
    """With KUBEDAG_NAMESPACES, one index takes one watch per namespace."""
    index: ChildIndex[PodSummary] = ChildIndex(summarize_pod)
    here, there = pod("here", "Running"), pod("there", "Running", run="other")
    there["metadata"]["namespace"] = "elsewhere"
    list(index.fold(event(None, here), "ns"))
    list(index.fold(Bookmark.LISTED, "ns"))
    list(index.fold(event(None, there), "elsewhere"))
    list(index.fold(Bookmark.LISTED, "elsewhere"))
    assert list(index.fold(Bookmark.LISTED, "ns")) == [Wake("run-uid", at_once=True)]
    assert set(index) == {"other"}


def test_objects_without_a_run_label_and_bookmarks_are_ignored() -> None:
    index: ChildIndex[PodSummary] = ChildIndex(summarize_pod)
    stray = pod("p", "Running")
    del stray["metadata"]["labels"][LABEL_RUN_UID]
    assert list(index.fold(event("ADDED", stray))) == []
    assert list(index.fold(event("BOOKMARK", {"metadata": {"resourceVersion": "9"}}))) == []
    assert len(index) == 0


def test_kopfs_watch_stream_still_takes_what_childwatch_passes() -> None:
    """childwatch uses kopf's internal watch stream: a kopf upgrade that changes it must fail
    here, not in a running operator."""
    parameters = inspect.signature(infinite_watch).parameters
    assert {"settings", "resource", "namespace"} <= set(parameters)
    assert Bookmark.LISTED in Bookmark


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
