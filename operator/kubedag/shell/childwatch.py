"""kubedag's Jobs and pods, watched directly rather than through kopf's handlers.

Of a Job or pod event the operator needs little: the summary decide() reads (kept per run), and
a wake of the run when that summary changed. Through kopf's handlers each of those events also
went through a per-object worker task, its Body, Patch and memo, and the handler machinery for
three indexers and an event handler: py-spy charged 31 % of the operator's CPU to that on
`make bench`'s concurrent runs (twelve Job and pod events a stage), and the operator's CPU on
that scenario fell by 47 % without it. This module keeps kopf's
watch stream (`infinite_watch`: it lists, watches from the list's resourceVersion, lists again
after 410 Gone, reconnects with backoff, and authenticates with kopf's credentials, so the
operator still has one client and one login) and folds its events into plain dictionaries.

A list that follows an earlier one (after 410 Gone, or a failed stream) drops the objects it no
longer contains: they were deleted while no watch was open, and their runs are woken as for a
deletion. The watches start only when the replica leads (kubedag.shell.standby), and the first
reconcile waits for both first lists: a restarted operator sees all of a run's Jobs and pods
before it decides anything, which is what makes "never re-create a Job" hold.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, TypeVar

import kopf
from kopf._cogs.clients.watching import Bookmark, infinite_watch
from kopf._cogs.structs.references import NamespaceName, Resource

from kubedag.core.observe import LABEL_RUN_UID, JobSummary, PodSummary, is_urgent

log = logging.getLogger("kubedag.childwatch")
S = TypeVar("S", JobSummary, PodSummary)
# After a watch stream failed with what kopf treats as fatal (an ERROR event other than 410).
RESTART_BACKOFF_SECONDS = 2.0

JOBS = Resource(group="batch", version="v1", plural="jobs", kind="Job", namespaced=True)
PODS = Resource(group="", version="v1", plural="pods", kind="Pod", namespaced=True)


class Wake(NamedTuple):
    """A run to wake, at once (its object's change may end an attempt: `observe.is_urgent`),
    or soon, joining its next pass."""

    run: str
    at_once: bool


class ChildIndex(Mapping[str, Collection[S]]):
    """Summaries of one kind of a run's child objects, by run UID (a mapping, as kopf's index
    was), and the run of each object by (namespace, name)."""

    def __init__(self, summarize: Callable[[dict[str, Any]], S]) -> None:
        self.summarize: Callable[[dict[str, Any]], S] = summarize
        self._by_run: dict[str, dict[str, S]] = {}
        self._placed: dict[str, tuple[str, str, str]] = {}  # object UID: run UID, namespace, name
        self._runs_by_name: dict[tuple[str, str], str] = {}
        # By watch (its namespace, None: all): whether it has listed before, and the UIDs the
        # list in progress has shown so far.
        self._listed_before: set[str | None] = set()
        self._relisted: dict[str | None, set[str]] = {}

    def __getitem__(self, run_uid: str) -> Collection[S]:
        return self._by_run[run_uid].values()

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_run)

    def __len__(self) -> int:
        return len(self._by_run)

    def run_of(self, namespace: str, name: str) -> str | None:
        return self._runs_by_name.get((namespace, name))

    def fold(self, event: Mapping[str, Any] | Bookmark,
             watched: str | None = None) -> Iterable[Wake]:
        """Take in one item of kopf's watch stream of namespace ``watched`` (None: all);
        returns the runs to wake: those whose object changed in what decide() sees, or went
        away (see `Wake`)."""
        if isinstance(event, Bookmark):
            if event is Bookmark.LISTED:
                return self._end_list(watched)
            return ()
        kind, body = event.get("type"), event.get("object") or {}
        if kind == "BOOKMARK":
            return ()
        meta = body.get("metadata") or {}
        uid = meta.get("uid")
        if not isinstance(uid, str):
            return ()
        if kind == "DELETED":
            run = self._remove(uid)
            return (Wake(run, at_once=True),) if run is not None else ()
        if kind is None and watched in self._listed_before:
            self._relisted.setdefault(watched, set()).add(uid)
        run = (meta.get("labels") or {}).get(LABEL_RUN_UID)
        if not isinstance(run, str):
            return ()
        summary = self.summarize(body)
        held = self._by_run.setdefault(run, {})
        old = held.get(uid)
        if old == summary:
            return ()
        held[uid] = summary
        place = (run, meta.get("namespace", ""), meta.get("name", ""))
        self._placed[uid] = place
        self._runs_by_name[place[1:]] = run
        return (Wake(run, at_once=is_urgent(old, summary)),)

    def _end_list(self, watched: str | None) -> Iterable[Wake]:
        if watched not in self._listed_before:
            self._listed_before.add(watched)
            return ()
        seen = self._relisted.pop(watched, set())  # empty: the list was empty
        gone = [uid for uid, (_, namespace, _) in self._placed.items()
                if uid not in seen and (watched is None or namespace == watched)]
        return [Wake(run, at_once=True) for uid in gone if (run := self._remove(uid)) is not None]

    def _remove(self, uid: str) -> str | None:
        place = self._placed.pop(uid, None)
        if place is None:
            return None
        run, namespace, name = place
        held = self._by_run.get(run, {})
        held.pop(uid, None)
        if not held:
            self._by_run.pop(run, None)
        if self._runs_by_name.get((namespace, name)) == run:
            del self._runs_by_name[(namespace, name)]
        return run


class ChildWatch:
    """One resource's watch (per namespace served, or cluster-wide) feeding one ChildIndex."""

    def __init__(self, resource: Resource, index: ChildIndex[Any],
                 wake: Callable[[Wake], None]) -> None:
        self.resource, self.index, self.wake = resource, index, wake
        self._listed: list[asyncio.Event] = []

    def start(self, settings: kopf.OperatorSettings,
              namespaces: tuple[str, ...]) -> list[asyncio.Task[None]]:
        tasks = []
        for namespace in namespaces or (None,):
            listed = asyncio.Event()
            self._listed.append(listed)
            tasks.append(asyncio.create_task(
                self._watch_forever(settings, namespace, listed),
                name=f"watch {self.resource.plural} in {namespace or 'all namespaces'}"))
        return tasks

    async def listed(self) -> None:
        """Until every watch has delivered its first complete list."""
        await asyncio.gather(*(event.wait() for event in self._listed))

    async def _watch_forever(self, settings: kopf.OperatorSettings, namespace: str | None,
                             listed: asyncio.Event) -> None:
        while True:
            try:
                async for event in infinite_watch(
                        settings=settings, resource=self.resource,
                        namespace=NamespaceName(namespace) if namespace else None):
                    for wake in self.index.fold(event, namespace):
                        self.wake(wake)
                    if event is Bookmark.LISTED:
                        listed.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                # kopf would stop the operator here; the next list repairs the index instead.
                log.exception("watch of %s in %s failed; listing again in %.0f s",
                              self.resource.plural, namespace or "all namespaces",
                              RESTART_BACKOFF_SECONDS)
                await asyncio.sleep(RESTART_BACKOFF_SECONDS)
