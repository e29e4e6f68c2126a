"""The floor: a bare script that creates each Job the moment its dependencies' pods Succeeded.

One pod watch, 16 creator threads, no status, no checkpoints: what any operator on this
control plane must at least pay.

The pods-directly floor (``kind="pods"``, `make bench-argo`) creates each stage's Pod
itself, with no Job: what a design without Jobs (Argo Workflows') could at best reach here, the
Job controller's share taken out. Its pods are owned by one ConfigMap per run, standing in for
the run object such a design would own its pods by (Argo: the Workflow); kwok finishes only pods
whose owner is of a kind it was told about, so the bench starts it with ``ConfigMap`` among them
(``POD_OWNER_KIND``).

The kubedag-Jobs floor (``kind="kubedag"``) creates the very Jobs kubedag's operator would
(``kubedag.core.jobspec.build_job``: its labels, environment, security context, volumes and
TTL), owned by one ConfigMap per run as above: the floor of a design that creates kubedag's Jobs,
so that what kubedag's pods cost the API server, the Job controller and kwok is told apart from
what its operator costs."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, cast

from kubernetes import client as k8s

from bench.dags import Dag, dependents
from bench.kube import Watch
from bench.measure import LABEL_RUN, LABEL_STAGE, Key
from kubedag.api import PipelineSpec, Stage
from kubedag.core.jobspec import JobSettings, RunIdentity, build_job
from kubedag.core.observe import LABEL_RUN_UID

CREATORS = 16
POD_OWNER_KIND = "ConfigMap"
# What the floor creates per stage: a bare Job, the Job kubedag's operator would create, or a
# bare Pod (no Job).
FloorKind = Literal["jobs", "kubedag", "pods"]
# The kubedag-Jobs floor's stand-in for kubedag's run-uid label: as many bytes, but outside the
# selector of the operator's Job and pod watches, which would otherwise index them.
FLOOR_RUN_UID_LABEL = LABEL_RUN_UID.replace("/run-uid", "/flr-uid")


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


def kubedag_job_manifest(run: str, stage: Stage, owner: dict[str, str], namespace: str,
                         pipeline: PipelineSpec) -> dict[str, Any]:
    """The Job kubedag's operator creates for the first attempt of ``stage`` (no upstream
    outputs, as in the bench), owned by the run's ConfigMap instead of a PipelineRun and
    labelled so that the floor's pod watch sees it and the operator's does not."""
    job = build_job(run=RunIdentity(run, namespace, owner["uid"], run), pipeline=pipeline,
                    stage=stage, attempt=1, params={},
                    outputs=dict.fromkeys(stage.depends_on or []), settings=JobSettings())
    for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
        labels = meta["labels"] = dict(meta["labels"])  # the Job and its template share one
        labels[FLOOR_RUN_UID_LABEL] = labels.pop(LABEL_RUN_UID)
        labels["bench"] = "floor"
    job["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": POD_OWNER_KIND, **owner,
                                           "controller": True, "blockOwnerDeletion": True}]
    return job


class _Creator:
    """Creates a stage's Job or Pod (see FloorKind), owned by its run's ConfigMap where the
    kind needs one (``run_object`` creates that first); failures are collected, not raised
    (pool threads)."""

    def __init__(self, api: k8s.ApiClient, namespace: str, placement: dict[str, Any],
                 container: dict[str, Any] | None, kind: FloorKind,
                 pipeline: PipelineSpec | None) -> None:
        self.batch, self.core = k8s.BatchV1Api(api), k8s.CoreV1Api(api)
        self.namespace, self.placement, self.container = namespace, placement, container
        self.kind, self.pipeline = kind, pipeline
        # Looked up per create, in the timed part: indexed once here.
        self.stages = {s.name: s for s in pipeline.stages} if pipeline is not None else {}
        self.owners: dict[str, dict[str, str]] = {}
        self.errors: list[str] = []

    def run_object(self, run: str) -> None:
        if self.kind == "jobs":
            return
        created = self.core.create_namespaced_config_map(self.namespace, k8s.V1ConfigMap(
            metadata=k8s.V1ObjectMeta(name=run, labels={LABEL_RUN: run})))
        assert created.metadata is not None and created.metadata.uid is not None
        self.owners[run] = {"name": run, "uid": created.metadata.uid}

    def stage(self, key: Key) -> None:
        try:
            if self.kind == "pods":
                pod = pod_manifest(*key, self.owners[key[0]], self.placement, self.container)
                self.core.create_namespaced_pod(self.namespace, cast(k8s.V1Pod, pod),
                                                _preload_content=False)
            else:
                run, stage = key
                job = (kubedag_job_manifest(run, self.stages[stage], self.owners[run],
                                            self.namespace, self.pipeline)
                       if self.kind == "kubedag" and self.pipeline is not None else
                       job_manifest(run, stage, self.placement, self.container))
                self.batch.create_namespaced_job(self.namespace, cast(k8s.V1Job, job),
                                                 _preload_content=False)
        except Exception as error:  # an ApiException's repr leaves out the API server's reason
            if getattr(error, "status", None) == 409:
                return  # AlreadyExists: the client's retry of a create that had gone through
            self.errors.append(str(getattr(error, "body", None) or repr(error)))


def run_floor(api: k8s.ApiClient, namespace: str, dags: dict[str, Dag],
              placement: dict[str, Any], timeout: float = 900,
              container: dict[str, Any] | None = None, *, kind: FloorKind = "jobs",
              pipeline: PipelineSpec | None = None) -> float:
    """Runs every DAG at once; returns the wall time until the last pod Succeeded.

    ``kind``: what is created per stage (FloorKind); "pods" and "kubedag" first create one
    owner ConfigMap per run, counted in the wall time like any run object's creation.
    ``pipeline``: for "kubedag", the spec kubedag runs (its stages are the DAG's)."""
    if kind == "kubedag" and pipeline is None:
        raise ValueError("the kubedag-Jobs floor needs the pipeline spec")
    creator = _Creator(api, namespace, placement, container, kind, pipeline)
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
    deadline = start + timeout
    while not finished.wait(0.5) and not creator.errors and time.monotonic() < deadline:
        pass  # a refused create ends the floor at once: its stage's dependants would never start
    ok = finished.is_set()
    watch.stop()
    pool.shutdown(wait=False, cancel_futures=True)
    if not ok:
        raise RuntimeError(f"floor: {len(done)}/{total} done after "
                           f"{time.monotonic() - start:.0f} s; "
                           f"errors: {creator.errors[:3]}")
    return end[0] - start
