"""One reconcile of one run: gather facts from caches, call decide(), carry out the plan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from kubedag import contract
from kubedag.api import (
    PipelineRunSpec,
    PipelineRunStatus,
    PipelineSpec,
    StageCheckpoint,
)
from kubedag.core.breaker import rejected_attempts
from kubedag.core.cache import CacheIndex
from kubedag.core.decide import RunFacts, decide
from kubedag.core.estimate import NodeCapacity
from kubedag.core.feedback import (
    decide_invalid_spec,
    record_claim_rejected,
    record_create_results,
)
from kubedag.core.jobspec import RunIdentity
from kubedag.core.observe import (
    JobSummary,
    PodSummary,
    WorkloadSummary,
    summarize_job,
    summarize_pod,
)
from kubedag.core.params import resolve_params
from kubedag.core.plan import Plan
from kubedag.shell.breakers import Breakers
from kubedag.shell.budget import StageBudget
from kubedag.shell.cache import RunCache, RunKey, is_finished
from kubedag.shell.childwatch import ChildIndex
from kubedag.shell.events import EventBuffer
from kubedag.shell.kube import Kube, RunRef
from kubedag.shell.metrics import METRICS, Metrics, pipeline_of
from kubedag.shell.settings import OperatorSettings
from kubedag.shell.stagecache import StageCacheStore
from kubedag.shell.statusdump import StatusDumps
from kubedag.shell.statuswriter import StatusWriter

log = logging.getLogger("kubedag.reconciler")


class Indexes:
    """What the operator holds of the cluster beside its runs: the summaries of kubedag's Jobs
    and pods by run UID (kept by kubedag.shell.childwatch), and kopf's indexes of schedulable
    nodes (under one key) and Kueue's Workloads. Pipelines are not indexed: a run reads its
    Pipeline from the API server once, when it starts (see `Reconciler._referenced_pipeline`).
    """

    def __init__(self) -> None:
        self.jobs: ChildIndex[JobSummary] = ChildIndex(summarize_job)
        self.pods: ChildIndex[PodSummary] = ChildIndex(summarize_pod)
        # Kueue (empty unless its Workloads are watched): Workload summaries by
        # (namespace, Job name).
        self.workloads: Mapping[Any, Any] = {}
        self.nodes: Mapping[str, Any] = {}

    def node_list(self) -> list[NodeCapacity]:
        """The schedulable nodes, by name (a stable order, so two lists compare equal)."""
        return sorted((node for store in self.nodes.values() for node in store),
                      key=lambda node: node.name)


class Reconciler:
    def __init__(self, kube: Kube, settings: OperatorSettings, runs: RunCache,
                 indexes: Indexes, metrics: Metrics | None = None,
                 stage_cache: StageCacheStore | None = None) -> None:
        self.kube = kube
        self.stage_cache = stage_cache or StageCacheStore(kube, CacheIndex())
        self.metrics = metrics or METRICS
        self.settings = settings
        self.runs = runs
        self.indexes = indexes
        self.events = EventBuffer(kube.post_event)
        self.budget = StageBudget(settings.max_running_stages)
        self.breakers = Breakers(kube, self.metrics)
        self.breakers.wake = self._wake_run
        # Parsed models by run UID, reused while the object has not changed: validating a
        # 1,000-stage spec and status on every pass was half of a reconcile's CPU (py-spy).
        self._specs: dict[str, tuple[int, PipelineRunSpec]] = {}
        # The status each run was last decided to have (written, or being written): the base of
        # its next pass, so a pass never waits for the previous one's write.
        self._decided: dict[str, PipelineRunStatus] = {}
        self._dumps = StatusDumps()
        self.writer = StatusWriter(kube, self._written, self._write_failed)
        # Called with runs that waited for the stage budget when room frees up.
        self.wake: Callable[[RunKey], None] = lambda _key: None
        # Compute time (not I/O) of each run's last pass, for pacing its next one; less what is
        # done once a run (the pass that starts it, parsing its spec and a status read anew):
        # the first pass of a 900-stage run took long enough for a rest of 1-1.5 s, and the
        # stages that became ready meanwhile were the slowest reactions of `make bench`'s
        # lattice in every sitting (t = 2-5 s).
        self.pass_cost: dict[RunKey, float] = {}
        self._parse_seconds = 0.0  # of the pass in progress, by _facts

    def _wake_run(self, key: RunKey) -> None:
        """Through `wake` as it is when called: the handlers set it after construction."""
        self.wake(key)

    async def reconcile(self, key: RunKey) -> float | None:
        """Returns seconds until the run wants another pass, if it does."""
        started, failed = time.monotonic(), True
        try:
            requeue = await self._reconcile(key)
            failed = False
            return requeue
        finally:
            self.metrics.observe_reconcile(time.monotonic() - started, error=failed)

    async def _reconcile(self, key: RunKey) -> float | None:
        body = self.runs.bodies.get(key)
        if body is None:
            return None
        meta = body["metadata"]
        ref = RunRef(meta["namespace"], meta["name"], meta["uid"])
        if _finished_for_good(body):
            # Pod and Job events keep coming after the end (TTL clean-up): nothing to decide.
            self._specs.pop(ref.uid, None)
            self._dumps.forget(ref.uid)
            if not self.writer.pending(ref.uid):
                self._decided.pop(ref.uid, None)
                self.writer.forget(ref.uid)
            self._settle_budget(key, body, None)
            self.breakers.forget_run(key)
            return None
        referenced = await self._referenced_pipeline(body)
        resumed = await self._resumed_body(body)
        now = datetime.now(UTC)
        computing = time.perf_counter()
        # `once`: compute time of work done once a run, not on each pass (see pass_cost).
        try:
            facts = self._facts(body, referenced, now, resumed)
        except ValidationError as error:
            plan = decide_invalid_spec(body, _validation_message(error), now)
            once = float("inf")
        else:
            once = self._parse_seconds
            plan = decide(facts, now, self.settings.jobs)
            if facts.status.pipeline_spec is None and plan.status.pipeline_spec is not None:
                once = float("inf")  # the pass that validated the pipeline and started the run
        # At once, before any await: a run reconciled meanwhile must see which results this
        # one is computing, or both would compute them.
        self.stage_cache.index.note_fills(ref.namespace, ref.name, plan.cache_fills)
        if plan.cache_lookups:
            self.metrics.record_cache_lookups(ref.namespace, pipeline_of(body),
                                              plan.cache_lookups)
        # Before any await: another run's pass must see this one's debits (a half-open
        # breaker's single probe).
        self.breakers.apply(key, plan, now)
        desired = self._dumps.dump(ref.uid, plan.status)
        self.pass_cost[key] = max(time.perf_counter() - computing - once, 0.0)
        await self._execute(ref, body, plan, now, desired)
        self._settle_budget(key, body, plan)
        return plan.requeue_after

    def _settle_budget(self, key: RunKey, body: dict[str, Any], plan: Plan | None) -> None:
        running = 0 if plan is None or not plan.uses_stage_budget else sum(
            1 for cp in (plan.status.stages or {}).values() if cp.in_flight)
        priority, created = _place_in_line(body)
        for waiting in self.budget.settle(key, priority, created, running,
                                          plan.waiting_for_room if plan else 0):
            self.wake(waiting)

    def _parsed_spec(self, uid: str, generation: int, body: dict[str, Any]) -> PipelineRunSpec:
        cached = self._specs.get(uid)
        if cached is not None and cached[0] == generation:
            return cached[1]
        spec = PipelineRunSpec.model_validate(body.get("spec") or {})
        self._specs[uid] = (generation, spec)
        return spec

    def forget(self, key: RunKey, uid: str = "") -> None:
        """The run is gone: drop what was kept of it; its budget share goes to the runs
        waiting in line."""
        self._specs.pop(uid, None)
        self._dumps.forget(uid)
        self._decided.pop(uid, None)
        self.writer.forget(uid)
        self.stage_cache.index.note_fills(key[0], key[1], frozenset())
        self.breakers.forget_run(key)
        for waiting in self.budget.forget(key):
            self.wake(waiting)

    async def _referenced_pipeline(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The spec of the Pipeline a run that has not started refers to, read from the API
        server rather than the watch cache: `kubectl apply -f pipeline.yaml` then creating a
        run must run what was just applied, and the cache may not have seen it yet. Once the
        run has started it keeps its own snapshot, so this is one GET per run."""
        ref = (body.get("spec") or {}).get("pipelineRef") or {}
        if not isinstance(ref.get("name"), str) or self._has_snapshot(body):
            return None
        return await self.kube.get_pipeline_spec(body["metadata"]["namespace"], ref["name"])

    def _has_snapshot(self, body: dict[str, Any]) -> bool:
        """Whether the run has taken its pipeline snapshot (as it starts, or for a dry run):
        what it reads from the API server before that, it never needs again."""
        decided = self._decided.get(body["metadata"]["uid"])
        return (decided is not None and decided.pipeline_spec is not None) or (
            (body.get("status") or {}).get("pipelineSpec") is not None)

    async def _resumed_body(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """spec.resumeFrom's run, read from the API server once, as the run starts: the
        operator's cache keeps finished runs without their pipeline snapshot, which tells
        which stages changed since."""
        spec = body.get("spec") or {}
        if not isinstance(spec.get("resumeFrom"), str) or self._has_snapshot(body):
            return None
        return await self.kube.get_run(body["metadata"]["namespace"], spec["resumeFrom"])

    def _facts(self, body: dict[str, Any], referenced_body: dict[str, Any] | None,
               now: datetime, resumed_body: dict[str, Any] | None = None) -> RunFacts:
        meta = body["metadata"]
        uid = meta["uid"]
        parsing = time.perf_counter()
        spec = self._parsed_spec(uid, int(meta.get("generation", 1)), body)
        decided = self._decided.get(uid)
        status = (decided if decided is not None
                  else PipelineRunStatus.model_validate(body.get("status") or {}))
        referenced = None
        if status.pipeline_spec is None and referenced_body is not None:
            referenced = PipelineSpec.model_validate(referenced_body)
        self._parse_seconds = time.perf_counter() - parsing
        jobs: dict[str, JobSummary] = {j.name: j for j in self.indexes.jobs.get(uid, [])}
        expected = self.runs.expected(uid)
        for name, job in expected.items():
            jobs.setdefault(name, job)
        pods: list[PodSummary] = list(self.indexes.pods.get(uid, []))
        workloads: dict[str, WorkloadSummary] = {}
        for name in jobs:
            for workload in self.indexes.workloads.get((meta["namespace"], name), []):
                workloads[name] = workload
        return RunFacts(
            identity=RunIdentity(
                name=meta["name"], namespace=meta["namespace"], uid=uid,
                pipeline=spec.pipeline_ref.name if spec.pipeline_ref else meta["name"]),
            generation=int(meta.get("generation", 1)),
            created=datetime.fromisoformat(meta["creationTimestamp"].replace("Z", "+00:00")),
            spec=spec,
            status=status,
            referenced_pipeline=referenced,
            jobs=jobs,
            pods=pods,
            recently_created=frozenset(expected),
            **_resumed_run(resumed_body, spec, status),
            stage_room=self.budget.room((meta["namespace"], meta["name"]),
                                        *_place_in_line(body)),
            start_failure_grace=timedelta(seconds=self.settings.start_failure_grace_seconds),
            nodes=self.indexes.node_list() if spec.dry_run else None,
            workloads=workloads,
            cache=self.stage_cache.index,
            breakers=self.breakers.views(meta["namespace"], now),
        )

    async def _execute(self, ref: RunRef, body: dict[str, Any], plan: Plan,
                       now: datetime, desired: dict[str, Any]) -> None:
        if plan.delete_run:
            await self.kube.delete_run(ref)
            return
        if plan.create_claim is not None:
            # Before any Job: a pod whose claim does not exist yet would wait for it.
            rejected = await self.kube.create_claim(plan.create_claim, dry_run=plan.dry_run)
            if rejected is not None:
                record_claim_rejected(plan, rejected, now)
                desired = self._dumps.dump(ref.uid, plan.status)
        if plan.cache_entries:
            await self.stage_cache.store(plan.cache_entries, overwrite=plan.overwrite_cache)
        results = await self._create_jobs(ref, plan)
        if any(message is not None for message in results.values()) or (
                plan.dry_run and plan.create_jobs):
            record_create_results(plan, results, now)
            desired = self._dumps.dump(ref.uid, plan.status)
            refused = [stage for stage, message in results.items() if message is not None]
            self.breakers.fold_results((ref.namespace, ref.name),
                                       rejected_attempts(plan.breaker_starts, refused, now), now)
        await asyncio.gather(*(self.kube.delete_job(ref.namespace, name)
                               for name in plan.delete_jobs))
        self._decided[ref.uid] = plan.status
        self.writer.submit(ref, body.get("status") or {}, desired)
        self.events.add(ref, plan.events)

    def _written(self, ref: RunRef, old: dict[str, Any], new: dict[str, Any],
                 patch: dict[str, Any], updated: dict[str, Any]) -> None:
        key = (ref.namespace, ref.name)
        held = self.runs.bodies.get(key)
        self.runs.put(updated)
        # The watch's echo of this write will not wake the run (RunCache.offer): wake it here
        # if the write's response shows a spec change that no event has woken it for yet,
        # or that the run has finished (its next pass drops what was kept of it, or counts
        # down its ttlSecondsAfterFinished).
        held_generation = (held or {}).get("metadata", {}).get("generation")
        if held_generation != updated["metadata"].get("generation") or is_finished(updated):
            self.wake(key)
        # Once per transition: after the write, from what the write changed.
        self.metrics.record_transitions({**updated, "status": old}, new,
                                        changed_stages=(patch.get("stages") or {}))

    def _write_failed(self, ref: RunRef) -> None:
        """Forget what was decided; the next pass starts again from the stored status and the
        observed Jobs (which reproduce the same checkpoints)."""
        self._decided.pop(ref.uid, None)
        key = self.runs.keys_by_uid.get(ref.uid)
        if key is not None:
            self.wake(key)

    async def _create_jobs(self, ref: RunRef, plan: Plan) -> dict[str, str | None]:
        """Create the plan's Jobs concurrently; returns {stage: rejection message or None}."""
        if not plan.create_jobs:
            return {}

        async def create(manifest: dict[str, Any]) -> tuple[str, str | None]:
            rejected = await self.kube.create_job(manifest, dry_run=plan.dry_run)
            if rejected is None and not plan.dry_run:
                self.runs.expect(ref.uid, summarize_job(manifest))
            return manifest["metadata"]["labels"][contract.LABEL_STAGE], rejected

        return dict(await asyncio.gather(*(create(m) for m in plan.create_jobs)))


def _resumed_run(previous: dict[str, Any] | None, spec: PipelineRunSpec,
                 status: PipelineRunStatus) -> dict[str, Any]:
    """The RunFacts fields of spec.resumeFrom's run: its checkpoints, and the pipeline and
    params it ran with (to tell which stages changed since)."""
    if not spec.resume_from or status.start_time is not None or previous is None:
        return {}
    old = PipelineRunStatus.model_validate(previous.get("status") or {})
    checkpoints: dict[str, StageCheckpoint] = dict(old.stages or {})
    params = None
    if old.pipeline_spec is not None:
        with contextlib.suppress(ValidationError):
            old_spec = PipelineRunSpec.model_validate(previous.get("spec") or {})
            resolved, errors = resolve_params(old.pipeline_spec, old_spec.params)
            params = None if errors else resolved
    return {"resume_checkpoints": checkpoints, "resume_pipeline": old.pipeline_spec,
            "resume_params": params}


def _finished_for_good(body: dict[str, Any]) -> bool:
    """Finished, and no TTL left to enforce."""
    return is_finished(body) and not (body.get("spec") or {}).get("ttlSecondsAfterFinished")


def _place_in_line(body: dict[str, Any]) -> tuple[int, datetime]:
    """(priority, creation time): a run's place in line for the stage budget."""
    priority = (body.get("spec") or {}).get("priority") or 0
    created = body["metadata"].get("creationTimestamp") or "1970-01-01T00:00:00Z"
    return int(priority), datetime.fromisoformat(created.replace("Z", "+00:00"))


def _validation_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:20]:
        path = ".".join(str(p) for p in ("spec", *item["loc"]))
        parts.append(f"{path}: {item['msg']}")
    return "; ".join(parts)
