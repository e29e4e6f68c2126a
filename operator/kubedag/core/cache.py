"""The stage cache's decisions (pure): is there a reusable result for a stage, and what to store.

decide() asks `look_up` before it starts a cacheable stage's first attempt, and builds an entry
with `entry_manifest` when such a stage succeeds. The entries themselves are StageCacheEntry
objects, one per key; `CacheIndex` is the in-memory view of them the operator keeps from its
watch (kept here, with no I/O, so that unit tests and the operator share it): a lookup is one
dict access whatever the number of entries.

An image's digest is what makes a key trustworthy (a tag moves), and it is only known once a
pod of the image has run: it is read from the filling pod's ``imageID``. A later run resolves
the image it is about to run to the digest of the latest entry filled with that image (or to
the digest its reference pins, ``image@sha256:…``); a stage whose image no entry has used yet
misses with ``NoDigest`` and fills one. So a tag re-pushed with new content is not noticed
until a run with ``spec.cache: Overwrite``: pin images by digest for strict reuse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kubedag import contract
from kubedag.api import PipelineSpec, Stage, StageCheckpoint, to_k8s
from kubedag.api.cache import (
    LABEL_CACHE_KEY,
    RunCacheMode,
    StageCache,
    StageCacheEntry,
    StageCacheEntrySpec,
    StageCacheStatus,
)
from kubedag.core import reasons
from kubedag.core.cachekey import (
    CacheComponents,
    cache_key,
    components_for,
    explain_miss,
    to_json,
)
from kubedag.core.memo import WeakMemo
from kubedag.core.naming import INLINE_PIPELINE, label_value
from kubedag.core.plan import clip

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^([0-9]+)([smhd])$")


def stage_cache(stage: Stage, pipeline: PipelineSpec) -> StageCache | None:
    """The stage's cache settings, its own merged field by field over the pipeline's defaults;
    None when the stage is not cached."""
    defaults = pipeline.defaults.cache if pipeline.defaults else None
    if stage.cache is None and defaults is None:
        return None
    merged: dict[str, Any] = {}
    for settings in (defaults, stage.cache):
        if settings is not None:
            merged.update(settings.model_dump(exclude_unset=True))
    cache = StageCache.model_validate(merged)
    return cache if cache.enabled else None


# Whether any stage of the spec may be cached: a run whose pipeline caches nothing (nearly all)
# then skips the cache's work on every pass, computed once per spec.
uses_cache: WeakMemo[PipelineSpec, bool] = WeakMemo(
    lambda pipeline: (pipeline.defaults is not None and pipeline.defaults.cache is not None)
    or any(stage.cache is not None for stage in pipeline.all_stages()))


def max_age(cache: StageCache) -> timedelta | None:
    """`maxAge` ("7d") as a timedelta; None: no limit."""
    if cache.max_age is None:
        return None
    found = _DURATION.match(cache.max_age)
    if found is None:  # the schema's pattern rules it out
        raise ValueError(f"cache.maxAge {cache.max_age!r}: expected e.g. 90s, 30m, 12h or 7d")
    return timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2)])


def digest_of(image_id: str) -> str:
    """The digest part of a container status's ``imageID`` (``repo@sha256:…`` → ``sha256:…``);
    an ID without one stands for itself."""
    return image_id.rsplit("@", 1)[1] if "@" in image_id else image_id


def pinned_digest(image: str) -> str | None:
    """The digest an image reference pins (``busybox@sha256:…``), if it pins one."""
    return digest_of(image) if "@" in image else None


@dataclass(frozen=True)
class CacheEntry:
    """What the operator keeps of one StageCacheEntry object."""

    namespace: str
    key: str
    stage: str
    pipeline: str
    source_run: str
    image: str
    image_digest: str
    filled: datetime
    expires: datetime | None
    components: Mapping[str, Any]
    outputs: Mapping[str, Any] | None
    fan_out_total: int | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> CacheEntry:
        spec = StageCacheEntrySpec.model_validate(body.get("spec") or {})
        return cls(namespace=body["metadata"]["namespace"], key=spec.key, stage=spec.stage,
                   pipeline=spec.pipeline, source_run=spec.source_run, image=spec.image,
                   image_digest=spec.image_digest, filled=spec.filled_time,
                   expires=spec.expire_time, components=spec.components, outputs=spec.outputs,
                   fan_out_total=spec.fan_out_total)


class CacheIndex:
    """The entries by key, the latest entry of each (pipeline, stage), the digest of each
    image, and which run is filling which key now; all per namespace (a cache never crosses
    namespaces). Dict lookups only, so its cost does not grow with the number of entries."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], CacheEntry] = {}
        self._latest: dict[tuple[str, str, str], CacheEntry] = {}
        self._digests: dict[tuple[str, str], CacheEntry] = {}
        self._fills: dict[tuple[str, str], str] = {}  # (namespace, key) → run filling it
        self._fills_by_run: dict[tuple[str, str], frozenset[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[CacheEntry]:
        return list(self._entries.values())

    def add(self, entry: CacheEntry) -> None:
        self._entries[(entry.namespace, entry.key)] = entry
        latest = (entry.namespace, entry.pipeline, entry.stage)
        if _newer(entry, self._latest.get(latest)):
            self._latest[latest] = entry
        image = (entry.namespace, entry.image)
        if _newer(entry, self._digests.get(image)):
            self._digests[image] = entry

    def remove(self, namespace: str, key: str) -> None:
        entry = self._entries.pop((namespace, key), None)
        if entry is None:
            return
        latest = (namespace, entry.pipeline, entry.stage)
        if self._latest.get(latest) is entry:
            del self._latest[latest]
        image = (namespace, entry.image)
        if self._digests.get(image) is entry:
            del self._digests[image]

    def entry(self, namespace: str, key: str) -> CacheEntry | None:
        return self._entries.get((namespace, key))

    def latest(self, namespace: str, pipeline: str, stage: str) -> CacheEntry | None:
        return self._latest.get((namespace, pipeline, stage))

    def digest(self, namespace: str, image: str) -> str | None:
        entry = self._digests.get((namespace, image))
        return entry.image_digest if entry is not None else None

    def filling(self, namespace: str, key: str) -> str | None:
        return self._fills.get((namespace, key))

    def note_fills(self, namespace: str, run: str, keys: frozenset[str]) -> None:
        """The keys the run's in-flight stages will fill (decide()'s `Plan.cache_fills`)."""
        previous = self._fills_by_run.get((namespace, run), frozenset())
        for key in previous - keys:
            if self._fills.get((namespace, key)) == run:
                del self._fills[(namespace, key)]
        for key in keys - previous:
            self._fills.setdefault((namespace, key), run)
        if keys:
            self._fills_by_run[(namespace, run)] = keys
        else:
            self._fills_by_run.pop((namespace, run), None)

    def expired(self, now: datetime) -> list[CacheEntry]:
        return [e for e in self._entries.values() if e.expires is not None and e.expires <= now]


def _newer(entry: CacheEntry, current: CacheEntry | None) -> bool:
    return current is None or current.filled <= entry.filled


EMPTY_CACHE = CacheIndex()


@dataclass(frozen=True)
class Hit:
    entry: CacheEntry
    key: str


@dataclass(frozen=True)
class Wait:
    """An identical stage of another run is computing this result now."""

    run: str
    key: str


@dataclass(frozen=True)
class Miss:
    reason: str
    key: str | None = None
    explanation: str | None = None

    def status(self) -> StageCacheStatus:
        return StageCacheStatus(key=self.key, miss_reason=self.reason,
                                explanation=clip(self.explanation))


@dataclass(frozen=True)
class StageInputs:
    """What the stage is about to run with: the inputs of its key but the image's digest."""

    namespace: str
    pipeline: str
    run: str
    stage: Stage
    image: str
    params: Mapping[str, Any]
    outputs: Mapping[str, Mapping[str, Any] | None]

    def components(self, cache: StageCache, digest: str | None) -> CacheComponents | None:
        found = components_for(stage=self.stage, namespace=self.namespace, params=self.params,
                               outputs=self.outputs, image_digest=digest,
                               cache_version=cache.version,
                               ignore_params=cache.ignore_params or ())
        return found if isinstance(found, CacheComponents) else None


def look_up(index: CacheIndex, inputs: StageInputs, cache: StageCache, mode: RunCacheMode,
            now: datetime) -> Hit | Wait | Miss:
    """Whether the stage's result can be reused, must be waited for, or must be computed (and
    why: a miss's reason, and for a changed stage which part of its key changed)."""
    if mode == RunCacheMode.DISABLED:
        return Miss(reasons.CACHE_DISABLED)
    digest = pinned_digest(inputs.image) or index.digest(inputs.namespace, inputs.image)
    components = inputs.components(cache, digest)
    if components is None:
        latest = index.latest(inputs.namespace, inputs.pipeline, inputs.stage.name)
        changed = (f"image changed: {latest.image!r} → {inputs.image!r}; "
                   if latest is not None and latest.image != inputs.image else "")
        return Miss(reasons.CACHE_NO_DIGEST, explanation=f"{changed}no digest known yet for "
                    f"image {inputs.image}: the stage runs, and its pod's image ID fills the "
                    "entry")
    key = cache_key(components)
    filler = index.filling(inputs.namespace, key)
    if filler is not None and filler != inputs.run:
        return Wait(filler, key)
    if mode == RunCacheMode.OVERWRITE:
        return Miss(reasons.CACHE_OVERWRITE, key)
    entry = index.entry(inputs.namespace, key)
    if entry is not None:
        limit = max_age(cache)
        if limit is not None and entry.filled + limit <= now:
            return Miss(reasons.CACHE_EXPIRED, key, f"the entry of run {entry.source_run} is "
                        f"{age(now - entry.filled)} old, over maxAge {cache.max_age}")
        return Hit(entry, key)
    latest = index.latest(inputs.namespace, inputs.pipeline, inputs.stage.name)
    changes = explain_miss(latest.components, components) if latest is not None else []
    if not changes:
        return Miss(reasons.CACHE_NO_ENTRY, key)
    assert latest is not None
    return Miss(reasons.CACHE_CHANGED, key,
                f"since run {latest.source_run}: " + "; ".join(changes))


def changes_between(before: StageInputs, before_cache: StageCache | None, after: StageInputs,
                    after_cache: StageCache | None) -> list[str]:
    """What differs between two runs of a stage, in the cache key's terms, its image named by
    reference (a resumed run reuses a stage only when none differs): why the stage must run
    again. A reference that no longer resolves is a change too."""
    try:
        old = before.components(before_cache or StageCache(), before.image)
        new = after.components(after_cache or StageCache(), after.image)
    except ValueError as error:
        return [f"its inputs do not resolve: {error}"]
    assert old is not None and new is not None  # an image reference is never empty
    return [change.replace("image digest changed", "image changed", 1)
            for change in explain_miss(to_json(old), new)]


def entry_manifest(inputs: StageInputs, cache: StageCache, image_id: str,
                   outputs: Mapping[str, Any] | None, fan_out_total: int | None,
                   now: datetime) -> tuple[str, dict[str, Any]] | None:
    """(key, the StageCacheEntry to create) for a stage that succeeded, its pods having run
    ``image_id``; None when the key cannot be computed."""
    digest = digest_of(image_id)
    components = inputs.components(cache, digest)
    if components is None:
        return None
    key = cache_key(components)
    limit = max_age(cache)
    entry = StageCacheEntry(
        metadata={"name": key, "namespace": inputs.namespace, "labels": {
            LABEL_CACHE_KEY: key[:63], contract.LABEL_STAGE: inputs.stage.name,
            **({} if inputs.pipeline == INLINE_PIPELINE
               else {contract.LABEL_PIPELINE: label_value(inputs.pipeline)}),
            "app.kubernetes.io/managed-by": "kubedag",
            "app.kubernetes.io/component": "stage-cache"}},
        spec=StageCacheEntrySpec(
            key=key, stage=inputs.stage.name, pipeline=inputs.pipeline, source_run=inputs.run,
            image=inputs.image, image_digest=digest, filled_time=now,
            expire_time=now + limit if limit is not None else None,
            components=to_json(components), outputs=dict(outputs) if outputs else None,
            fan_out_total=fan_out_total))
    return key, to_k8s(entry)


@dataclass(frozen=True)
class CacheVerdict:
    """How the cache served one stage of a run, for people (`kubedag explain`)."""

    stage: str
    verdict: str  # hit, miss, waiting, not cached, not looked up
    detail: str
    key: str | None = None


def explain_run(pipeline: PipelineSpec, stages: Mapping[str, StageCheckpoint],
                now: datetime) -> list[CacheVerdict]:
    """Each stage of a run in pipeline order: a hit and where from, a miss and why (which
    part of its key changed), or why it was not looked up."""
    verdicts: list[CacheVerdict] = []
    for stage in pipeline.all_stages():
        cp = stages.get(stage.name)
        status = cp.cache if cp is not None else None
        if stage_cache(stage, pipeline) is None:
            verdicts.append(CacheVerdict(stage.name, "not cached", "the stage has no `cache`"))
        elif cp is not None and cp.reason == reasons.WAITING_FOR_CACHE:
            verdicts.append(CacheVerdict(stage.name, "waiting", cp.message or ""))
        elif status is None:
            verdicts.append(CacheVerdict(stage.name, "not looked up",
                                         "the stage has not been ready to start"
                                         if cp is None or not cp.phase.finished
                                         else f"{cp.phase.value} without starting"))
        elif status.hit:
            filled = f", filled {age(now - status.filled_time)} ago" if status.filled_time else ""
            verdicts.append(CacheVerdict(stage.name, "hit",
                                         f"from run {status.source_run}{filled}", status.key))
        else:
            why = status.miss_reason or "NoEntry"
            detail = f"{why}: {status.explanation}" if status.explanation else why
            verdicts.append(CacheVerdict(stage.name, "miss", detail, status.key))
    return verdicts


def age(elapsed: timedelta) -> str:
    """An age as `kubectl get` prints one: 42s, 7m, 3h, 5d."""
    seconds = max(int(elapsed.total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
