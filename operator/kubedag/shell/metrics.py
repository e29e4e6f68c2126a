"""Every `kubedag_` Prometheus series, in one place (the Job controller's `metrics` package).

Two kinds of series:

* **Events**, counted by the shell when they happen: reconcile duration and errors, API writes,
  and run/stage transitions. A transition is derived by comparing the status a reconcile read
  with the status it wrote (`record_transitions`, called only after the write succeeded), so it
  is counted once per transition, never once per pass - and not again after a restart, since
  the old status then is the persisted one.
* **State**, computed at scrape time from the operator's run cache (`RunStateCollector`): runs
  by phase, progress of running runs, stages running/pending and what running stages request.
  Nothing has to be "removed when the run ends": a run that ended is simply not reported.

Labels are bounded: namespace, pipeline (a run with an inline spec reports `(inline)`), stage,
phase, outcome, reason. Only `kubedag_run_progress_ratio` carries a run label, and only while the
run is active. Process and Python platform metrics come from prometheus-client's collectors.
The series labelled by stage are exported at 0 for every stage of a run, so they are kept by
kubedag.shell.series: about 2 KB a stage instead of prometheus-client's 26 KB.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from kubedag.core import reasons
from kubedag.core.naming import INLINE_PIPELINE
from kubedag.core.quantity import parse_quantity
from kubedag.shell.series import LabelledCounter, LabelledHistogram, exposition_chunks

log = logging.getLogger("kubedag.metrics")

RUN_PHASES = ("Pending", "Running", "Paused", "Succeeded", "Failed", "Cancelled")
_FINISHED_RUN = frozenset({"Succeeded", "Failed", "Cancelled"})
_FINISHED_STAGE = frozenset({"Succeeded", "Failed", "Skipped", "Cancelled"})
# The outcome label of kubedag_fallbacks_total: a fallback's start, then the phase it ends in.
_FALLBACK_ENDS = ("Succeeded", "Failed", "Cancelled")
FALLBACK_OUTCOMES = ("Started", *_FALLBACK_ENDS)

# Runs and stages last seconds to days.
DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800,
                    86400, float("inf"))
RECONCILE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                     float("inf"))
CPU_SECONDS_BUCKETS = (0.1, 1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400,
                       float("inf"))
MEMORY_BUCKETS = (*(float(2**k * 1024 * 1024) for k in range(4, 19)), float("inf"))  # 16Mi-256Gi
# A pod's GPUs: from a small model on one device to eight 141 GiB H200s.
GPU_MEMORY_BUCKETS = (*(float(2**k * 1024 * 1024) for k in range(8, 21)), float("inf"))  # 256Mi-1Ti
RATIO_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, float("inf"))


def pipeline_of(body: Mapping[str, Any]) -> str:
    """The `pipeline` label of a run: its pipelineRef, or `(inline)` (never the run's name)."""
    ref = (body.get("spec") or {}).get("pipelineRef") or {}
    name = ref.get("name")
    return str(name) if name else INLINE_PIPELINE


def failure_reason(checkpoint: Mapping[str, Any]) -> str:
    """The bounded, CamelCase reason of a failed attempt or stage: its checkpoint's reason
    (kubedag.core.reasons), guessed from the message only for statuses written before every
    failure had one."""
    if checkpoint.get("reason"):
        return str(checkpoint["reason"])[:64]
    message = str(checkpoint.get("message") or "")
    if message.startswith("stage timed out") or "DeadlineExceeded" in message:
        return reasons.DEADLINE_EXCEEDED
    if "OOMKilled" in message:
        return reasons.OOM_KILLED
    if "disappeared" in message:
        return reasons.JOB_LOST
    if "rejected" in message:
        return reasons.JOB_REJECTED
    if message.startswith("Job failed"):
        return reasons.JOB_FAILED
    if checkpoint.get("exitCode") not in (None, 0):
        return reasons.EXIT_CODE
    return "Other"


class Metrics:
    """The event series, registered on ``registry`` (the operator's own, by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.reconcile_duration = Histogram(
            "kubedag_reconcile_duration_seconds",
            "Time one reconcile of one PipelineRun took (decide, API calls, status write).",
            buckets=RECONCILE_BUCKETS, registry=r)
        self.reconcile_errors = Counter(
            "kubedag_reconcile_errors_total",
            "Reconciles that raised an error (retried with backoff).", registry=r)
        self.api_writes = Counter(
            "kubedag_kube_api_writes_total",
            "Write requests the operator sent to the Kubernetes API, by verb and resource.",
            ["verb", "resource"], registry=r)
        self.runs_started = Counter(
            "kubedag_runs_started_total", "PipelineRuns that started.",
            ["namespace", "pipeline"], registry=r)
        self.run_duration = Histogram(
            "kubedag_run_duration_seconds",
            "Duration of finished PipelineRuns, from start to completion, by outcome (phase).",
            ["namespace", "pipeline", "outcome"], buckets=DURATION_BUCKETS, registry=r)
        self.stage_duration = LabelledHistogram(
            "kubedag_stage_duration_seconds",
            "Duration of finished stages, from their first attempt's start (with Kueue: its "
            "admission) to the finish, retries included, by outcome (phase).",
            ["namespace", "pipeline", "stage", "outcome"], r, DURATION_BUCKETS)
        self.stage_queue = LabelledHistogram(
            "kubedag_stage_queue_seconds",
            "Time a stage attempt's Job waited for Kueue to admit it (runs with a queueName), "
            "observed at admission; not part of kubedag_stage_duration_seconds' first wait.",
            ["namespace", "pipeline", "stage"], r, DURATION_BUCKETS)
        self.stage_attempts = LabelledCounter(
            "kubedag_stage_attempts_total", "Stage attempts started (one Job each).",
            ["namespace", "pipeline", "stage"], r)
        self.stage_retries = LabelledCounter(
            "kubedag_stage_retries_total", "Stage attempts that were retries (attempt > 1).",
            ["namespace", "pipeline", "stage"], r)
        self.stage_failures = LabelledCounter(
            "kubedag_stage_failures_total",
            "Failed stage attempts (retried or final) and stages failed without an attempt, by "
            "reason (ExitCode, DeadlineExceeded, OOMKilled, ImagePullFailed, "
            "ContainerConfigError, PodLost, JobLost, ...: the stage checkpoint's reason).",
            ["namespace", "pipeline", "stage", "reason"], r)
        self.fallbacks = LabelledCounter(
            "kubedag_fallbacks_total",
            "Stage fallbacks, by outcome: Started (the stage failed for good and its fallback "
            "began), then Succeeded (the stage was recovered), Failed or Cancelled.",
            ["namespace", "pipeline", "stage", "outcome"], r)
        self.stage_cpu = LabelledHistogram(
            "kubedag_stage_cpu_seconds",
            "CPU time of a stage attempt, as its worker reported it.",
            ["namespace", "pipeline", "stage"], r, CPU_SECONDS_BUCKETS)
        self.stage_memory = LabelledHistogram(
            "kubedag_stage_peak_memory_bytes",
            "Peak resident memory of a stage attempt, as its worker reported it.",
            ["namespace", "pipeline", "stage"], r, MEMORY_BUCKETS)
        self.stage_gpu_memory = LabelledHistogram(
            "kubedag_stage_gpu_memory_peak_bytes",
            "Peak GPU memory of a stage attempt above what was in use before it started, summed "
            "over its pod's GPUs, as its worker measured it (attempts without a GPU reading are "
            "not observed).",
            ["namespace", "pipeline", "stage"], r, GPU_MEMORY_BUCKETS)
        self.stage_gpu_utilization = LabelledHistogram(
            "kubedag_stage_gpu_utilization_ratio",
            "Mean GPU utilization (0 to 1) of a stage attempt over its pod's GPUs, as its worker "
            "measured it through NVML (attempts without a GPU reading are not observed).",
            ["namespace", "pipeline", "stage"], r, RATIO_BUCKETS)
        self.circuit_trips = Counter(
            "kubedag_circuit_trips_total",
            "Times a circuit breaker opened on counted failures (reasons Tripped, ProbeFailed, "
            "ReleaseFailed; not spec.forceState), by namespace and breaker key.",
            ["namespace", "key"], registry=r)
        # The worker's usage report (ResourceUsage, camelCase) -> the histogram of each field.
        self._usage_histograms = (
            ("cpuSeconds", self.stage_cpu), ("peakRssBytes", self.stage_memory),
            ("gpuMemoryPeakBytes", self.stage_gpu_memory),
            ("gpuUtilizationMean", self.stage_gpu_utilization))
        self.cache_lookups = LabelledCounter(
            "kubedag_cache_lookups_total",
            "Stage cache lookups of cacheable stages' first attempts, by result (hit, miss) and "
            "reason (Cached; a miss's NoEntry, Changed, NoDigest, Expired, Disabled, "
            "Overwrite).",
            ["namespace", "pipeline", "stage", "result", "reason"], r)
        self._initialised: set[tuple[str, ...]] = set()

    # --- recording ---------------------------------------------------------------------------

    def observe_reconcile(self, seconds: float, *, error: bool) -> None:
        self.reconcile_duration.observe(seconds)
        if error:
            self.reconcile_errors.inc()

    def record_cache_lookups(self, namespace: str, pipeline: str,
                             lookups: Iterable[tuple[str, str, str]]) -> None:
        for stage, result, reason in lookups:
            self.cache_lookups.labels(namespace, pipeline, stage, result, reason).inc()

    def api_write(self, verb: str, resource: str) -> None:
        self.api_writes.labels(verb, resource).inc()

    def record_transitions(self, body: Mapping[str, Any], new_status: Mapping[str, Any],
                           changed_stages: Iterable[str] | None = None) -> None:
        """Count what changed between the status in ``body`` and ``new_status`` (both as stored
        in the API, camelCase), after ``new_status`` was written. ``changed_stages`` (the keys
        of the status patch) spares comparing every stage of a big run on every pass."""
        if (body.get("spec") or {}).get("dryRun"):
            return  # nothing ran
        namespace = str(body["metadata"]["namespace"])
        pipeline = pipeline_of(body)
        self._initialise(namespace, pipeline, new_status, queued=_uses_kueue(body, new_status))
        old_status = body.get("status") or {}
        if not old_status.get("startTime") and new_status.get("startTime"):
            self.runs_started.labels(namespace, pipeline).inc()
        old_phase, new_phase = old_status.get("phase"), new_status.get("phase")
        if new_phase in _FINISHED_RUN and old_phase not in _FINISHED_RUN:
            begin = _time(new_status.get("startTime")) or _time(
                body["metadata"].get("creationTimestamp"))
            seconds = _seconds(begin, _time(new_status.get("completionTime")))
            if seconds is not None:
                self.run_duration.labels(namespace, pipeline, new_phase).observe(seconds)
        old_stages = old_status.get("stages") or {}
        new_stages = new_status.get("stages") or {}
        for stage in new_stages if changed_stages is None else changed_stages:
            old, new = old_stages.get(stage), new_stages.get(stage)
            if new is not None and old != new:
                self._stage_transition(namespace, pipeline, stage, old or {}, new)

    def _initialise(self, namespace: str, pipeline: str, status: Mapping[str, Any], *,
                    queued: bool) -> None:
        """Export every series of a pipeline and its stages at 0 before its first increment:
        rate() and increase() cannot see the step from "absent" to 1."""
        spec = status.get("pipelineSpec") or {}
        specs = [*(spec.get("stages") or []), *(spec.get("finally") or [])]
        stages = [str(s.get("name")) for s in specs]
        key = (namespace, pipeline, str(queued), *stages)
        if key in self._initialised:
            return
        self._initialised.add(key)
        self.runs_started.labels(namespace, pipeline)
        for outcome in _FINISHED_RUN:
            self.run_duration.labels(namespace, pipeline, outcome)
        for stage, stage_spec in zip(stages, specs, strict=True):
            labels = (namespace, pipeline, stage)
            for counter in (self.stage_attempts, self.stage_retries):
                counter.labels(*labels)
            self.stage_failures.labels(*labels, "ExitCode")
            histograms = [self.stage_cpu, self.stage_memory]
            if (stage_spec.get("resources") or {}).get("gpu"):
                # Only where GPUs are asked for: elsewhere they would export empty buckets.
                histograms += [self.stage_gpu_memory, self.stage_gpu_utilization]
            if queued:
                histograms.append(self.stage_queue)  # likewise, only for runs with a queue
            for histogram in histograms:
                histogram.labels(*labels)
            for outcome in ("Succeeded", "Failed", "Cancelled"):
                self.stage_duration.labels(*labels, outcome)
            if stage_spec.get("fallback"):
                for outcome in FALLBACK_OUTCOMES:
                    self.fallbacks.labels(*labels, outcome)

    def _stage_transition(self, namespace: str, pipeline: str, stage: str,
                          old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        labels = (namespace, pipeline, stage)
        old_attempts, new_attempts = int(old.get("attempts") or 0), int(new.get("attempts") or 0)
        if new_attempts > old_attempts:
            self.stage_attempts.labels(*labels).inc(new_attempts - old_attempts)
            retries = max(new_attempts - 1, 0) - max(old_attempts - 1, 0)
            if retries > 0:
                self.stage_retries.labels(*labels).inc(retries)
        old_phase, new_phase = old.get("phase", "Pending"), new.get("phase", "Pending")
        admitted = new_phase == "Running" and (old_phase != "Running"
                                               or new_attempts > old_attempts)
        if admitted and new.get("queueSeconds") is not None:
            # Kueue admitted an attempt: queueSeconds grew by its wait (0 if within a second).
            waited = int(new["queueSeconds"]) - int(old.get("queueSeconds") or 0)
            self.stage_queue.labels(*labels).observe(max(waited, 0))
        # An attempt is in flight while its Job exists: running, or queued in Kueue (Pending
        # with reason Queued). A running stage that Kueue evicts is queued again, not ended.
        attempt_ended = _in_flight(old) and (
            not _in_flight(new) or new_attempts > old_attempts)
        if attempt_ended:
            usage = new.get("usage") or {}
            for key, histogram in self._usage_histograms:
                if usage.get(key) is not None:  # absent: not measured, which is no zero
                    histogram.labels(*labels).observe(float(usage[key]))
        attempt_failed = attempt_ended and new_phase not in ("Succeeded", "Cancelled")
        # Retrying -> Failed (a critical failure stops the retry) was counted when the attempt
        # ended.
        failed_outright = new_phase == "Failed" and not _in_flight(old) and old_phase not in (
            "Retrying", "Failed")
        if attempt_failed or failed_outright:
            self.stage_failures.labels(*labels, failure_reason(new)).inc()
        if new_phase in _FINISHED_STAGE and old_phase not in _FINISHED_STAGE:
            seconds = _seconds(_time(new.get("startTime")), _time(new.get("finishTime")))
            if seconds is not None:  # a skipped stage never started: no duration
                self.stage_duration.labels(*labels, new_phase).observe(seconds)
        self._fallback_transition(labels, old.get("fallback") or {}, new.get("fallback") or {})

    def _fallback_transition(self, labels: tuple[str, str, str], old: Mapping[str, Any],
                             new: Mapping[str, Any]) -> None:
        """A fallback's first Job (Started) and its end (Succeeded, Failed, Cancelled)."""
        if int(new.get("attempts") or 0) and not int(old.get("attempts") or 0):
            self.fallbacks.labels(*labels, "Started").inc()
        old_phase, new_phase = old.get("phase", "Pending"), new.get("phase", "Pending")
        if new_phase in _FALLBACK_ENDS and old_phase != new_phase:
            self.fallbacks.labels(*labels, new_phase).inc()


def _uses_kueue(body: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """The run names a Kueue queue, or its pipeline does (Queueing.of, on the stored JSON)."""
    defaults = (status.get("pipelineSpec") or {}).get("defaults") or {}
    return bool((body.get("spec") or {}).get("queueName") or defaults.get("queueName"))


def _queued(checkpoint: Mapping[str, Any]) -> bool:
    """StageCheckpoint.queued, read from the stored JSON: metrics must never fail on a status
    written by another version of the operator, which parsing it could."""
    return (checkpoint.get("phase", "Pending") == "Pending"
            and checkpoint.get("reason") == reasons.QUEUED and bool(checkpoint.get("job")))


def _in_flight(checkpoint: Mapping[str, Any]) -> bool:
    """StageCheckpoint.in_flight, read from the stored JSON: an attempt is under way (Running,
    or Pending with its Job created: queued in Kueue or waiting for a node)."""
    phase = checkpoint.get("phase", "Pending")
    return phase == "Running" or (phase == "Pending" and bool(checkpoint.get("job")))


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _seconds(begin: datetime | None, end: datetime | None) -> float | None:
    if begin is None or end is None:
        return None
    return max((end - begin).total_seconds(), 0.0)


# --- state, at scrape time ---------------------------------------------------------------------

@dataclass
class RunState:
    """What one run contributes to the state series."""

    namespace: str
    pipeline: str
    name: str
    phase: str
    progress: float | None = None  # 0..1, for active runs only
    running: int = 0
    pending: int = 0
    unschedulable: int = 0
    queued: int = 0
    cpu: float = 0.0
    memory: float = 0.0
    gpus: float = 0.0


def run_state(body: Mapping[str, Any]) -> RunState:
    meta, status = body["metadata"], body.get("status") or {}
    state = RunState(namespace=str(meta["namespace"]), pipeline=pipeline_of(body),
                     name=str(meta["name"]), phase=str(status.get("phase") or "Pending"))
    if state.phase in _FINISHED_RUN or (body.get("spec") or {}).get("dryRun"):
        return state
    progress = status.get("progress") or {}
    if progress.get("total"):
        state.progress = min(float(progress.get("completed", 0)) / float(progress["total"]), 1.0)
    elif state.phase in ("Running", "Paused"):
        state.progress = 0.0
    spec = status.get("pipelineSpec") or {}
    stages = [*(spec.get("stages") or []), *(spec.get("finally") or [])]
    checkpoints = status.get("stages") or {}
    for stage in stages:
        cp = checkpoints.get(stage.get("name")) or {}
        phase = cp.get("phase", "Pending")
        if _queued(cp):
            state.queued += 1
        elif phase in ("Pending", "Retrying"):
            state.pending += 1
            if phase == "Pending" and cp.get("reason") == reasons.UNSCHEDULABLE:
                state.unschedulable += 1
        elif phase == "Running":
            state.running += 1
            pods = _active_pods(stage, cp)
            resources = stage.get("resources") or {}
            state.cpu += pods * parse_quantity(resources.get("cpu"))
            state.memory += pods * parse_quantity(resources.get("memory"))
            state.gpus += pods * float(resources.get("gpu") or 0)
    return state


def _active_pods(stage: Mapping[str, Any], checkpoint: Mapping[str, Any]) -> int:
    """Pods of a running stage: 1, or for a fan-out the unfinished indexes up to parallelism."""
    fan_out = checkpoint.get("fanOut")
    if not fan_out:
        return 1
    left = int(fan_out.get("total", 1)) - int(fan_out.get("succeeded", 0)) - int(
        fan_out.get("failed", 0))
    parallelism = (stage.get("fanOut") or {}).get("parallelism")
    return max(min(left, int(parallelism)) if parallelism else left, 0)


class RunStateCollector(Collector):
    """Reports the state series from the run bodies ``source`` returns at scrape time.

    Per-run results are cached by resourceVersion, so a scrape only re-reads runs that changed.
    """

    def __init__(self, source: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        self.source = source
        self._cache: dict[str, tuple[str, RunState]] = {}

    def describe(self) -> list[Metric]:
        return []  # computed at scrape time; no fixed description needed

    def collect(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily("kubedag_runs", "PipelineRuns the operator knows, by phase.",
                                 labels=["namespace", "pipeline", "phase"])
        progress = GaugeMetricFamily(
            "kubedag_run_progress_ratio",
            "Finished stages / all stages (0 to 1) of each active (not finished) run.",
            labels=["namespace", "pipeline", "run"])
        running = GaugeMetricFamily("kubedag_stages_running",
                                    "Stages running now (their Job exists) in active runs.",
                                    labels=["namespace", "pipeline"])
        pending = GaugeMetricFamily(
            "kubedag_stages_pending",
            "Stages of active runs that have not started yet, wait for a retry or wait for "
            "their pods to be placed (stages queued in Kueue are kubedag_stages_queued).",
            labels=["namespace", "pipeline"])
        unschedulable = GaugeMetricFamily(
            "kubedag_stages_unschedulable",
            "Stages of active runs whose pods the scheduler cannot place on any node now "
            "(phase Pending, reason Unschedulable; part of kubedag_stages_pending).",
            labels=["namespace", "pipeline"])
        queued = GaugeMetricFamily(
            "kubedag_stages_queued",
            "Stages of active runs whose Job waits for Kueue to admit it.",
            labels=["namespace", "pipeline"])
        cpu = GaugeMetricFamily("kubedag_running_stages_cpu_request_cores",
                                "CPU cores requested by the pods of running stages.",
                                labels=["namespace", "pipeline"])
        memory = GaugeMetricFamily("kubedag_running_stages_memory_request_bytes",
                                   "Memory requested by the pods of running stages, in bytes.",
                                   labels=["namespace", "pipeline"])
        gpus = GaugeMetricFamily("kubedag_running_stages_gpu_request",
                                 "GPUs requested by the pods of running stages.",
                                 labels=["namespace", "pipeline"])
        phases: Tally[tuple[str, str, str]] = Tally()
        totals: dict[tuple[str, str], list[float]] = {}
        seen: set[str] = set()
        for state in self._states(seen):
            key = (state.namespace, state.pipeline)
            phases[(*key, state.phase)] += 1
            sums = totals.setdefault(key, [0, 0, 0, 0, 0.0, 0.0, 0.0])
            if state.phase in _FINISHED_RUN:
                continue
            if state.progress is not None:
                progress.add_metric([*key, state.name], state.progress)
            for i, value in enumerate((state.running, state.pending, state.unschedulable,
                                       state.queued, state.cpu, state.memory, state.gpus)):
                sums[i] += value
        for uid in set(self._cache) - seen:
            del self._cache[uid]
        for key, sums in sorted(totals.items()):
            for phase in RUN_PHASES:  # every phase, zeros too: absent series hide in PromQL
                runs.add_metric([*key, phase], phases[(*key, phase)])
            for family, value in zip((running, pending, unschedulable, queued, cpu, memory,
                                      gpus), sums, strict=True):
                family.add_metric(list(key), value)
        yield from (runs, progress, running, pending, unschedulable, queued, cpu, memory, gpus)

    def _states(self, seen: set[str]) -> Iterator[RunState]:
        for body in list(self.source()):
            meta = body.get("metadata") or {}
            uid, version = str(meta.get("uid", "")), str(meta.get("resourceVersion", ""))
            seen.add(uid)
            cached = self._cache.get(uid)
            if cached is not None and cached[0] == version and version:
                yield cached[1]
                continue
            try:
                state = run_state(body)
            except (KeyError, TypeError, ValueError, AttributeError):
                log.debug("cannot read run %s for metrics", meta.get("name"), exc_info=True)
                continue
            self._cache[uid] = (version, state)
            yield state


@dataclass(frozen=True)
class BreakerRow:
    """What one circuit breaker contributes to the state series."""

    namespace: str
    key: str
    state: str  # Closed, HalfOpen, Open
    held: int  # stages waiting on it now


# kubedag_circuit_state's values: the higher, the fewer attempts get through.
CIRCUIT_STATE_VALUES = {"Closed": 0, "HalfOpen": 1, "Open": 2}


class BreakerCollector(Collector):
    """Reports every circuit breaker's state and held stages at scrape time."""

    def __init__(self, source: Callable[[], Iterable[BreakerRow]]) -> None:
        self.source = source

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "kubedag_circuit_state",
            "State of each circuit breaker: 0 closed, 1 half-open, 2 open.",
            labels=["namespace", "key"])
        held = GaugeMetricFamily(
            "kubedag_circuit_held_stages",
            "Stages waiting on each circuit breaker now (Pending or Retrying, reason "
            "CircuitOpen).", labels=["namespace", "key"])
        for row in sorted(self.source(), key=lambda r: (r.namespace, r.key)):
            state.add_metric([row.namespace, row.key], CIRCUIT_STATE_VALUES.get(row.state, 0))
            held.add_metric([row.namespace, row.key], row.held)
        yield from (state, held)


# --- the operator's registry ---------------------------------------------------------------------

def new_registry() -> CollectorRegistry:
    """A registry with the standard process, platform and GC collectors."""
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


REGISTRY = new_registry()
METRICS = Metrics(REGISTRY)
# The state collectors registered on the operator's registry, by kind: registering one again
# (a restarted startup handler, a test) replaces the old one instead of reporting twice.
_watching: dict[type[Collector], Collector] = {}


_C = TypeVar("_C", bound=Collector)


def _watch(collector: _C, registry: CollectorRegistry) -> _C:
    if registry is REGISTRY:
        old = _watching.pop(type(collector), None)
        if old is not None:
            REGISTRY.unregister(old)
        _watching[type(collector)] = collector
    registry.register(collector)
    return collector


def watch_runs(source: Callable[[], Iterable[Mapping[str, Any]]],
               registry: CollectorRegistry = REGISTRY) -> RunStateCollector:
    """Report the state series of the runs ``source`` returns (once per registry)."""
    return _watch(RunStateCollector(source), registry)


class CacheEntriesCollector(Collector):
    """`kubedag_cache_entries{namespace, pipeline}`: the stage cache's size, counted at scrape
    time from the operator's index of entries (no API call)."""

    def __init__(self, source: Callable[[], Iterable[tuple[str, str]]]) -> None:
        self.source = source  # each entry's (namespace, pipeline)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        entries = GaugeMetricFamily("kubedag_cache_entries",
                                    "StageCacheEntry objects (cached stage results) the "
                                    "operator knows, expired ones not yet deleted included.",
                                    labels=["namespace", "pipeline"])
        for (namespace, pipeline), count in sorted(Tally(self.source()).items()):
            entries.add_metric([namespace, pipeline], count)
        yield entries


def watch_cache(source: Callable[[], Iterable[tuple[str, str]]],
                registry: CollectorRegistry = REGISTRY) -> CacheEntriesCollector:
    """Report the size of the stage cache whose entries' (namespace, pipeline) ``source``
    returns."""
    return _watch(CacheEntriesCollector(source), registry)


def watch_breakers(source: Callable[[], Iterable[BreakerRow]],
                   registry: CollectorRegistry = REGISTRY) -> BreakerCollector:
    """Report the circuit breakers ``source`` returns (once per registry)."""
    return _watch(BreakerCollector(source), registry)


def serve(port: int, registry: CollectorRegistry = REGISTRY) -> ThreadingHTTPServer:
    """Expose /metrics on ``port`` (all interfaces, 0: a free one), in a daemon thread.

    prometheus-client's own server would format the stage series itself: see
    kubedag.shell.series.exposition_chunks for why they are written directly."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            # HTTP/1.0 (the handler's default): the body ends with the connection, so it goes
            # out as it is written, a piece at a time (see series.CHUNK_BYTES).
            gzipped = "gzip" in (self.headers.get("Accept-Encoding") or "")
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
            if gzipped:
                self.send_header("Content-Encoding", "gzip")
            self.end_headers()
            # Level 1: a tenth of the size of 20 MB of stage series, in a tenth of the time of
            # the default level (zlib lets go of the GIL meanwhile). wbits 31: gzip framing.
            packer = zlib.compressobj(1, zlib.DEFLATED, 31) if gzipped else None
            for chunk in exposition_chunks(registry):
                self.wfile.write(packer.compress(chunk) if packer else chunk)
            if packer:
                self.wfile.write(packer.flush())

        def log_message(self, format: str, *args: Any) -> None:
            """Not a line per scrape."""

    server = ThreadingHTTPServer(("", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on :%d/metrics", server.server_address[1])
    return server
