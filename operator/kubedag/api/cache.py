"""Stage result caching: the `cache` settings of a stage, and the StageCacheEntry resource.

A cached stage's result is kept in one small StageCacheEntry object per computed key (never a
user-written one), labelled `kubedag.io/cache-key`, so that finding it costs the same with 10 or
100,000 entries and no single object grows towards etcd's size limit (Argo's one ConfigMap
does). The key and what went into it are computed by `kubedag.core.cachekey`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from kubedag.api._base import MAX_SHORT_TEXT, OPAQUE, ApiModel, Identifier, StageName
from kubedag.contract import API_GROUP, API_VERSION

# A duration as people write one in a spec: 90s, 30m, 12h, 7d.
DURATION = r"^[0-9]+(s|m|h|d)$"
LABEL_CACHE_KEY = f"{API_GROUP}/cache-key"


class StageCache(ApiModel):
    """Reuse the stage's result when nothing it depends on changed (memoization)."""

    enabled: bool = Field(
        default=True,
        description="Whether the stage's results are stored and reused. A `cache` block is on "
        "unless it says `enabled: false`, which also opts a stage out of "
        "`spec.defaults.cache`.",
    )
    max_age: str | None = Field(
        default=None,
        max_length=16,
        pattern=DURATION,
        description="How old an entry may be and still be reused, e.g. `90s`, `30m`, `12h`, "
        "`7d`; older entries are ignored and deleted by the operator. Default: no limit.",
    )
    version: str | None = Field(
        default=None,
        max_length=MAX_SHORT_TEXT,
        description="Part of the key: change it to stop reusing the stage's earlier results "
        "(e.g. after fixing a bug that the inputs do not show).",
    )
    ignore_params: list[Identifier] | None = Field(
        default=None,
        max_length=64,
        description="Params left out of the key although the stage reads them (e.g. a log "
        "level). A param substituted into command, args or env still changes those.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


class RunCacheMode(StrEnum):
    """How a run uses the cache (`spec.cache`)."""

    ENABLED = "Enabled"
    DISABLED = "Disabled"
    OVERWRITE = "Overwrite"


class StageCacheStatus(ApiModel):
    """How the cache served a cacheable stage: a hit, or a miss and why."""

    key: str | None = Field(
        default=None, max_length=64,
        description="The stage's computed cache key (sha256, hex); unset when it has none yet "
        "(its image's digest is not known before a pod of it has run).")
    hit: bool = Field(default=False, description="The result came from the cache.")
    source_run: str | None = Field(
        default=None, max_length=253,
        description="On a hit: the run whose stage filled the entry.")
    filled_time: datetime | None = Field(
        default=None, description="On a hit: when the entry was filled (its age is now minus "
        "this).")
    miss_reason: str | None = Field(
        default=None, max_length=64,
        description="On a miss, CamelCase: `NoEntry` (never run with these inputs), `Changed` "
        "(run before with other inputs: see explanation), `NoDigest` (the image's digest is "
        "not known yet), `Expired` (older than maxAge), `Disabled` or `Overwrite` "
        "(spec.cache).")
    explanation: str | None = Field(
        default=None, max_length=1024,
        description="On a miss with reason `Changed`: which part of the key changed since the "
        "stage's latest entry, e.g. `param 'language' changed: 'en' → 'de'`.")


class StageCacheEntrySpec(ApiModel):
    """One cached stage result, written by the operator when a cacheable stage succeeds."""

    key: str = Field(min_length=64, max_length=64, description="The cache key (sha256, hex).")
    stage: StageName = Field(description="The stage that filled it.")
    pipeline: str = Field(max_length=253, description="The Pipeline (or inline run) it ran in.")
    source_run: str = Field(max_length=253, description="The PipelineRun that filled it.")
    image: str = Field(max_length=MAX_SHORT_TEXT, description="The image, as the stage named it.")
    image_digest: str = Field(
        max_length=MAX_SHORT_TEXT,
        description="The digest the image resolved to, from the filling pod's `imageID`.")
    filled_time: datetime = Field(description="When the stage succeeded.")
    expire_time: datetime | None = Field(
        default=None, description="When the entry stops being reused and is deleted (from the "
        "stage's `cache.maxAge`); unset: never.")
    components: dict[str, Any] = Field(
        description="Everything the key was computed from, so that a miss can say what "
        "changed.", json_schema_extra=OPAQUE)
    outputs: dict[str, Any] | None = Field(
        default=None, description="The stage's outputs, restored on a hit.",
        json_schema_extra=OPAQUE)
    fan_out_total: int | None = Field(
        default=None, ge=0, description="A fan-out stage's number of pods (it is cached as a "
        "whole).")


class StageCacheEntryStatus(ApiModel):
    """Entries are immutable records: nothing is observed about them."""


class StageCacheEntry(ApiModel):
    """A stage result kept for reuse by later runs (see a stage's `cache`)."""

    api_version: str = Field(default=f"{API_GROUP}/{API_VERSION}", description="API version.")
    kind: Literal["StageCacheEntry"] = Field(default="StageCacheEntry",
                                             description="StageCacheEntry")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: StageCacheEntrySpec = Field(description="The cached result and what it was computed "
                                      "from.")
    status: StageCacheEntryStatus | None = Field(default=None, description="Unused.")
