"""The floor: a bare script that creates each Job the moment its dependencies' pods Succeeded.

One pod watch, 16 creator threads, no status, no checkpoints: what any operator on this
control plane must at least pay.

The pods-directly floor (``pods_directly=True``, `make bench-argo`) creates each stage's Pod
itself, with no Job: what a design without Jobs (Argo Workflows') could at best reach here, the
Job controller's share taken out. Its pods are owned by one ConfigMap per run, standing in for
the run object such a design would own its pods by (Argo: the Workflow); kwok finishes only pods
whose owner is of a kind it was told about, so the bench starts it with ``ConfigMap`` among them
(``POD_OWNER_KIND``)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from kubernetes import client as k8s

from bench.dags import Dag, dependents
from bench.kube import Watch
from bench.measure import LABEL_RUN, LABEL_STAGE, Key

CREATORS = 16
POD_OWNER_KIND = "ConfigMap"


def _labels(run: str, stage: str) -> dict[str, str]:
    return {LABEL_RUN: run, LABEL_STAGE: stage, "bench": "floor"}


def _pod_spec(placement: dict[str, Any], container: dict[str, Any] | None) -> dict[str, Any]:
    """``container``: the stage container's image and command (kwok: busybox, no command)."""
    return {"restartPolicy": "Never",
            "containers": [{"name": "main", **(container or {"image": "busybox"})}],
            **placement}


def job_manifest(run: str, stage: str, placement: dict[str, Any],
                 container: dict[str, Any] | None = None) -> dict[str, Any]:
    labels = _labels(run, stage)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"{run}-{stage}", "labels": labels},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": labels}, "spec": _pod_spec(placement, container)}},
    }


def pod_manifest(run: str, stage: str, owner: dict[str, str], placement: dict[str, Any],
                 container: dict[str, Any] | None = None) -> dict[str, Any]:
    """A stage's Pod for the pods-directly floor; ``owner``: the run's ConfigMap's name and uid."""
    reference = {"apiVersion": "v1", "kind": POD_OWNER_KIND, **owner}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{run}-{stage}", "labels": _labels(run, stage),
                     "ownerReferences": [reference]},
        "spec": _pod_spec(placement, container),
    }


class _Creator:
    """Creates a stage's Job, or with ``pods_directly`` its Pod, owned by its run's ConfigMap
    (``run_object`` creates that first); failures are collected, not raised (pool threads)."""

    def __init__(self, api: k8s.ApiClient, namespace: str, placement: dict[str, Any],
                 container: dict[str, Any] | None, pods_directly: bool) -> None:
        self.batch, self.core = k8s.BatchV1Api(api), k8s.CoreV1Api(api)
        self.namespace, self.placement, self.container = namespace, placement, container
        self.pods_directly = pods_directly
        self.owners: dict[str, dict[str, str]] = {}
        self.errors: list[str] = []

    def run_object(self, run: str) -> None:
        if not self.pods_directly:
            return
        created = self.core.create_namespaced_config_map(self.namespace, k8s.V1ConfigMap(
            metadata=k8s.V1ObjectMeta(name=run, labels={LABEL_RUN: run})))
        assert created.metadata is not None and created.metadata.uid is not None
        self.owners[run] = {"name": run, "uid": created.metadata.uid}

    def stage(self, key: Key) -> None:
        try:
            if self.pods_directly:
                pod = pod_manifest(*key, self.owners[key[0]], self.placement, self.container)
                self.core.create_namespaced_pod(self.namespace, cast(k8s.V1Pod, pod),
                                                _preload_content=False)
            else:
                job = job_manifest(*key, self.placement, self.container)
                self.batch.create_namespaced_job(self.namespace, cast(k8s.V1Job, job),
                                                 _preload_content=False)
        except Exception as error:
            self.errors.append(repr(error))


def run_floor(api: k8s.ApiClient, namespace: str, dags: dict[str, Dag],
              placement: dict[str, Any], timeout: float = 900,
              container: dict[str, Any] | None = None, *, pods_directly: bool = False) -> float:
    """Runs every DAG at once; returns the wall time until the last pod Succeeded.

    ``pods_directly``: create each stage's Pod rather than a Job (and first one owner ConfigMap
    per run, counted in the wall time like any run object's creation)."""
    creator = _Creator(api, namespace, placement, container, pods_directly)
    remaining: dict[Key, int] = {}
    after: dict[Key, list[Key]] = {}
    for run, dag in dags.items():
        for stage, deps in dag.items():
            remaining[(run, stage)] = len(deps)
        for stage, children in dependents(dag).items():
            after[(run, stage)] = [(run, c) for c in children]
    total = len(remaining)
    done: set[Key] = set()
    lock = threading.Lock()
    finished = threading.Event()
    end = [0.0]
    pool = ThreadPoolExecutor(CREATORS, thread_name_prefix="floor")

    def on_pod(kind: str, obj: dict[str, Any], at: float) -> None:
        if (obj.get("status") or {}).get("phase") != "Succeeded":
            return
        labels = obj["metadata"]["labels"]
        key = (labels[LABEL_RUN], labels[LABEL_STAGE])
        with lock:
            if key in done:
                return
            done.add(key)
            for child in after[key]:
                remaining[child] -= 1
                if remaining[child] == 0:
                    pool.submit(creator.stage, child)
            if len(done) == total:
                end[0] = at
                finished.set()

    watch = Watch(api, f"/api/v1/namespaces/{namespace}/pods", on_pod, "bench=floor")
    start = time.monotonic()
    list(pool.map(creator.run_object, dags))
    for key, count in remaining.items():
        if count == 0:
            pool.submit(creator.stage, key)
    ok = finished.wait(timeout)
    watch.stop()
    pool.shutdown(wait=False, cancel_futures=True)
    if not ok:
        raise RuntimeError(f"floor: {len(done)}/{total} done after {timeout} s; "
                           f"errors: {creator.errors[:3]}")
    return end[0] - start
