"""kopf handlers: thin adapters from watch events to the caches and the work queue.

Only ``on.event`` handlers and indexes are used, so kopf writes nothing to our objects (no
finalizers, no progress annotations): the one status write per reconcile is the operator's own.
kopf fills every index before it invokes any handler, so the first reconcile after a restart
already sees all of a run's Jobs and pods - which is what makes "never re-create a Job" hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import kopf

from kubedag import contract
from kubedag.core.estimate import NodeCapacity, node_capacity
from kubedag.core.mergepatch import merge_patch
from kubedag.core.observe import LABEL_RUN_UID, summarize_job, summarize_pod
from kubedag.core.pipelinestatus import pipeline_status
from kubedag.shell import metrics
from kubedag.shell.cache import RunCache, RunKey
from kubedag.shell.kube import Kube, new_api_client
from kubedag.shell.memory import limit_arenas, trim_periodically
from kubedag.shell.reconciler import Indexes, Reconciler
from kubedag.shell.settings import OperatorSettings
from kubedag.shell.workqueue import WorkQueue

log = logging.getLogger("kubedag.operator")
GROUP, VERSION = contract.API_GROUP, contract.API_VERSION
OURS = {LABEL_RUN_UID: kopf.PRESENT}
# A run's next pass waits this many times its last pass's compute time: negligible for small
# runs (milliseconds), a third of a core at most for a 1,000-stage one.
PASS_PACING = 2.0
# The one key of the nodes index: every schedulable node's summary, for fit checks.
ALL_NODES = "nodes"
# Nodes joining or changing within this many seconds re-check the Pipelines' Fits once.
FITS_REFRESH_DELAY = 5.0


class _State:
    """Process-wide state, created at startup (kopf handlers are module-level functions)."""

    settings: OperatorSettings
    runs = RunCache()
    indexes = Indexes()
    queue: WorkQueue
    reconciler: Reconciler
    workers: list[asyncio.Task[None]]
    # The nodes (by name) the Pipelines' Fits conditions were last computed against, and the
    # pending re-check after they changed.
    fitted_nodes: dict[str, NodeCapacity] | None = None
    fits_refresh: asyncio.Task[None] | None = None


state = _State()


class _NoDiffBase(kopf.AnnotationsDiffBaseStorage):
    """No diff base at all: kubedag registers no on.create/update/delete handlers.

    kopf builds an "essence" of every event's body (a deep copy of spec and metadata, then a
    second copy to strip its progress fields) and diffs it, only to feed change handlers. For a
    1,000-stage run that was the operator's largest CPU cost in the benchmarks (py-spy), for
    nothing. Should change handlers ever be added, remove this: their diffs would be empty.
    """

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return None

    def fetch(self, *, body: Any) -> Any:
        return None


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    config = OperatorSettings.from_env()
    state.settings = config
    settings.posting.enabled = False  # we post our own, aggregated Events
    settings.persistence.diffbase_storage = _NoDiffBase()
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    settings.execution.max_workers = config.api_threads
    limit_arenas()
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=config.api_threads, thread_name_prefix="kube"))
    kube = Kube(new_api_client(config.api_threads))
    state.queue = WorkQueue()
    state.reconciler = Reconciler(kube, config, state.runs, state.indexes)
    state.reconciler.wake = state.queue.add
    metrics.watch_runs(lambda: list(state.runs.bodies.values()))
    if config.metrics_port:
        metrics.serve(config.metrics_port)
    state.workers = [asyncio.create_task(_worker(i)) for i in range(config.workers)]
    state.workers.append(asyncio.create_task(trim_periodically()))


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    for task in getattr(state, "workers", []):
        task.cancel()
    if hasattr(state, "reconciler"):
        # Decided but unwritten status would be re-derived after a restart; writing it now
        # saves the next operator that work (and keeps `kubectl get` current meanwhile).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(state.reconciler.writer.flush(),
                                                  state.reconciler.events.drain()), timeout=10)


async def _worker(number: int) -> None:
    while True:
        key: RunKey = await state.queue.get()  # type: ignore[assignment]
        try:
            requeue = await state.reconciler.reconcile(key)
            state.queue.succeeded(key)
        except asyncio.CancelledError:
            raise
        except Exception:
            requeue = state.queue.backoff(key)
            log.exception("reconcile of %s/%s failed; retrying in %.1f s", *key, requeue)
        finally:
            state.queue.rest(key, state.reconciler.pass_cost.pop(key, 0.0) * PASS_PACING)
            state.queue.done(key)
        if requeue is not None:
            state.queue.add_after(key, requeue)


# --- indexes: kopf keeps them current and complete before handlers run ----------------------

@kopf.index("batch", "v1", "jobs", labels=OURS)
def kubedag_jobs(body: kopf.Body, labels: kopf.Labels, **_: Any) -> dict[str, Any]:
    return {labels[LABEL_RUN_UID]: summarize_job(dict(body))}


@kopf.index("", "v1", "pods", labels=OURS)
def kubedag_pods(body: kopf.Body, labels: kopf.Labels, **_: Any) -> dict[str, Any]:
    return {labels[LABEL_RUN_UID]: summarize_pod(dict(body))}


@kopf.index("", "v1", "nodes")
def kubedag_nodes(body: kopf.Body, **_: Any) -> dict[str, NodeCapacity]:
    """What each schedulable node offers (a few hundred bytes a node); a cordoned node, none."""
    summary = node_capacity(dict(body))
    return {} if summary is None else {ALL_NODES: summary}


def _bind(kwargs: dict[str, Any]) -> None:
    state.indexes.jobs = kwargs["kubedag_jobs"]
    state.indexes.pods = kwargs["kubedag_pods"]
    state.indexes.nodes = kwargs["kubedag_nodes"]


# --- events -----------------------------------------------------------------------------------

@kopf.on.event(GROUP, VERSION, "pipelineruns")
async def run_event(body: kopf.Body, type: str | None, **kwargs: Any) -> None:
    _bind(kwargs)
    raw = dict(body)
    if type == "DELETED":
        key = state.runs.forget(raw)
        state.queue.forget(key)
        state.reconciler.forget(key, raw["metadata"].get("uid", ""))
        return
    state.queue.add(state.runs.put(raw))


@kopf.on.event("batch", "v1", "jobs", labels=OURS)
async def job_event(labels: kopf.Labels, **kwargs: Any) -> None:
    _bind(kwargs)
    _wake(labels[LABEL_RUN_UID])


@kopf.on.event("", "v1", "pods", labels=OURS)
async def pod_event(labels: kopf.Labels, **kwargs: Any) -> None:
    _bind(kwargs)
    _wake(labels[LABEL_RUN_UID])


@kopf.on.event(GROUP, VERSION, "pipelines")
async def pipeline_event(namespace: str | None, name: str, body: kopf.Body, type: str,
                         **kwargs: Any) -> None:
    """A Pipeline appeared or changed: report whether it is valid; waiting runs can start."""
    _bind(kwargs)
    if type != "DELETED" and namespace is not None:
        await _write_pipeline_status(namespace, name, dict(body), state.indexes.node_list())
    for key, run in list(state.runs.bodies.items()):
        ref = (run.get("spec") or {}).get("pipelineRef") or {}
        started = (run.get("status") or {}).get("pipelineSpec")
        if key[0] == namespace and ref.get("name") == name and not started:
            state.queue.add(key)


@kopf.on.event("", "v1", "nodes")
async def node_event(body: kopf.Body, name: str, type: str | None, **kwargs: Any) -> None:
    """A node changed what it offers (joined, left, cordoned, relabelled, resized): check
    every Pipeline's fit again, once for a burst of such changes. A status heartbeat leaves
    the node's summary as it was and costs one comparison."""
    _bind(kwargs)
    summary = None if type == "DELETED" else node_capacity(dict(body))
    if state.fitted_nodes is not None and state.fitted_nodes.get(name) == summary:
        return
    if state.fits_refresh is None or state.fits_refresh.done():
        state.fits_refresh = asyncio.create_task(_refresh_fits())


async def _refresh_fits() -> None:
    await asyncio.sleep(FITS_REFRESH_DELAY)
    nodes = state.indexes.node_list()
    try:
        for body in await state.reconciler.kube.list_pipelines(state.settings.namespaces):
            meta = body.get("metadata") or {}
            await _write_pipeline_status(str(meta.get("namespace")), str(meta.get("name")),
                                         body, nodes)
    except Exception:  # the next node change tries again; a Pipeline event also refreshes
        log.exception("re-checking the Pipelines' fit on the nodes failed")
        return
    state.fitted_nodes = {node.name: node for node in nodes}


async def _write_pipeline_status(namespace: str, name: str, body: dict[str, Any],
                                 nodes: list[NodeCapacity]) -> None:
    old = dict(body.get("status") or {})
    new = pipeline_status(dict(body.get("spec") or {}),
                          int((body.get("metadata") or {}).get("generation", 1)), old,
                          datetime.now(UTC), nodes)
    patch = merge_patch(old, new)
    if patch:
        await state.reconciler.kube.patch_pipeline_status(namespace, name, patch)


def _wake(run_uid: str) -> None:
    key = state.runs.keys_by_uid.get(run_uid)
    if key is not None:
        state.queue.add(key)
