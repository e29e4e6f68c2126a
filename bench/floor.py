"""The floor: a bare script that creates each Job the moment its dependencies' pods Succeeded.

One pod watch, 16 creator threads, no status, no checkpoints: what any operator on this
control plane must at least pay."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client as k8s

from bench.dags import Dag, dependents
from bench.kube import Watch
from bench.measure import LABEL_RUN, LABEL_STAGE, Key

CREATORS = 16


def job_manifest(run: str, stage: str, placement: dict[str, Any],
                 container: dict[str, Any] | None = None) -> dict[str, Any]:
    """``container``: the stage container's image and command (kwok: busybox, no command)."""
    labels = {LABEL_RUN: run, LABEL_STAGE: stage, "bench": "floor"}
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"{run}-{stage}", "labels": labels},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": labels},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "main", **(container or {"image": "busybox"})}],
                     **placement}}},
    }


def run_floor(api: k8s.ApiClient, namespace: str, dags: dict[str, Dag],
              placement: dict[str, Any], timeout: float = 900,
              container: dict[str, Any] | None = None) -> float:
    """Runs every DAG at once; returns the wall time until the last pod Succeeded."""
    batch = k8s.BatchV1Api(api)
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
    errors: list[str] = []
    end = [0.0]
    pool = ThreadPoolExecutor(CREATORS, thread_name_prefix="floor")

    def create(key: Key) -> None:
        try:
            batch.create_namespaced_job(namespace, job_manifest(*key, placement, container),
                                        _preload_content=False)
        except Exception as error:
            errors.append(repr(error))

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
                    pool.submit(create, child)
            if len(done) == total:
                end[0] = at
                finished.set()

    watch = Watch(api, f"/api/v1/namespaces/{namespace}/pods", on_pod, "bench=floor")
    start = time.monotonic()
    for key, count in remaining.items():
        if count == 0:
            pool.submit(create, key)
    ok = finished.wait(timeout)
    watch.stop()
    pool.shutdown(wait=False, cancel_futures=True)
    if not ok:
        raise RuntimeError(f"floor: {len(done)}/{total} done after {timeout} s; "
                           f"errors: {errors[:3]}")
    return end[0] - start
