"""kopf handlers: thin adapters from watch events to the caches and the work queue.

Only ``on.event`` handlers and indexes are used, so kopf writes nothing to our objects (no
finalizers, no progress annotations): the one status write per reconcile is the operator's own.
kubedag's Jobs and pods, most of the events, bypass kopf's handlers (kubedag.shell.childwatch).
The first handler call activates the replica (`_activate`): a standby under --peering gets none
until it takes over, and must not act on what it would have loaded before
(kubedag.shell.standby). Activation lists the stage cache, the Jobs and the pods before the
first reconcile, and kopf fills its indexes before it invokes any handler, so the first
reconcile after a restart already sees all of a run's Jobs and pods - which is what makes
"never re-create a Job" hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

import kopf
from kopf._cogs.structs import bodies
from kopf._cogs.structs.references import Insights
from kopf._core.reactor import observation

from kubedag import contract
from kubedag.core.estimate import NodeCapacity, node_capacity
from kubedag.core.mergepatch import merge_patch
from kubedag.core.observe import (
    LABEL_RUN_UID,
    summarize_workload,
    workload_owner,
)
from kubedag.core.pipelinestatus import pipeline_status
from kubedag.shell import metrics
from kubedag.shell.cache import RunCache, RunKey
from kubedag.shell.childwatch import JOBS, PODS, ChildWatch, Wake
from kubedag.shell.kube import Kube, new_api_client
from kubedag.shell.memory import collect_garbage_less_often, limit_arenas, trim_periodically
from kubedag.shell.reconciler import Indexes, Reconciler
from kubedag.shell.settings import OperatorSettings
from kubedag.shell.stagecache import StageCacheStore
from kubedag.shell.standby import Activation, exit_when_demoted, peering_priority
from kubedag.shell.workqueue import WorkQueue

log = logging.getLogger("kubedag.operator")
GROUP, VERSION = contract.API_GROUP, contract.API_VERSION
# A run's next pass waits this many times its last pass's compute time, so one run's passes
# take at most a seventh of a core: negligible for small runs (a pass of a 20-stage run takes
# about a millisecond), and on a 1,000-stage run (8-10 ms a pass) the rest of the CPU goes to
# the API server and the Job controller that run its Jobs. Measured on the fan-out (1 -> 982
# -> 16 -> 1), two runs each: with 2, operator CPU 7.8-8.1 s and wall 39.5-40.5 s; with 6,
# 4.9-5.1 s and 33.8-35.8 s, and dependency done -> Job created p50 3.1-3.6 s became 2.6-2.8 s.
PASS_PACING = 6.0
# A Job or pod change that cannot end an attempt (kubedag.core.observe.is_urgent) wakes its
# run within this long, unless a pass comes sooner: the status shows it that much later.
SOON_SECONDS = 1.0
# The one key of the nodes index: every schedulable node's summary, for fit checks.
ALL_NODES = "nodes"
# Nodes joining or changing within this many seconds re-check the Pipelines' Fits once.
FITS_REFRESH_DELAY = 5.0


class _State:
    """Process-wide state, created at startup (kopf handlers are module-level functions)."""

    settings: OperatorSettings
    kopf_settings: kopf.OperatorSettings  # for the watches of kubedag.shell.childwatch
    runs = RunCache()
    indexes = Indexes()
    queue: WorkQueue
    reconciler: Reconciler
    stage_cache: StageCacheStore
    workers: list[asyncio.Task[None]]
    # The nodes (by name) the Pipelines' Fits conditions were last computed against, and the
    # pending re-check after they changed.
    fitted_nodes: dict[str, NodeCapacity] | None = None
    fits_refresh: asyncio.Task[None] | None = None
    # What kopf serves, when Kueue's Workloads are watched (see watch_workloads).
    insights: Insights | None = None
    # Started by the first handler call: see kubedag.shell.standby.
    activation: Activation


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
    state.kopf_settings = settings
    settings.posting.enabled = False  # we post our own, aggregated Events
    settings.persistence.diffbase_storage = _NoDiffBase()
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    watch_only_our_jobs_and_pods(settings)
    settings.execution.max_workers = config.api_threads
    # Used only with --peering: the oldest replica leads (kubedag.shell.standby).
    settings.peering.priority = peering_priority(time.time())
    settings.peering.lifetime = config.peering_lifetime_seconds
    limit_arenas()
    collect_garbage_less_often()
    kube = Kube(new_api_client(config.api_threads))
    state.queue = WorkQueue()
    state.stage_cache = StageCacheStore(kube)
    state.reconciler = Reconciler(kube, config, state.runs, state.indexes,
                                  stage_cache=state.stage_cache)
    state.reconciler.wake = state.queue.add
    metrics.watch_runs(lambda: list(state.runs.bodies.values()))
    metrics.watch_cache(lambda: [(e.namespace, e.pipeline)
                                 for e in state.stage_cache.index.entries()])
    metrics.watch_breakers(state.reconciler.breakers.rows)
    if config.metrics_port:
        metrics.serve(config.metrics_port)
    state.workers = [asyncio.create_task(trim_periodically())]
    if state.insights is not None:
        state.workers.append(asyncio.create_task(rescan_for_kueue(settings, state.insights)))
    state.activation = Activation(_activate)
    exit_when_demoted(state.activation)


def watch_only_our_jobs_and_pods(settings: kopf.OperatorSettings) -> None:
    """Have the API server send only kubedag's Jobs and pods (kopf's watch stream, which
    kubedag.shell.childwatch uses, reads its label selectors from kopf's settings).

    Filtering after the fact would take in every Job and pod change of the whole cluster (in
    `make bench`, the floor's too), decoding each only to drop it.
    """
    for resource in (("batch", "v1", "jobs"), ("", "v1", "pods")):
        settings.watching.label_selectors[resource] = LABEL_RUN_UID


async def _activate() -> None:
    """What a replica needs once it leads (at once when it runs alone; a standby when it takes
    over): the stage cache index as it is now, and the loops that act on what it holds."""
    config = state.settings
    # Every entry indexed before the first reconcile: a run after a restart still hits.
    await state.stage_cache.load(config.namespaces)
    # Likewise every Job and pod: a run after a restart must not re-create a Job.
    watches = [ChildWatch(JOBS, state.indexes.jobs, _wake_for_child),
               ChildWatch(PODS, state.indexes.pods, _wake_for_child)]
    for watch in watches:
        state.workers.extend(watch.start(state.kopf_settings, config.namespaces))
    await asyncio.gather(*(watch.listed() for watch in watches))
    state.workers.extend(asyncio.create_task(_worker(i)) for i in range(config.workers))
    state.workers.append(asyncio.create_task(
        state.stage_cache.collect_periodically(config.cache_gc_seconds)))
    state.workers.append(asyncio.create_task(state.reconciler.breakers.tick_forever()))


async def _enter(kwargs: dict[str, Any]) -> None:
    """Every handler's first step: kopf's current indexes bound, the replica activated."""
    _bind(kwargs)
    await state.activation.ensure()


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    for task in getattr(state, "workers", []):
        task.cancel()
    if hasattr(state, "reconciler"):
        # Decided but unwritten status would be re-derived after a restart; writing it now
        # saves the next operator that work (and keeps `kubectl get` current meanwhile).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(state.reconciler.writer.flush(),
                                                  state.reconciler.events.drain(),
                                                  state.reconciler.breakers.flush()),
                                   timeout=10)
        await state.reconciler.kube.close()


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
# Coroutines, though nothing in them awaits: kopf runs a plain function in a thread pool, and
# that hop cost more than the function (py-spy, when Jobs and pods were indexed here too).

@kopf.index("", "v1", "nodes")
async def kubedag_nodes(body: kopf.Body, **_: Any) -> dict[str, NodeCapacity]:
    """What each schedulable node offers (a few hundred bytes a node); a cordoned node, none."""
    summary = node_capacity(dict(body))
    return {} if summary is None else {ALL_NODES: summary}


@kopf.index(GROUP, VERSION, "circuitbreakers")
async def kubedag_breakers(namespace: str | None, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """(namespace, key) -> the CircuitBreaker's body: complete before the first reconcile, so
    that a restarted operator holds the stages its predecessor held."""
    key = (body.get("spec") or {}).get("key")
    return {(namespace, key): dict(body)} if isinstance(key, str) else {}


def _bind(kwargs: dict[str, Any]) -> None:
    state.reconciler.breakers.index = kwargs["kubedag_breakers"]
    state.indexes.nodes = kwargs["kubedag_nodes"]
    # Only there when watch_workloads() registered them.
    state.indexes.workloads = kwargs.get("kubedag_workloads", {})


# --- Kueue: registered by watch_workloads() unless KUBEDAG_KUEUE=off ---------------------------

KUEUE_GROUP = "kueue.x-k8s.io"


# How often to look for Kueue's Workloads API while kopf does not serve it (see below): soon
# after the start (Kueue installed together with the operator), then once a minute.
KUEUE_RESCAN_FIRST_SECONDS = 2.0
KUEUE_RESCAN_MAX_SECONDS = 60.0


def watch_workloads(insights: Insights) -> None:
    """Watch Kueue's Workloads of kubedag's Jobs: what a queued stage waits for, and when it
    was admitted. ``insights``: what kopf.run serves (the same object), for the rescan.

    Versionless on purpose: kopf serves the API server's preferred version (v1beta2 from
    Kueue 0.15 on, v1beta1 before), and summaries read only metadata and conditions, which
    both versions share. Where the CRD does not exist kopf serves nothing, and starts when
    it appears: kopf watches CRDs and rescans a CRD's API group on each event. The API
    server's discovery may lag those events, though (a CRD Established before its group is
    listed), and kopf then never notices: the startup handler therefore also rescans Kueue's
    group, every minute at most, until kopf serves Workloads.
    """
    state.insights = insights
    kopf.index(KUEUE_GROUP, "workloads", when=_owned_by_job)(kubedag_workloads)
    kopf.on.event(KUEUE_GROUP, "workloads", when=_owned_by_job)(workload_event)
    logging.getLogger("kopf._core.reactor.observation").addFilter(AbsentKueueFilter())
    log.info("Kueue: watching Workloads whenever the API server serves them "
             "(KUBEDAG_KUEUE=auto)")


def serves_workloads(insights: Insights) -> bool:
    return any(r.group == KUEUE_GROUP and r.plural == "workloads"
               for r in insights.watched_resources)


async def rescan_for_kueue(settings: kopf.OperatorSettings, insights: Insights) -> None:
    """Until kopf serves Kueue's Workloads: look again at Kueue's API group, as kopf does on a
    CRD event (same function, kopf 1.45), so that Kueue installed at any time is picked up."""
    registry = kopf.get_default_registry()
    event = bodies.RawEvent(type="MODIFIED", object={"spec": {"group": KUEUE_GROUP}})
    delay = KUEUE_RESCAN_FIRST_SECONDS
    while not serves_workloads(insights):
        await asyncio.sleep(delay)
        delay = min(delay * 2, KUEUE_RESCAN_MAX_SECONDS)
        if serves_workloads(insights):
            break  # kopf's own CRD watch found them meanwhile
        try:
            await observation.process_discovered_resource_event(
                raw_event=event, settings=settings, registry=registry, insights=insights)
        except Exception:  # the API may be unreachable a moment: try again next time
            log.warning("looking for Kueue's Workloads API failed", exc_info=True)
    # Said once, when it becomes true: tests wait for this line before they time admissions.
    log.info("Kueue: watching Workloads")


class AbsentKueueFilter(logging.Filter):
    """Drops kopf's warning that Workloads "cannot be served (try creating their CRDs)": on a
    cluster without Kueue that is how it should be, and kopf repeats it on every CRD change.
    The warning stays when it names other resources too."""

    ALONE = ("Unresolved resources cannot be served (try creating their CRDs): "
             f"Selector(group='{KUEUE_GROUP}', any_name='workloads')")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self.ALONE


def _owned_by_job(body: kopf.Body, **_: Any) -> bool:
    return workload_owner(dict(body)) is not None


async def kubedag_workloads(namespace: str | None, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """(namespace, Job name) -> the summary of the Job's Workload. Workloads of Jobs that are
    not kubedag's are indexed too (small, and a Workload carries no kubedag label to filter
    by: Kueue copies none by default); no run ever looks them up."""
    summary = summarize_workload(dict(body))
    return {} if summary is None else {(namespace, summary.job): summary}


async def workload_event(namespace: str | None, body: kopf.Body, **kwargs: Any) -> None:
    await _enter(kwargs)
    job = workload_owner(dict(body))
    run_uid = state.indexes.jobs.run_of(namespace or "", job) if job else None
    if run_uid is not None:
        _wake(run_uid, urgent=True)  # an admission lets a stage start


# --- events -----------------------------------------------------------------------------------

@kopf.on.event(GROUP, VERSION, "pipelineruns")
async def run_event(body: kopf.Body, type: str | None, **kwargs: Any) -> None:
    await _enter(kwargs)
    raw = dict(body)
    if type == "DELETED":
        gone = state.runs.forget(raw)
        state.queue.forget(gone)
        state.reconciler.forget(gone, raw["metadata"].get("uid", ""))
        return
    news = state.runs.offer(raw)
    if news is not None:
        state.queue.add(news)


@kopf.on.event(GROUP, VERSION, "stagecacheentries")
async def cache_entry_event(body: kopf.Body, type: str | None, **kwargs: Any) -> None:
    """Entries created by this operator are indexed when it creates them; this keeps the
    index current with the rest: entries of another replica, deleted or edited ones."""
    await _enter(kwargs)
    state.stage_cache.observed(dict(body), deleted=type == "DELETED")


@kopf.on.event(GROUP, VERSION, "circuitbreakers")
async def breaker_event(body: kopf.Body, type: str | None, **kwargs: Any) -> None:
    """A CircuitBreaker changed: a person set forceState or thresholds, or deleted it; or the
    operator's own write came back (nothing to do then)."""
    await _enter(kwargs)
    state.reconciler.breakers.observe(dict(body), deleted=type == "DELETED")


@kopf.on.event(GROUP, VERSION, "pipelines")
async def pipeline_event(namespace: str | None, name: str, body: kopf.Body, type: str,
                         **kwargs: Any) -> None:
    """A Pipeline appeared or changed: report whether it is valid; waiting runs can start."""
    await _enter(kwargs)
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
    await _enter(kwargs)
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


def _wake_for_child(wake: Wake) -> None:
    if wake.at_once:
        _wake(wake.run, urgent=True)
    else:
        _wake(wake.run, within=SOON_SECONDS)


def _wake(run_uid: str, within: float = 0.0, urgent: bool = False) -> None:
    """Queue the run's next pass: at once (ahead of ordinary passes when ``urgent``: see
    kubedag.shell.workqueue), or ``within`` seconds unless one comes sooner."""
    key = state.runs.keys_by_uid.get(run_uid)
    if key is None:
        return
    if within:
        state.queue.add_soon(key, within)
    else:
        state.queue.add(key, urgent)
