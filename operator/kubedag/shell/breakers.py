"""The operator's circuit breakers: kubedag.core.breaker's state machine, kept and written.

One in-memory record per (namespace, key), loaded from the CircuitBreaker objects the watch
delivers (so the state survives restarts) and changed only here, synchronously: the reconciler
asks for the views before decide() and applies the plan right after it returns, before any
await, so two runs reconciled concurrently can never both take a half-open breaker's single
probe. Writes to the API server follow asynchronously, one at a time per breaker (newest state
wins); the watch then only brings spec changes (forceState, thresholds) and deletions.

A breaker object is created on the first counted failure of its key; until then the key has
no breaker and every attempt runs. A ticker moves open breakers to half-open when their time
comes (so `kubectl get cb` shows it without waiting for demand) and wakes the runs whose stages
they hold whenever more attempts may start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from kubedag import contract
from kubedag.api import (
    BreakerState,
    CircuitBreakerSpec,
    CircuitBreakerStatus,
    to_k8s,
)
from kubedag.core import reasons
from kubedag.core.breaker import (
    AttemptReport,
    BreakerView,
    Transition,
    Verdict,
    advance,
    allowance,
    record_result,
    record_starts,
    release_probe,
    view,
)
from kubedag.core.mergepatch import merge_patch
from kubedag.core.naming import breaker_name
from kubedag.core.plan import Event, Plan
from kubedag.shell.cache import RunKey
from kubedag.shell.kube import Kube, RunRef
from kubedag.shell.metrics import METRICS, BreakerRow, Metrics

log = logging.getLogger("kubedag.breakers")
BreakerId = tuple[str, str]  # (namespace, key)
# How often open breakers are checked for their half-open time.
TICK_SECONDS = 1.0
# After a failed write, wait this long before the next try.
WRITE_RETRY_SECONDS = 2.0
# Transitions to Open that count as trips (forceState does not).
TRIPS = frozenset({reasons.CIRCUIT_TRIPPED, reasons.CIRCUIT_PROBE_FAILED,
                   reasons.CIRCUIT_RELEASE_FAILED})


@dataclass
class _Breaker:
    name: str
    spec: CircuitBreakerSpec
    status: CircuitBreakerStatus
    generation: int = 0
    uid: str = ""
    # The status as last written (or read): what the next write's merge patch is against.
    # None: the object does not exist yet and is created first.
    written: dict[str, Any] | None = None
    dirty: bool = False
    writer: asyncio.Task[None] | None = field(default=None, repr=False)


class Breakers:
    def __init__(self, kube: Kube, metrics: Metrics | None = None) -> None:
        self.kube = kube
        self.metrics = metrics or METRICS
        self._breakers: dict[BreakerId, _Breaker] = {}
        # Stages each run's last pass held, by breaker: who to wake when attempts may start.
        self._held: dict[BreakerId, dict[RunKey, int]] = {}
        # Called with runs whose held stages may start now (the reconciler's work queue).
        self.wake: Callable[[RunKey], None] = lambda _key: None
        # The kopf index of CircuitBreaker bodies by (namespace, key): complete before the
        # first reconcile, so a restarted operator holds what the previous one held.
        self.index: Mapping[Any, Any] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- the watch ------------------------------------------------------------------------

    def observe(self, body: dict[str, Any], deleted: bool = False) -> None:
        """A CircuitBreaker was added, changed (by us, or a person: forceState) or deleted."""
        meta = body.get("metadata") or {}
        try:
            spec = CircuitBreakerSpec.model_validate(body.get("spec") or {})
        except ValidationError:
            log.warning("ignoring CircuitBreaker %s/%s: invalid spec", meta.get("namespace"),
                        meta.get("name"))
            return
        ident = (str(meta.get("namespace")), spec.key)
        current = self._breakers.get(ident)
        if deleted:
            if current is not None and current.name == meta.get("name"):
                del self._breakers[ident]
                self._wake_held(ident)
            return
        if current is None:
            self._adopt(ident, body)
            return
        generation = int(meta.get("generation", 0))
        current.name, current.uid = str(meta.get("name")), str(meta.get("uid", ""))
        if current.written is None:
            current.written = dict(body.get("status") or {})
        if generation != current.generation:
            current.spec, current.generation = spec, generation
            self._step(ident, current, datetime.now(UTC))
            self._wake_held(ident)

    def _adopt(self, ident: BreakerId, body: dict[str, Any]) -> _Breaker | None:
        meta = body.get("metadata") or {}
        try:
            spec = CircuitBreakerSpec.model_validate(body.get("spec") or {})
            status = CircuitBreakerStatus.model_validate(body.get("status") or {})
        except ValidationError:
            return None
        breaker = _Breaker(name=str(meta.get("name")), spec=spec, status=status,
                           generation=int(meta.get("generation", 0)),
                           uid=str(meta.get("uid", "")), written=dict(body.get("status") or {}))
        self._breakers[ident] = breaker
        return breaker

    def _get(self, ident: BreakerId) -> _Breaker | None:
        breaker = self._breakers.get(ident)
        if breaker is None:
            for body in self.index.get(ident, []):
                return self._adopt(ident, dict(body))
        return breaker

    # --- around decide() (synchronous: no await between views, decide and apply) -----------

    def views(self, namespace: str, now: datetime) -> dict[str, BreakerView]:
        """The breakers of ``namespace`` that limit attempts now, by key, for RunFacts."""
        for ident in list(self.index):
            if isinstance(ident, tuple) and ident[0] == namespace:
                self._get(ident)
        shown = {}
        for (ns, key), breaker in self._breakers.items():
            if ns != namespace:
                continue
            self._step((ns, key), breaker, now)
            if allowance(breaker.spec, breaker.status) is not None:
                shown[key] = view(breaker.name, breaker.spec, breaker.status)
        return shown

    def apply(self, run: RunKey, plan: Plan, now: datetime) -> None:
        """Carry out the plan's breaker part: debit the attempts it started, note the stages
        it held, fold in the attempts that finished (creating a breaker on its key's first
        counted failure)."""
        namespace, name = run
        for key, stages in plan.breaker_starts.items():
            breaker = self._get((namespace, key))
            if breaker is not None:
                self._set((namespace, key), breaker, record_starts(breaker.status, name, stages,
                                                                   now), now)
        for ident in [i for i, runs in self._held.items() if run in runs]:
            if ident[1] not in plan.breaker_held:
                self._unhold(ident, run)
        for key, count in plan.breaker_held.items():
            self._held.setdefault((namespace, key), {})[run] = count
        self.fold_results(run, plan.breaker_reports, now)
        for key in set(plan.breaker_starts) - {report.key for report in plan.breaker_reports}:
            breaker = self._breakers.get((namespace, key))
            if breaker is not None:
                self._step((namespace, key), breaker, now)

    def fold_results(self, run: RunKey, reports: list[AttemptReport], now: datetime) -> None:
        """Fold finished attempts into their breakers (creating a breaker on its key's first
        counted failure)."""
        namespace, name = run
        for report in reports:
            ident = (namespace, report.key)
            breaker = self._get(ident)
            if breaker is None:
                if report.verdict is not Verdict.FAILURE:
                    continue
                breaker = _Breaker(name=breaker_name(report.key), status=CircuitBreakerStatus(),
                                   spec=CircuitBreakerSpec(key=report.key,
                                                           thresholds=report.thresholds))
                self._breakers[ident] = breaker
            status, transitions = record_result(breaker.spec, breaker.status, name, report, now)
            self._set(ident, breaker, status, now, transitions)
        for key in {report.key for report in reports}:
            breaker = self._breakers.get((namespace, key))
            if breaker is not None:
                self._step((namespace, key), breaker, now)

    def forget_run(self, run: RunKey) -> None:
        """The run finished or is gone: it holds nothing, and a probe it held is freed."""
        now = datetime.now(UTC)
        for ident in [i for i, runs in self._held.items() if run in runs]:
            self._unhold(ident, run)
        for ident, breaker in list(self._breakers.items()):
            if ident[0] == run[0]:
                self._set(ident, breaker, release_probe(breaker.status, run[1]), now)
                self._step(ident, breaker, now)

    def _unhold(self, ident: BreakerId, run: RunKey) -> None:
        runs = self._held.get(ident, {})
        runs.pop(run, None)
        if not runs:
            self._held.pop(ident, None)

    # --- time ---------------------------------------------------------------------------------

    async def tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = datetime.now(UTC)
            for ident, breaker in list(self._breakers.items()):
                self._step(ident, breaker, now)

    # --- state changes ------------------------------------------------------------------------

    def _step(self, ident: BreakerId, breaker: _Breaker, now: datetime) -> None:
        """Apply what time, the spec and demand change (kubedag.core.breaker.advance)."""
        waiting = sum(self._held.get(ident, {}).values())
        status, transitions = advance(breaker.spec, breaker.status, now, waiting)
        self._set(ident, breaker, status, now, transitions)

    def _set(self, ident: BreakerId, breaker: _Breaker, status: CircuitBreakerStatus,
             now: datetime, transitions: Iterable[Transition] = ()) -> None:
        if status == breaker.status:
            return
        before = allowance(breaker.spec, breaker.status)
        breaker.status = status
        after = allowance(breaker.spec, status)
        for transition in transitions:
            self._announce(ident, breaker, transition)
        if after is None or (before is not None and after > before):
            self._wake_held(ident)
        self._write_soon(ident, breaker)

    def _announce(self, ident: BreakerId, breaker: _Breaker, transition: Transition) -> None:
        namespace, key = ident
        log.info("circuit breaker %s/%s (key %s): %s: %s", namespace, breaker.name, key,
                 transition.reason, transition.message)
        if transition.state == BreakerState.OPEN and transition.reason in TRIPS:
            self.metrics.circuit_trips.labels(namespace, key).inc()
        event = Event("Warning" if transition.warning else "Normal", transition.reason,
                      f"{transition.state}: {transition.message}")
        ref = RunRef(namespace, breaker.name, breaker.uid)
        self._spawn(self.kube.post_event(ref, event, kind="CircuitBreaker"))

    def _wake_held(self, ident: BreakerId) -> None:
        for run in list(self._held.get(ident, {})):
            self.wake(run)

    # --- writing -------------------------------------------------------------------------------

    def _write_soon(self, ident: BreakerId, breaker: _Breaker) -> None:
        breaker.dirty = True
        if breaker.writer is None or breaker.writer.done():
            breaker.writer = asyncio.ensure_future(self._write(ident, breaker))

    async def _write(self, ident: BreakerId, breaker: _Breaker) -> None:
        """Write the breaker's newest state until what is stored is what is kept."""
        while breaker.dirty and self._breakers.get(ident) is breaker:
            breaker.dirty = False
            try:
                await self._write_once(ident, breaker)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if breaker.written is None and _namespace_gone(error):
                    # Its namespace is gone (or being deleted): so are the runs it guarded.
                    log.info("circuit breaker %s/%s not written: its namespace is gone",
                             ident[0], breaker.name)
                    self._breakers.pop(ident, None)
                    return
                log.warning("writing circuit breaker %s/%s failed; retrying", ident[0],
                            breaker.name, exc_info=True)
                breaker.dirty = True
                await asyncio.sleep(WRITE_RETRY_SECONDS)

    async def _write_once(self, ident: BreakerId, breaker: _Breaker) -> None:
        namespace = ident[0]
        if breaker.written is None:
            manifest = {
                "apiVersion": f"{contract.API_GROUP}/{contract.API_VERSION}",
                "kind": "CircuitBreaker",
                "metadata": {"name": breaker.name, "namespace": namespace},
                "spec": to_k8s(breaker.spec),
            }
            created = await self.kube.create_breaker(manifest)
            meta = (created or {}).get("metadata") or {}
            breaker.uid = str(meta.get("uid", breaker.uid))
            breaker.generation = int(meta.get("generation", breaker.generation))
            breaker.written = dict((created or {}).get("status") or {})
        desired = to_k8s(breaker.status.model_copy(
            update={"observed_generation": breaker.generation or None}))
        patch = merge_patch(breaker.written, desired)
        if not patch:
            return
        stored = await self.kube.patch_breaker_status(namespace, breaker.name, patch)
        if stored is None:  # deleted meanwhile: create it again with the state kept here
            breaker.written, breaker.dirty = None, True
            return
        breaker.written = desired

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Wait for pending writes (shutdown, tests)."""
        writers = [b.writer for b in self._breakers.values() if b.writer is not None]
        with contextlib.suppress(Exception):
            await asyncio.gather(*writers, *self._tasks, return_exceptions=True)

    # --- metrics --------------------------------------------------------------------------------

    def rows(self) -> list[BreakerRow]:
        return [BreakerRow(namespace=ns, key=key, state=str(b.status.state),
                           held=sum(self._held.get((ns, key), {}).values()))
                for (ns, key), b in list(self._breakers.items())]


def _namespace_gone(error: Exception) -> bool:
    """Creating in a namespace that no longer exists (404), or is being deleted (403, "is
    being terminated")."""
    return isinstance(error, ApiException) and (
        error.status == 404 or (error.status == 403 and "being terminated" in str(error.body)))
